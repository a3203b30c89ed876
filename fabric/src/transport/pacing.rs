//! Host-side pacing of what a sender hands to a rate-limited link: pure, no I/O, no clock.
//!
//! quinn paces a connection at 1.25 × congestion window / smoothed RTT. With the link-aware
//! controller the window is the link's bandwidth-delay product (divided among the
//! connections sharing a trunk), so during the first round trip of every burst — before any
//! acknowledgement clocks the sender — each connection sends at 1.25 × its share of the link.
//! On a 2.56 s Earth–Moon round trip that is a whole round trip of 25 % excess: the trunk's
//! tail-drop queue (0.1 s of the link on earth-moon) overflows after ~0.4 s, and every
//! datagram lost there costs another 2.56 s round trip to recover. Measured on the virtual
//! clock: a 16 MiB hierarchical all-reduce on earth-moon 4 + 4 took 2.29× its cut bound,
//! with ~1,500 trunk drops per operation.
//!
//! A [`SendPacer`] hands the link each chunk no faster than the sender's share of the link's
//! rate (on-the-wire bytes: QUIC framing and IP/UDP headers counted), the way a host's
//! fair-queueing qdisc with a maximum pacing rate does. quinn's own pacer then only shapes
//! within a chunk. A burst allowance of one chunk forgives a timer that wakes late, so the
//! average rate stays the share's even when each wait is rounded up to the timer's grain.
//!
//! A [`SendOrder`] decides which of the transfers to one peer hands over the next chunk: the
//! one issued first (first in, first out, as the cost model's trunk serialises messages in
//! issue order). Without it every transfer in flight to a peer booked its chunks in turn, so
//! the lanes of a collective shared the connection's rate (processor sharing): all of them
//! finished at the end of the batch instead of one after another, and the next hop of a
//! lane could not start early. Measured on the virtual clock, earth-moon 4 + 4: tree
//! all-reduce 16 MiB 1.28× its cost model, 64 MiB 1.48×; ring 64 MiB 1.37×.

use std::collections::BTreeSet;
use std::time::Duration;

use netem_profiles::UDP_IP_OVERHEAD_BYTES;

/// QUIC framing per packet assumed when converting payload to wire bytes (short header,
/// connection id, packet number, AEAD tag, STREAM frame header).
pub const QUIC_FRAMING_BYTES: u16 = 40;

/// Chunks whose serialisation at the paced rate is shorter than this are not paced: timers
/// cannot place them precisely and such links are fast enough that quinn's pacer suffices.
pub const MIN_PACED_CHUNK_TIME: Duration = Duration::from_millis(1);

/// Paces one sender's chunks to its share of one link's rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPacer {
    rate_bps: Option<u64>,
    mtu: u16,
    /// When the link is free for our next chunk, at our share of its rate.
    next: Duration,
}

impl SendPacer {
    /// A pacer for a link of `rate_bps` (`None`: unlimited, never waits) carrying datagrams
    /// of `mtu` bytes.
    pub fn new(rate_bps: Option<u64>, mtu: u16) -> Self {
        Self {
            rate_bps: rate_bps.filter(|&r| r > 0),
            mtu,
            next: Duration::ZERO,
        }
    }

    /// Time `len` payload bytes take on the wire at `rate_bps / share`.
    pub fn wire_time(&self, len: usize, share: u32) -> Duration {
        let Some(rate) = self.rate_bps else {
            return Duration::ZERO;
        };
        let mtu = f64::from(self.mtu.max(QUIC_FRAMING_BYTES + 1));
        let per_packet =
            (mtu + UDP_IP_OVERHEAD_BYTES as f64) / (mtu - f64::from(QUIC_FRAMING_BYTES));
        let wire_bits = len as f64 * per_packet * 8.0;
        Duration::from_secs_f64(wire_bits * f64::from(share.max(1)) / rate as f64)
    }

    /// Books a chunk of `len` bytes handed over at `now` by a sender owning `1 / share` of the
    /// link. Returns when it may go: `now`, or a later instant to wait for (then hand it over
    /// without asking again). Links too fast to pace with timers always return `now`.
    pub fn book(&mut self, now: Duration, len: usize, share: u32) -> Duration {
        let t = self.wire_time(len, share);
        if t < MIN_PACED_CHUNK_TIME {
            return now;
        }
        // One chunk of credit: a sender that was idle, or whose timer woke late, may go at
        // once, while on average it never exceeds its share.
        let start = self.next.saturating_sub(t).max(now);
        self.next = self.next.max(start) + t;
        start
    }
}

/// The transfers to one peer that still have chunks to hand over, by transfer id (ids are
/// issued in increasing order): the first issued goes first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOrder {
    waiting: BTreeSet<u64>,
}

impl SendOrder {
    /// Transfer `id` has chunks to hand over.
    pub fn join(&mut self, id: u64) {
        self.waiting.insert(id);
    }

    /// Transfer `id` has handed over everything (or gave up). Returns whether it was first,
    /// i.e. whether the next one may now go.
    pub fn leave(&mut self, id: u64) -> bool {
        let first = self.waiting.first() == Some(&id);
        self.waiting.remove(&id);
        first
    }

    /// May transfer `id` hand over a chunk now: no transfer issued before it still has
    /// chunks to hand over.
    pub fn may_send(&self, id: u64) -> bool {
        self.waiting.first().is_none_or(|&first| first >= id)
    }

    /// Transfers waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when no transfer is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn back_to_back_chunks_go_at_the_share_of_the_rate() {
        // 8 Mbit/s shared by 2: 1000 payload bytes ≈ 2.07 ms each on the wire at 4 Mbit/s.
        let mut p = SendPacer::new(Some(8_000_000), 1452);
        let t = p.wire_time(1000, 2);
        assert!(t > ms(2) && t < ms(3), "{t:?}");
        let starts: Vec<Duration> = (0..6).map(|_| p.book(Duration::ZERO, 1000, 2)).collect();
        // The first two go at once (the chunk of credit), then one every t.
        assert_eq!(starts[0], Duration::ZERO);
        assert_eq!(starts[1], Duration::ZERO);
        for w in starts[1..].windows(2) {
            assert_eq!(w[1] - w[0], t);
        }
        // On average no faster than the share: n chunks never start before (n - 2) × t.
        assert_eq!(starts[5], t * 4);
    }

    #[test]
    fn an_idle_sender_is_not_owed_a_burst_and_a_late_one_keeps_its_rate() {
        let mut p = SendPacer::new(Some(8_000_000), 1452);
        let t = p.wire_time(1000, 1);
        assert_eq!(p.book(ms(0), 1000, 1), ms(0));
        // Idle for a long time: no accumulated credit beyond one chunk.
        let now = ms(1000);
        assert_eq!(p.book(now, 1000, 1), now);
        assert_eq!(p.book(now, 1000, 1), now);
        assert_eq!(p.book(now, 1000, 1), now + t);
        // The next slot is now + 2t; woke half a chunk late for it: goes at once, and the
        // slot after it is where it would have been.
        let late = now + t * 2 + t / 2;
        assert_eq!(p.book(late, 1000, 1), late);
        assert_eq!(p.book(late, 1000, 1), now + t * 3);
    }

    #[test]
    fn transfers_hand_over_their_chunks_first_issued_first() {
        let mut o = SendOrder::default();
        assert!(o.may_send(7), "nothing waiting: anyone may go");
        o.join(5);
        o.join(3);
        o.join(9);
        assert!(o.may_send(3));
        assert!(!o.may_send(5));
        assert!(!o.may_send(9));
        // A later transfer leaving does not let the middle one go.
        assert!(!o.leave(9));
        assert!(!o.may_send(5));
        assert!(o.leave(3));
        assert!(o.may_send(5));
        // A resumed earlier transfer goes before the one now writing.
        o.join(1);
        assert!(!o.may_send(5));
        assert!(o.leave(1));
        assert!(o.leave(5));
        assert!(o.is_empty());
    }

    #[test]
    fn unlimited_and_fast_links_are_not_paced() {
        let mut free = SendPacer::new(None, 1452);
        assert_eq!(free.book(ms(5), 1 << 20, 1), ms(5));
        // 10 Gbit/s: 256 KiB takes ~0.2 ms, below what a timer can place.
        let mut lan = SendPacer::new(Some(10_000_000_000), 16_384);
        for _ in 0..10 {
            assert_eq!(lan.book(ms(5), 256 << 10, 1), ms(5));
        }
    }
}
