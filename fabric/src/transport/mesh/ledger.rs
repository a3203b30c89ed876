//! The mesh's ledger, without I/O: what we sent that the receiver does not hold yet, what the
//! receiver said it holds when a connection (re)starts, what we received completely or in
//! part from each peer, and the per-(sender, tag) mailboxes that hand transfers out in the
//! sender's order. These decide that a transfer resumed on a new connection is neither lost
//! nor duplicated; the tasks in `send`, `receive` and `connection` only move bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::transport::frame::{FrameError, PartialTransfer, ReceiverState, TransferHeader};

use super::payload::Payload;

/// Transfers received complete from one peer: every id below `below`, plus `above`.
#[derive(Debug, Default)]
pub(super) struct DoneSet {
    below: u64,
    above: BTreeSet<u64>,
}

impl DoneSet {
    pub(super) fn contains(&self, id: u64) -> bool {
        id < self.below || self.above.contains(&id)
    }

    pub(super) fn insert(&mut self, id: u64) {
        if id < self.below {
            return;
        }
        self.above.insert(id);
        while self.above.remove(&self.below) {
            self.below += 1;
        }
    }
}

/// A transfer partly received: the pieces the streams carried, not copied together.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) tag: u64,
    pub(super) seq: u64,
    total: u64,
    buf: Payload,
    /// The stream currently feeding it (a newer stream takes over).
    owner: u64,
}

impl Partial {
    /// The whole payload, once complete.
    pub(super) fn into_payload(self) -> Payload {
        self.buf
    }
}

/// What a new transfer stream should do, given what is already held.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Begin {
    /// The transfer is held completely: stop the stream.
    AlreadyHave,
    /// Feed the transfer, dropping this many leading bytes of the stream (already held).
    Skip(u64),
}

/// What happened to bytes a stream carried.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Append {
    /// Appended.
    Accepted,
    /// The transfer completed through another stream meanwhile: this stream is done.
    Gone,
    /// A newer stream feeds the transfer now: stop this one.
    Superseded,
}

/// What we received from one peer.
#[derive(Debug, Default)]
pub(super) struct Incoming {
    done: DoneSet,
    partial: HashMap<u64, Partial>,
}

fn invalid(what: &'static str, reason: String) -> FrameError {
    FrameError::Invalid { what, reason }
}

impl Incoming {
    /// What we hold, as the hello tells the sender.
    pub(super) fn state(&self) -> ReceiverState {
        ReceiverState {
            done_below: self.done.below,
            done: self.done.above.iter().copied().collect(),
            partial: self
                .partial
                .iter()
                .map(|(&transfer_id, p)| PartialTransfer {
                    transfer_id,
                    have: p.buf.len() as u64,
                })
                .collect(),
        }
    }

    /// A stream (identified by `token`, unique per stream) starts feeding `header`'s transfer
    /// at `header.offset`. It becomes the transfer's only feeder. An error means the header
    /// contradicts what was received before (the stream is malformed).
    pub(super) fn begin(
        &mut self,
        header: &TransferHeader,
        token: u64,
    ) -> Result<Begin, FrameError> {
        let id = header.transfer_id;
        if self.done.contains(id) {
            return Ok(Begin::AlreadyHave);
        }
        let p = self.partial.entry(id).or_insert_with(|| Partial {
            tag: header.tag,
            seq: header.seq,
            total: header.total_len,
            buf: Payload::new(),
            owner: 0,
        });
        if (p.tag, p.seq, p.total) != (header.tag, header.seq, header.total_len) {
            return Err(invalid(
                "transfer header",
                format!(
                    "transfer {id} resumed as (tag {}, seq {}, {} bytes), began as (tag {}, seq {}, {} bytes)",
                    header.tag, header.seq, header.total_len, p.tag, p.seq, p.total
                ),
            ));
        }
        let have = p.buf.len() as u64;
        if header.offset > have {
            return Err(invalid(
                "transfer header",
                format!(
                    "transfer {id} resumes at offset {} but only {have} bytes are held",
                    header.offset
                ),
            ));
        }
        p.owner = token;
        Ok(Begin::Skip(have - header.offset))
    }

    /// Appends bytes the stream `token` carried for transfer `id` (after its skip), keeping
    /// the piece as it is (no copy).
    pub(super) fn append(
        &mut self,
        id: u64,
        token: u64,
        data: Bytes,
    ) -> Result<Append, FrameError> {
        let Some(p) = self.partial.get_mut(&id) else {
            return Ok(Append::Gone);
        };
        if p.owner != token {
            return Ok(Append::Superseded);
        }
        if p.buf.len() as u64 + data.len() as u64 > p.total {
            return Err(invalid(
                "transfer payload",
                format!("transfer {id} carries more than its {} bytes", p.total),
            ));
        }
        p.buf.push(data);
        Ok(Append::Accepted)
    }

    /// The stream `token` for transfer `id` ended. Returns the transfer if it is now complete
    /// (and records it as done), `None` if another stream owns it or it completed already; an
    /// error (and the partial bytes dropped) if the stream ended short.
    pub(super) fn finish(&mut self, id: u64, token: u64) -> Result<Option<Partial>, FrameError> {
        let Some(p) = self.partial.get(&id) else {
            return Ok(None);
        };
        if p.owner != token {
            return Ok(None);
        }
        if (p.buf.len() as u64) < p.total {
            let reason = format!(
                "transfer {id} ended after {} of {} bytes",
                p.buf.len(),
                p.total
            );
            self.partial.remove(&id);
            return Err(invalid("transfer payload", reason));
        }
        let p = self.partial.remove(&id);
        self.done.insert(id);
        Ok(p)
    }
}

/// A transfer we sent (or are sending) that the receiver does not hold completely yet.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) done: Arc<Notify>,
}

/// What we send to one peer.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    next_id: u64,
    next_seq: HashMap<u64, u64>,
    pending: HashMap<u64, Pending>,
}

impl Outgoing {
    /// Opens a new transfer under `tag`: its id (unique towards this peer), its sequence number
    /// within the tag, and what is notified once the receiver holds it.
    pub(super) fn open(&mut self, tag: u64) -> (u64, u64, Arc<Notify>) {
        let id = self.next_id;
        self.next_id += 1;
        let seq_slot = self.next_seq.entry(tag).or_insert(0);
        let seq = *seq_slot;
        *seq_slot += 1;
        let done = Arc::new(Notify::new());
        self.pending.insert(id, Pending { done: done.clone() });
        (id, seq, done)
    }

    /// Is transfer `id` still waiting for the receiver to hold it?
    pub(super) fn is_pending(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// Whether anything is waiting for the receiver.
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// One transfer still waiting for the receiver, and what is notified when it is held.
    pub(super) fn any_pending(&self) -> Option<(u64, Arc<Notify>)> {
        self.pending
            .iter()
            .next()
            .map(|(&id, p)| (id, p.done.clone()))
    }

    /// The receiver holds `id`: forget it, returning what to notify.
    pub(super) fn forget(&mut self, id: u64) -> Option<Pending> {
        self.pending.remove(&id)
    }

    /// Pending transfers the receiver says it holds completely (after a reconnection).
    pub(super) fn held_by(&self, holds: &PeerHolds) -> Vec<u64> {
        self.pending
            .keys()
            .copied()
            .filter(|&id| holds.done.contains(id))
            .collect()
    }
}

/// The peer's `ReceiverState`, indexed.
#[derive(Debug, Default)]
pub(super) struct PeerHolds {
    done: DoneSet,
    partial: HashMap<u64, u64>,
}

impl PeerHolds {
    /// Does the peer hold transfer `id` completely?
    pub(super) fn holds(&self, id: u64) -> bool {
        self.done.contains(id)
    }

    /// Where a resent transfer of `total` bytes starts: after the bytes the peer holds.
    pub(super) fn resume_offset(&self, id: u64, total: u64) -> u64 {
        self.partial.get(&id).copied().unwrap_or(0).min(total)
    }
}

impl From<ReceiverState> for PeerHolds {
    fn from(s: ReceiverState) -> Self {
        let mut done = DoneSet {
            below: s.done_below,
            above: BTreeSet::new(),
        };
        for id in s.done {
            done.insert(id);
        }
        Self {
            done,
            partial: s
                .partial
                .into_iter()
                .map(|p| (p.transfer_id, p.have))
                .collect(),
        }
    }
}

/// Per-(from, tag) mailbox: transfers in the sender's order.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    next_seq: u64,
    ready: BTreeMap<u64, Payload>,
}

impl Mailbox {
    /// Files transfer number `seq` of this (sender, tag).
    pub(super) fn put(&mut self, seq: u64, payload: Payload) {
        self.ready.insert(seq, payload);
    }

    /// Files a transfer after every one filed so far (a rank sending to itself).
    pub(super) fn push(&mut self, payload: Payload) {
        let seq = self.next_seq + self.ready.len() as u64;
        self.ready.insert(seq, payload);
    }

    /// The next transfer in the sender's order, if it has arrived.
    pub(super) fn take_next(&mut self) -> Option<Payload> {
        let payload = self.ready.remove(&self.next_seq)?;
        self.next_seq += 1;
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: u64, tag: u64, seq: u64, offset: u64, total: u64) -> TransferHeader {
        TransferHeader {
            from_rank: 1,
            tag,
            transfer_id: id,
            seq,
            offset,
            total_len: total,
        }
    }

    #[test]
    fn done_set_compacts_contiguous_ids() {
        let mut d = DoneSet::default();
        d.insert(2);
        d.insert(0);
        assert_eq!((d.below, d.above.len()), (1, 1));
        d.insert(1);
        assert_eq!((d.below, d.above.len()), (3, 0));
        assert!(d.contains(0) && d.contains(2) && !d.contains(3));
        d.insert(1); // again: nothing changes
        assert_eq!(d.below, 3);
    }

    #[test]
    fn a_transfer_resumed_after_a_lost_connection_is_neither_lost_nor_duplicated() {
        let mut inc = Incoming::default();
        // First stream: 4 of 10 bytes arrive, then the connection is lost.
        assert_eq!(
            inc.begin(&header(7, 3, 0, 0, 10), 1).ok(),
            Some(Begin::Skip(0))
        );
        assert_eq!(
            inc.append(7, 1, Bytes::from_static(b"abcd")).ok(),
            Some(Append::Accepted)
        );
        // The hello of the new connection says what we hold.
        let holds = PeerHolds::from(inc.state());
        assert_eq!(holds.resume_offset(7, 10), 4);
        assert!(!holds.holds(7));
        // The sender resumes from offset 2 (older knowledge): we skip the 2 bytes we hold.
        assert_eq!(
            inc.begin(&header(7, 3, 0, 2, 10), 2).ok(),
            Some(Begin::Skip(2))
        );
        // The old stream, still trickling, is superseded.
        assert_eq!(
            inc.append(7, 1, Bytes::from_static(b"zz")).ok(),
            Some(Append::Superseded)
        );
        assert_eq!(
            inc.append(7, 2, Bytes::from_static(b"efghij")).ok(),
            Some(Append::Accepted)
        );
        let p = inc
            .finish(7, 2)
            .ok()
            .flatten()
            .map(|p| p.into_payload().into_bytes());
        assert_eq!(p.as_deref(), Some(&b"abcdefghij"[..]));
        // A late duplicate stream of the same transfer is refused.
        assert_eq!(
            inc.begin(&header(7, 3, 0, 0, 10), 3).ok(),
            Some(Begin::AlreadyHave)
        );
        assert!(PeerHolds::from(inc.state()).holds(7));
    }

    #[test]
    fn a_stream_that_contradicts_the_transfer_is_malformed() {
        let mut inc = Incoming::default();
        assert!(inc.begin(&header(1, 3, 0, 0, 10), 1).is_ok());
        assert!(inc.append(1, 1, Bytes::from_static(b"abc")).is_ok());
        // Different length, or an offset past what we hold.
        assert!(inc.begin(&header(1, 3, 0, 0, 11), 2).is_err());
        assert!(inc.begin(&header(1, 3, 0, 4, 10), 2).is_err());
        // More bytes than announced.
        assert!(inc.append(1, 1, Bytes::from_static(b"0123456789")).is_err());
        // Ending short drops the partial bytes: a resend starts from 0.
        assert!(inc.finish(1, 1).is_err());
        assert_eq!(PeerHolds::from(inc.state()).resume_offset(1, 10), 0);
    }

    #[test]
    fn outgoing_numbers_transfers_per_peer_and_sequences_per_tag() {
        let mut out = Outgoing::default();
        let (a, sa, _) = out.open(5);
        let (b, sb, _) = out.open(6);
        let (c, sc, _) = out.open(5);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!((sa, sb, sc), (0, 0, 1));
        let holds = PeerHolds::from(ReceiverState {
            done_below: 1,
            done: vec![2],
            partial: vec![],
        });
        let mut held = out.held_by(&holds);
        held.sort_unstable();
        assert_eq!(held, vec![0, 2]);
        assert!(out.forget(0).is_some() && out.forget(0).is_none());
        assert!(out.is_pending(1) && !out.is_idle());
    }

    #[test]
    fn mailbox_hands_out_in_the_senders_order() {
        let mut mb = Mailbox::default();
        mb.put(1, Bytes::from_static(b"second").into());
        assert_eq!(mb.take_next(), None);
        mb.put(0, Bytes::from_static(b"first").into());
        assert_eq!(
            mb.take_next().map(Payload::into_bytes).as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(
            mb.take_next().map(Payload::into_bytes).as_deref(),
            Some(&b"second"[..])
        );
        mb.push(Bytes::from_static(b"third").into());
        assert_eq!(
            mb.take_next().map(Payload::into_bytes).as_deref(),
            Some(&b"third"[..])
        );
    }
}
