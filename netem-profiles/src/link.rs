//! The per-link state machine: for each datagram, drop it (and say why) or say when it
//! arrives.
//!
//! Order of decisions for a datagram of `len` bytes handed to the link at `now`:
//! 1. outage — the link is down at `now`: dropped (photons already launched still arrive);
//! 2. random loss — Bernoulli or Gilbert-Elliott;
//! 3. rate — it waits behind the datagrams already queued and is serialised at the link's
//!    rate; if the bytes waiting would exceed the queue limit it is tail-dropped;
//! 4. delay — propagation delay at `now`, plus jitter; FIFO order kept unless the jitter
//!    allows reordering;
//! 5. duplication — a delivered datagram may be delivered twice.
//!
//! Serialisation is tracked in exact integer units (nanoseconds × bit/s), so `N` bytes at `R`
//! bit/s leave exactly `N·8/R` after the first with no rounding drift.

use std::time::Duration;

use crate::UDP_IP_OVERHEAD_BYTES;
use crate::profile::{JitterDist, LinkSpec, LossModel};
use crate::rng::LinkRng;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// Random loss (Bernoulli or Gilbert-Elliott).
    Loss,
    /// The link was down (scheduled outage).
    Outage,
    /// The link's queue was full (tail drop).
    Queue,
}

impl DropCause {
    /// Lower-case label for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::Outage => "outage",
            Self::Queue => "queue",
        }
    }
}

/// The link's answer for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver at `at` (emulated time since the epoch); deliver a second copy at
    /// `duplicate_at` if set.
    Deliver {
        /// Arrival time of the datagram.
        at: Duration,
        /// Arrival time of a duplicate, if the link duplicated it.
        duplicate_at: Option<Duration>,
    },
    /// Dropped, with the cause.
    Drop(DropCause),
}

/// One direction of one link, with its random state and its queue.
#[derive(Debug, Clone)]
pub struct LinkModel {
    spec: LinkSpec,
    rng: LinkRng,
    /// Gilbert-Elliott: currently in the bad state?
    ge_bad: bool,
    /// When the serialiser is free, in ns × bit/s (0 when the link has no rate).
    busy_until_scaled: u128,
    /// Latest arrival handed out, for FIFO order.
    last_arrival: Duration,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

impl LinkModel {
    /// A link in its initial state (empty queue, Gilbert-Elliott in the good state).
    pub fn new(spec: LinkSpec, seed: u64) -> Self {
        Self {
            spec,
            rng: LinkRng::new(seed),
            ge_bad: false,
            busy_until_scaled: 0,
            last_arrival: Duration::ZERO,
        }
    }

    /// The link's parameters.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// Bytes waiting for (or in) serialisation at `now`.
    pub fn queued_bytes(&self, now: Duration) -> u64 {
        let Some(bps) = self.spec.rate_bps.filter(|&r| r > 0) else {
            return 0;
        };
        let now_scaled = now.as_nanos() * u128::from(bps);
        let backlog_bits_e9 = self.busy_until_scaled.saturating_sub(now_scaled);
        (backlog_bits_e9 / (8 * NANOS_PER_SEC)) as u64
    }

    /// Decides the fate of a datagram of `len` payload bytes handed to the link at `now`.
    pub fn on_packet(&mut self, now: Duration, len: usize) -> Verdict {
        if !self.spec.outages.is_up(now) {
            return Verdict::Drop(DropCause::Outage);
        }
        if self.lose() {
            return Verdict::Drop(DropCause::Loss);
        }
        let Some(departure) = self.serialise(now, len) else {
            return Verdict::Drop(DropCause::Queue);
        };
        let mut at = departure.saturating_add(self.spec.delay_at(now));
        if let Some(jitter) = self.spec.jitter {
            at = self.jittered(departure, at, jitter.dist, jitter.amount);
            if !jitter.reorder {
                at = at.max(self.last_arrival);
            }
        }
        self.last_arrival = self.last_arrival.max(at);
        let duplicate_at = self.rng.chance(self.spec.duplicate).then_some(at);
        Verdict::Deliver { at, duplicate_at }
    }

    fn lose(&mut self) -> bool {
        match self.spec.loss {
            LossModel::None => false,
            LossModel::Bernoulli { p } => self.rng.chance(p),
            LossModel::GilbertElliott { p, r, h, k } => {
                // Transition first, then lose according to the new state (netem's order).
                self.ge_bad = if self.ge_bad {
                    !self.rng.chance(r)
                } else {
                    self.rng.chance(p)
                };
                let deliver_p = if self.ge_bad { h } else { k };
                !self.rng.chance(deliver_p)
            }
        }
    }

    /// Time the last bit leaves the sender, or `None` on tail drop.
    fn serialise(&mut self, now: Duration, len: usize) -> Option<Duration> {
        let Some(bps) = self.spec.rate_bps.filter(|&r| r > 0) else {
            return Some(now);
        };
        let bps = u128::from(bps);
        let wire_bytes = (len + UDP_IP_OVERHEAD_BYTES) as u128;
        let now_scaled = now.as_nanos() * bps;
        let start = self.busy_until_scaled.max(now_scaled);
        let backlog_bytes = (start - now_scaled) / (8 * NANOS_PER_SEC);
        if backlog_bytes + wire_bytes > u128::from(self.spec.queue_limit_bytes) {
            return None;
        }
        self.busy_until_scaled = start + wire_bytes * 8 * NANOS_PER_SEC;
        let done_ns = self.busy_until_scaled.div_ceil(bps);
        Some(Duration::from_nanos(
            done_ns.min(u128::from(u64::MAX)) as u64
        ))
    }

    /// `at` moved by one draw of the jitter distribution, but never before `departure`:
    /// a datagram cannot arrive before its last bit has left.
    fn jittered(
        &mut self,
        departure: Duration,
        at: Duration,
        dist: JitterDist,
        amount: Duration,
    ) -> Duration {
        let a = amount.as_nanos() as f64;
        let offset_ns = match dist {
            JitterDist::Uniform => (self.rng.next_f64() * 2.0 - 1.0) * a,
            JitterDist::Normal => self.rng.next_normal() * a,
            JitterDist::Pareto => {
                // Pareto with shape 3 and mean `a`: scale x_m = a·2/3; u in (0, 1].
                let u = 1.0 - self.rng.next_f64();
                a * (2.0 / 3.0) * u.powf(-1.0 / 3.0)
            }
        };
        // `as` saturates (and maps NaN to 0), so no draw can overflow.
        let ns = (at.as_nanos() as i128).saturating_add(offset_ns as i128);
        let ns = ns.clamp(departure.as_nanos() as i128, i128::from(u64::MAX));
        Duration::from_nanos(ns as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{OutageSchedule, PeriodicOutage};

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    #[test]
    fn ideal_link_adds_exactly_the_delay() {
        let mut l = LinkModel::new(LinkSpec::ideal(ms(1280)), 1);
        assert_eq!(
            l.on_packet(ms(5), 1200),
            Verdict::Deliver {
                at: ms(1285),
                duplicate_at: None
            }
        );
    }

    #[test]
    fn rate_serialises_back_to_back_without_drift() {
        let mut spec = LinkSpec::ideal(ms(10));
        spec.rate_bps = Some(1_000_000); // 1 Mbit/s
        spec.queue_limit_bytes = u64::MAX;
        let mut l = LinkModel::new(spec, 1);
        let n = 1000;
        let len = 972; // 1000 bytes on the wire = 8 ms each
        let mut last = Duration::ZERO;
        for _ in 0..n {
            match l.on_packet(Duration::ZERO, len) {
                Verdict::Deliver { at, .. } => last = at,
                v => panic!("unexpected {v:?}"),
            }
        }
        // first leaves at 8 ms; the n-th exactly (n-1)·8 ms later; plus 10 ms delay.
        assert_eq!(last, ms(8) + ms(8) * (n - 1) + ms(10));
    }

    #[test]
    fn queue_overflow_tail_drops_at_the_limit() {
        let mut spec = LinkSpec::ideal(ms(0));
        spec.rate_bps = Some(8_000); // 1000 bytes/s
        spec.queue_limit_bytes = 3000;
        let mut l = LinkModel::new(spec, 1);
        let len = 1000 - UDP_IP_OVERHEAD_BYTES;
        for _ in 0..3 {
            assert!(matches!(
                l.on_packet(Duration::ZERO, len),
                Verdict::Deliver { .. }
            ));
        }
        assert_eq!(
            l.on_packet(Duration::ZERO, len),
            Verdict::Drop(DropCause::Queue)
        );
        assert_eq!(l.queued_bytes(Duration::ZERO), 3000);
        // One second later one datagram has left: room for exactly one more.
        assert!(matches!(
            l.on_packet(ms(1000), len),
            Verdict::Deliver { .. }
        ));
        assert_eq!(l.on_packet(ms(1000), len), Verdict::Drop(DropCause::Queue));
    }

    #[test]
    fn outage_drops_with_cause() {
        let mut spec = LinkSpec::ideal(ms(1));
        spec.outages = OutageSchedule {
            periodic: vec![PeriodicOutage {
                period: ms(100),
                duration: ms(10),
                phase: ms(50),
            }],
            windows: vec![],
        };
        let mut l = LinkModel::new(spec, 1);
        assert_eq!(l.on_packet(ms(55), 100), Verdict::Drop(DropCause::Outage));
        assert!(matches!(l.on_packet(ms(60), 100), Verdict::Deliver { .. }));
    }
}
