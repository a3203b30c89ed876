//! Receiving: one task per incoming transfer stream hands the chunks quinn reads (slices of
//! its packets, not copied) to the ledger's partial transfer and, when the transfer is
//! complete, puts it in its mailbox and tells the sender.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{Instrument, debug, warn};

use crate::transport::frame::{
    self, ControlKind, FabricControl, FrameError, MAX_HEADER_LEN, TransferHeader,
};

use super::ledger::{Append, Begin};
use super::payload::Payload;
use super::{CHUNK, Inner, bump, lock, stop_code};

/// A transfer from a rank to itself goes straight to its mailbox.
pub(super) fn deliver_local(inner: &Inner, tag: u64, payload: Payload) {
    let mut boxes = lock(&inner.mailboxes);
    boxes.entry((inner.rank, tag)).or_default().push(payload);
    drop(boxes);
    inner.delivered.notify_waiters();
}

pub(super) async fn stream_acceptor(inner: Arc<Inner>, rank: usize, conn: quinn::Connection) {
    loop {
        let recv = tokio::select! {
            r = conn.accept_uni() => match r { Ok(r) => r, Err(_) => return },
            _ = inner.shutdown.cancelled() => return,
        };
        let inner2 = inner.clone();
        tokio::spawn(
            async move {
                if let Err(e) = receive_transfer(&inner2, rank, recv).await {
                    bump(&inner2.stats.protocol_errors, 1);
                    warn!(peer = rank, error = %e, "transfer stream refused");
                }
            }
            .in_current_span(),
        );
    }
}

/// Reads one transfer stream into its partial transfer; delivers the transfer when complete.
async fn receive_transfer(
    inner: &Arc<Inner>,
    rank: usize,
    mut recv: quinn::RecvStream,
) -> Result<(), FrameError> {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return Ok(());
    };
    let malformed = |recv: &mut quinn::RecvStream, e: FrameError| {
        let _ = recv.stop(stop_code::MALFORMED.into());
        e
    };
    let header =
        match frame::read_delimited::<TransferHeader>(&mut recv, "transfer header", MAX_HEADER_LEN)
            .await
        {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(malformed(
                    &mut recv,
                    FrameError::Truncated {
                        what: "transfer header",
                    },
                ));
            }
            Err(e @ FrameError::Read { .. }) => {
                debug!(peer = rank, error = %e, "transfer stream ended before its header");
                return Ok(());
            }
            Err(e) => return Err(malformed(&mut recv, e)),
        };
    if let Err(e) = frame::check_header(&header, rank, inner.max_transfer_bytes) {
        return Err(malformed(&mut recv, e));
    }
    let id = header.transfer_id;
    let token = inner.next_stream_token.fetch_add(1, Ordering::Relaxed);
    // Register as the stream feeding this transfer; learn how many bytes to skip.
    let begin = lock(&slot.incoming).begin(&header, token);
    let mut skip = match begin {
        Ok(Begin::Skip(n)) => n,
        Ok(Begin::AlreadyHave) => {
            bump(&inner.stats.duplicates_ignored, 1);
            let _ = recv.stop(stop_code::ALREADY_HAVE.into());
            return Ok(());
        }
        Err(e) => return Err(malformed(&mut recv, e)),
    };
    loop {
        let chunk = match recv.read_chunk(CHUNK, true).await {
            Ok(Some(c)) => c.bytes,
            Ok(None) => break,
            Err(e) => {
                debug!(peer = rank, transfer = id, error = %e, "transfer stream interrupted; the sender will resume");
                return Ok(());
            }
        };
        let mut data = chunk;
        if skip > 0 {
            let n = usize::try_from(skip).unwrap_or(usize::MAX).min(data.len());
            let _ = data.split_to(n);
            skip -= n as u64;
            if data.is_empty() {
                continue;
            }
        }
        let len = data.len() as u64;
        let appended = lock(&slot.incoming).append(id, token, data);
        match appended {
            Ok(Append::Accepted) => {}
            Ok(Append::Gone) => return Ok(()), // completed by another stream meanwhile
            Ok(Append::Superseded) => {
                let _ = recv.stop(stop_code::ALREADY_HAVE.into());
                return Ok(()); // a newer stream took over
            }
            Err(e) => return Err(malformed(&mut recv, e)),
        }
        bump(&inner.stats.payload_bytes_received, len);
        inner.received_bytes.send_modify(|b| *b += len);
    }
    // End of stream: complete?
    let complete = lock(&slot.incoming).finish(id, token)?;
    if let Some(p) = complete {
        {
            let mut boxes = lock(&inner.mailboxes);
            boxes
                .entry((rank, p.tag))
                .or_default()
                .put(p.seq, p.into_payload());
        }
        bump(&inner.stats.transfers_delivered, 1);
        inner.delivered.notify_waiters();
        if let Some(tx) = slot.link.borrow().control.clone() {
            let _ = tx.send(FabricControl {
                kind: Some(ControlKind::TransferDone(id)),
            });
        }
    }
    Ok(())
}
