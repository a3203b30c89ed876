//! Sending: one task per transfer drives it to the peer across reconnections (resuming from
//! the offset the receiver reported), each chunk admitted by the link's contact plan and, on
//! a paced link, handed over at our share of the link's rate with the transfers to one peer
//! in issue order ([`SendPacing`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::transport::contact::Admit;
use crate::transport::frame::{self, MAX_HEADER_LEN, TransferHeader};
use crate::transport::pacing::{SendOrder, SendPacer};

use super::payload::{self, Payload};
use super::{CHUNK, Inner, PeerSlot, TransportError, bump, emu_now, lock, stop_code, unreachable};

/// Margin at the end of a contact: quinn's delayed ACK (25 ms) plus an eighth of the RTT.
pub(super) fn contact_guard(rtt: Duration) -> Duration {
    Duration::from_millis(25) + rtt / 8
}

/// Host-side pacing of the transfers to one peer: the pacer (our share of the link's rate)
/// and the order in which the transfers hand it their chunks, first issued first, as the
/// cost model's link serialises messages in issue order.
#[derive(Debug)]
pub(super) struct SendPacing {
    pacer: Mutex<SendPacer>,
    order: Mutex<SendOrder>,
    /// Woken when the first transfer of the order leaves it.
    turn: Notify,
}

impl SendPacing {
    pub(super) fn new(pacer: SendPacer) -> Self {
        Self {
            pacer: Mutex::new(pacer),
            order: Mutex::new(SendOrder::default()),
            turn: Notify::new(),
        }
    }

    /// Opens a transfer with `open` (which returns its id first) and puts it in the order,
    /// both under the order's lock, so transfers join in the order their ids were issued.
    pub(super) fn open<T>(
        &self,
        open: impl FnOnce() -> (u64, T, Arc<Notify>),
    ) -> (u64, T, Arc<Notify>) {
        let mut order = lock(&self.order);
        let opened = open();
        order.join(opened.0);
        opened
    }

    fn join(&self, id: u64) {
        lock(&self.order).join(id);
    }

    fn leave(&self, id: u64) {
        if lock(&self.order).leave(id) {
            self.turn.notify_waiters();
        }
    }

    /// Waits until no transfer issued before `id` has chunks left to hand over.
    async fn wait_for_turn(&self, inner: &Inner, id: u64) -> Result<(), TransportError> {
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.order).may_send(id) {
                return Ok(());
            }
            tokio::select! {
                _ = notified => {}
                _ = inner.shutdown.cancelled() => return Err(TransportError::Closed),
            }
        }
    }
}

/// A transfer's place in its peer's [`SendOrder`]: left when everything is handed over or
/// the transfer ends any other way (dropped), taken again to resume.
struct OrderPlace<'a> {
    pacing: Option<&'a SendPacing>,
    id: u64,
    joined: bool,
}

impl OrderPlace<'_> {
    fn join(&mut self) {
        if let (Some(p), false) = (self.pacing, self.joined) {
            p.join(self.id);
            self.joined = true;
        }
    }

    fn leave(&mut self) {
        if let (Some(p), true) = (self.pacing, self.joined) {
            p.leave(self.id);
            self.joined = false;
        }
    }
}

impl Drop for OrderPlace<'_> {
    fn drop(&mut self) {
        self.leave();
    }
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
    // Joined the order when `Mesh::send` opened the transfer.
    let mut place = OrderPlace {
        pacing: slot.pacing.as_ref(),
        id,
        joined: true,
    };
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
        place.join();
        match write_transfer(&inner, slot, &conn, &header, &payload).await {
            Ok(Attempt::Written) => {
                place.leave();
                finish(Ok(()));
            }
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

/// Waits until transfer `id` is first in its peer's order and the pacer lets `len` bytes go
/// towards the peer at our share of its link.
async fn wait_for_pacing(
    inner: &Inner,
    slot: &PeerSlot,
    id: u64,
    len: usize,
) -> Result<(), TransportError> {
    let Some(pacing) = &slot.pacing else {
        return Ok(());
    };
    pacing.wait_for_turn(inner, id).await?;
    let now = emu_now(inner);
    let start = lock(&pacing.pacer).book(now, len, slot.share.get());
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
    if let Some(pacing) = &slot.pacing {
        // Open no stream while an earlier transfer still has chunks to hand over.
        pacing.wait_for_turn(inner, header.transfer_id).await?;
    }
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
        wait_for_pacing(inner, slot, header.transfer_id, len).await?;
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
