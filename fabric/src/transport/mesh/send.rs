//! Sending: one task per transfer drives it to the peer across reconnections (resuming from
//! the offset the receiver reported), each chunk admitted by the link's contact plan.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::transport::contact::Admit;
use crate::transport::frame::{self, MAX_HEADER_LEN, TransferHeader};

use super::payload::{self, Payload};
use super::{CHUNK, Inner, PeerSlot, TransportError, bump, emu_now, lock, stop_code, unreachable};

/// Margin at the end of a contact: quinn's delayed ACK (25 ms) plus an eighth of the RTT.
pub(super) fn contact_guard(rtt: Duration) -> Duration {
    Duration::from_millis(25) + rtt / 8
}

/// How a transfer stream attempt ended.
enum Attempt {
    /// Every byte written and the stream finished.
    Written,
    /// The peer holds the transfer already.
    AlreadyHeld,
    /// The connection went away; try again on the next one.
    ConnectionLost,
    /// The peer refused the stream.
    Refused(u64),
}

/// Sends one transfer until the peer holds it, across reconnections.
pub(super) async fn drive_transfer(
    inner: Arc<Inner>,
    to: usize,
    mut header: TransferHeader,
    payload: Payload,
    done: Arc<Notify>,
    accepted: tokio::sync::oneshot::Sender<Result<(), TransportError>>,
) {
    let Some(Some(slot)) = inner.peers.get(to) else {
        return;
    };
    let id = header.transfer_id;
    let mut accepted = Some(accepted);
    let mut finish = |result: Result<(), TransportError>| {
        if let Some(tx) = accepted.take() {
            let _ = tx.send(result);
        }
    };
    let mut rx = slot.link.subscribe();
    let mut last_generation = 0;
    let mut attempts = 0u64;
    loop {
        // Wait for a connection newer than the one we last tried.
        let link = tokio::select! {
            l = rx.wait_for(|l| (l.conn.is_some() && l.generation > last_generation) || l.failed.is_some()) => match l {
                Ok(l) => l.clone(),
                Err(_) => { finish(Err(TransportError::Closed)); return; }
            },
            _ = inner.shutdown.cancelled() => { finish(Err(TransportError::Closed)); return; }
        };
        if let Some(reason) = link.failed {
            finish(Err(unreachable(slot, reason)));
            forget_pending(slot, id);
            return;
        }
        let (Some(conn), Some(holds)) = (link.conn, link.peer_holds) else {
            continue;
        };
        last_generation = link.generation;
        if !lock(&slot.outgoing).is_pending(id) || holds.holds(id) {
            forget_pending(slot, id);
            finish(Ok(()));
            return;
        }
        let offset = holds.resume_offset(id, header.total_len);
        if attempts > 0 {
            bump(&inner.stats.resumed_transfers, 1);
            bump(&inner.stats.resume_skipped_bytes, offset);
            info!(
                peer = to,
                transfer = id,
                offset,
                total = header.total_len,
                "resuming transfer"
            );
        }
        attempts += 1;
        header.offset = offset;
        match write_transfer(&inner, slot, &conn, &header, &payload).await {
            Ok(Attempt::Written) => finish(Ok(())),
            Ok(Attempt::AlreadyHeld) => {
                forget_pending(slot, id);
                finish(Ok(()));
                return;
            }
            Ok(Attempt::ConnectionLost) => {
                debug!(
                    peer = to,
                    transfer = id,
                    "connection lost while sending; will resume"
                );
                continue;
            }
            Ok(Attempt::Refused(code)) => {
                forget_pending(slot, id);
                finish(Err(TransportError::Refused {
                    rank: to,
                    transfer_id: id,
                    code,
                }));
                return;
            }
            Err(e) => {
                forget_pending(slot, id);
                finish(Err(e));
                return;
            }
        }
        // Written: wait until the peer holds it, or the connection changes (then resume).
        let generation = last_generation;
        let notified = done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !lock(&slot.outgoing).is_pending(id) {
            return;
        }
        tokio::select! {
            _ = notified => return,
            _ = rx.wait_for(|l| l.generation != generation || l.conn.is_none() || l.failed.is_some()) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        if !lock(&slot.outgoing).is_pending(id) {
            return;
        }
    }
}

pub(super) fn forget_pending(slot: &PeerSlot, id: u64) {
    let forgotten = lock(&slot.outgoing).forget(id);
    if let Some(p) = forgotten {
        p.done.notify_waiters();
    }
}

/// Waits until the contact plan lets `len` bytes go to the peer.
pub(super) async fn wait_for_contact(
    inner: &Inner,
    slot: &PeerSlot,
    len: usize,
) -> Result<(), TransportError> {
    if !inner.contact_aware {
        return Ok(());
    }
    loop {
        let now = emu_now(inner);
        let decision = lock(&slot.send_clock).admit(&slot.plan, now, len);
        match decision {
            Admit::Now => return Ok(()),
            Admit::Never => {
                return Err(TransportError::NoContact {
                    rank: slot.info.rank,
                });
            }
            Admit::WaitUntil(t) => {
                bump(&inner.stats.contact_waits, 1);
                debug!(peer = slot.info.rank, wait_until = ?t, "waiting for the link's next contact");
                tokio::select! {
                    _ = tokio::time::sleep_until(inner.clock.instant_at(t)) => {}
                    _ = inner.shutdown.cancelled() => return Err(TransportError::Closed),
                }
            }
        }
    }
}

/// Waits until the pacer lets `len` bytes go towards the peer at our share of its link.
async fn wait_for_pacing(inner: &Inner, slot: &PeerSlot, len: usize) -> Result<(), TransportError> {
    let Some(pacer) = &slot.pacer else {
        return Ok(());
    };
    let now = emu_now(inner);
    let start = lock(pacer).book(now, len, slot.share.get());
    if start > now {
        tokio::select! {
            _ = tokio::time::sleep_until(inner.clock.instant_at(start)) => {}
            _ = inner.shutdown.cancelled() => return Err(TransportError::Closed),
        }
    }
    Ok(())
}

async fn write_transfer(
    inner: &Inner,
    slot: &PeerSlot,
    conn: &quinn::Connection,
    header: &TransferHeader,
    payload: &Payload,
) -> Result<Attempt, TransportError> {
    let offset = usize::try_from(header.offset).unwrap_or(usize::MAX);
    // The payload from the resume offset on, in chunks of at most CHUNK bytes, each as the
    // payload's pieces that hold it (no copy).
    let chunks = payload::runs(payload.pieces(), offset, CHUNK);
    let chunk_len = |c: &[Bytes]| c.iter().map(Bytes::len).sum::<usize>();
    let first_len = chunks.first().map_or(0, |c| chunk_len(c));
    wait_for_contact(inner, slot, first_len + MAX_HEADER_LEN).await?;
    let Ok(mut stream) = conn.open_uni().await else {
        return Ok(Attempt::ConnectionLost);
    };
    let classify = |e: quinn::WriteError| match e {
        quinn::WriteError::Stopped(code)
            if code.into_inner() == u64::from(stop_code::ALREADY_HAVE) =>
        {
            Attempt::AlreadyHeld
        }
        quinn::WriteError::Stopped(code) => Attempt::Refused(code.into_inner()),
        _ => Attempt::ConnectionLost,
    };
    if let Err(e) = stream.write_chunk(frame::encode_delimited(header)).await {
        return Ok(classify(e));
    }
    for (i, mut chunk) in chunks.into_iter().enumerate() {
        let len = chunk_len(&chunk);
        if i > 0 {
            wait_for_contact(inner, slot, len).await?;
        }
        wait_for_pacing(inner, slot, len).await?;
        if let Err(e) = stream.write_all_chunks(&mut chunk).await {
            return Ok(classify(e));
        }
        bump(&inner.stats.payload_bytes_sent, len as u64);
    }
    if stream.finish().is_err() {
        return Ok(Attempt::ConnectionLost);
    }
    Ok(Attempt::Written)
}
