//! Connection management: the accept loop and one dial loop per higher-ranked peer, installing
//! a connection once its hello is exchanged (with its control-stream tasks), noticing when it
//! is lost, and giving up on a peer that stays away longer than allowed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

use crate::transport::frame::{
    self, ControlKind, FabricControl, FabricHello, FrameError, MAX_CONTROL_LEN,
};

use super::handshake::{ProtocolFault, accept_one, dial_one, protocol_close};

use super::ledger::PeerHolds;
use super::receive::stream_acceptor;
use super::send::{forget_pending, wait_for_contact};
use super::{Inner, PeerSlot, bump, close_code, lock};

/// Accepts incoming connections for as long as the mesh lives.
pub(super) async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            i = inner.endpoint.accept() => match i { Some(i) => i, None => return },
            _ = inner.shutdown.cancelled() => return,
        };
        let remote = incoming.remote_address();
        let Some(&rank) = inner.by_addr.get(&remote) else {
            warn!(%remote, "refusing a connection from an address that is not a peer");
            incoming.refuse();
            continue;
        };
        if rank >= inner.rank {
            warn!(%remote, peer = rank, "refusing a connection from a higher rank (lower ranks dial)");
            incoming.refuse();
            continue;
        }
        let Some(Some(slot)) = inner.peers.get(rank) else {
            incoming.refuse();
            continue;
        };
        let connecting = match incoming.accept_with(slot.server_config.clone()) {
            Ok(c) => c,
            Err(e) => {
                warn!(%remote, error = %e, "accepting a connection failed");
                continue;
            }
        };
        let inner2 = inner.clone();
        tokio::spawn(
            async move {
                match tokio::time::timeout(
                    inner2.clock.wall(inner2.handshake_timeout),
                    accept_one(&inner2, rank, connecting),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(peer = rank, error = %e, "incoming connection refused"),
                    Err(_) => warn!(peer = rank, "incoming connection: handshake timed out"),
                }
            }
            .in_current_span(),
        );
    }
}

/// Dials a higher-ranked peer, again after every connection loss, until shutdown.
pub(super) async fn dial_loop(inner: Arc<Inner>, rank: usize) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if inner.shutdown.is_cancelled() || slot.link.borrow().failed.is_some() {
            return;
        }
        // No point dialling into a scheduled outage.
        if let Err(e) = wait_for_contact(&inner, slot, 0).await {
            mark_failed(&inner, slot, e.to_string());
            return;
        }
        let attempt = tokio::time::timeout(
            inner.clock.wall(inner.handshake_timeout),
            dial_one(&inner, rank),
        );
        let result = tokio::select! {
            r = attempt => r,
            _ = inner.shutdown.cancelled() => return,
        };
        match result {
            Ok(Ok(conn)) => {
                backoff = Duration::from_millis(100);
                let reason = tokio::select! {
                    r = conn.closed() => r,
                    _ = inner.shutdown.cancelled() => return,
                };
                if peer_left(&reason) {
                    // The end of a job or a run, not a fault: no warning.
                    debug!(peer = rank, "the peer closed its mesh; not dialling again");
                    mark_gone(&inner, slot, format!("peer closed the fabric: {reason}"));
                    return;
                }
                continue;
            }
            Ok(Err(e)) => warn!(peer = rank, error = %e, "dialling failed"),
            Err(_) => warn!(peer = rank, timeout = ?inner.handshake_timeout, "dialling timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.clock.wall(backoff)) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Makes `conn` the connection to `rank` and starts its stream tasks.
pub(super) fn install(
    inner: &Arc<Inner>,
    rank: usize,
    conn: quinn::Connection,
    control_send: quinn::SendStream,
    control_recv: quinn::RecvStream,
    hello: FabricHello,
) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let holds = Arc::new(PeerHolds::from(hello.receiver_state.unwrap_or_default()));
    // The peer told us what it holds: transfers it holds completely are done.
    let done_ids = lock(&slot.outgoing).held_by(&holds);
    for id in done_ids {
        forget_pending(slot, id);
    }
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let mut generation = 0;
    slot.link.send_modify(|l| {
        if let Some(old) = l.conn.take() {
            old.close(
                close_code::REPLACED.into(),
                b"replaced by a newer connection",
            );
        }
        l.generation += 1;
        generation = l.generation;
        l.conn = Some(conn.clone());
        l.control = Some(control_tx);
        l.peer_holds = Some(holds);
    });
    let previous = inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    info!(peer = rank, name = %slot.info.name, generation, rtt = ?conn.rtt(), connections_so_far = previous + 1, "connected");
    let span = tracing::Span::current();
    tokio::spawn(control_writer(conn.clone(), control_send, control_rx).instrument(span.clone()));
    tokio::spawn(
        control_reader(inner.clone(), rank, conn.clone(), control_recv).instrument(span.clone()),
    );
    tokio::spawn(stream_acceptor(inner.clone(), rank, conn.clone()).instrument(span.clone()));
    tokio::spawn(connection_watcher(inner.clone(), rank, conn, generation).instrument(span));
}

async fn control_writer(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<FabricControl>,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = conn.closed() => return,
        };
        if send
            .write_chunk(frame::encode_delimited(&msg))
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn control_reader(
    inner: Arc<Inner>,
    rank: usize,
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    loop {
        match frame::read_delimited::<FabricControl>(&mut recv, "control message", MAX_CONTROL_LEN)
            .await
        {
            Ok(Some(FabricControl {
                kind: Some(ControlKind::TransferDone(id)),
            })) => forget_pending(slot, id),
            Ok(Some(FabricControl { kind: None })) => {
                let e = protocol_close(&inner, &conn, ProtocolFault::ControlWithoutKind);
                warn!(peer = rank, "{e}");
                return;
            }
            Ok(None) => return,
            Err(FrameError::Read { .. }) => return,
            Err(e) => {
                let e = protocol_close(&inner, &conn, ProtocolFault::Frame(e));
                warn!(peer = rank, "{e}");
                return;
            }
        }
    }
}

async fn connection_watcher(
    inner: Arc<Inner>,
    rank: usize,
    conn: quinn::Connection,
    generation: u64,
) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let reason = conn.closed().await;
    if inner.shutdown.is_cancelled() {
        return;
    }
    let replaced = matches!(&reason, quinn::ConnectionError::LocallyClosed)
        && slot.link.borrow().generation != generation;
    if !replaced {
        bump(&inner.stats.connections_lost, 1);
        // A pair the collectives did not use for an idle timeout (there is no keep-alive, see
        // `config`) times out by design and is dialled again: not worth a warning unless a
        // transfer to the peer was in flight.
        let idle =
            matches!(&reason, quinn::ConnectionError::TimedOut) && lock(&slot.outgoing).is_idle();
        if idle {
            debug!(peer = rank, "idle connection timed out; dialling again");
        } else if peer_left(&reason) {
            // The peer closed its mesh in order (the end of a job or a run): not a fault here.
            debug!(peer = rank, "the peer closed its mesh");
        } else {
            warn!(peer = rank, error = %reason, "connection lost");
        }
    }
    let left = peer_left(&reason);
    slot.link.send_modify(|l| {
        if l.generation == generation {
            l.conn = None;
            l.control = None;
            if left && l.failed.is_none() {
                l.failed = Some(format!("peer closed the fabric: {reason}"));
            }
        }
    });
    if left {
        inner.delivered.notify_waiters();
    }
}

/// Marks a peer as unreachable (a fault, logged as a warning): its pending sends and
/// receives fail.
fn mark_failed(inner: &Inner, slot: &PeerSlot, reason: String) {
    warn!(peer = slot.info.rank, %reason, "peer unreachable; giving up on it");
    mark_gone(inner, slot, reason);
}

/// Marks a peer as gone, for `reason`: its pending sends and receives fail.
fn mark_gone(inner: &Inner, slot: &PeerSlot, reason: String) {
    slot.link.send_modify(|l| {
        if l.failed.is_none() {
            l.failed = Some(reason);
        }
    });
    inner.delivered.notify_waiters();
}

/// Gives up on a peer that stays without a connection for longer than allowed.
pub(super) async fn watchdog(inner: Arc<Inner>, rank: usize) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let mut rx = slot.link.subscribe();
    loop {
        // Wait for the connection to go away (after the first one came up).
        let down = tokio::select! {
            r = rx.wait_for(|l| (l.generation > 0 && l.conn.is_none()) || l.failed.is_some()) => r.map(|l| l.failed.is_some()),
            _ = inner.shutdown.cancelled() => return,
        };
        match down {
            Ok(false) => {}
            _ => return,
        }
        let back = tokio::time::timeout(
            inner.clock.wall(inner.give_up_after),
            rx.wait_for(|l| l.conn.is_some() || l.failed.is_some()),
        );
        tokio::select! {
            r = back => if r.is_err() {
                mark_failed(&inner, slot, format!("no connection for {:?}", inner.give_up_after));
                return;
            },
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

/// Did the peer close the connection because it is leaving?
fn peer_left(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c)
        if c.error_code.into_inner() == u64::from(close_code::SHUTDOWN))
}
