//! The per-link state machine: for each datagram, drop it (and say why) or say when it
//! arrives.
//!
//! Order of decisions for a datagram of `len` bytes handed to the link at `now`:
//! 1. outage — the link is down at `now`: dropped (photons already launched still arrive);
//! 2. random loss — Bernoulli or Gilbert-Elliott;
//! 3. rate — it waits behind the datagrams already queued and is serialised at the link's
//!    rate; if the bytes waiting would exceed the queue limit it is tail-dropped;
//! 4. delay — propagation delay at `now`, plus jitter; jitter never makes a datagram arrive
//!    before its last bit left (the departure); FIFO order kept unless the jitter allows
//!    reordering;
//! 5. duplication — a delivered datagram may be delivered twice.
//!
//! # Store-and-forward (`outage = "store"`, [`OutageMode::Store`])
//! The upstream end of the link holds what it cannot send, as a relay does (TIPTOP):
//! * a datagram handed over while the link is down is **stored**: random loss still applies;
//!   it waits, in order behind everything handed over before it, until the link is up again,
//!   and is then serialised at the link's rate;
//! * a datagram whose serialisation would not finish before the next outage starts is stored
//!   too: its serialisation starts over when the link is up again (the next one waits behind
//!   it);
//! * stored datagrams count against `store_bytes`, the others against the queue limit; a
//!   datagram counts whole until its last bit has left. A datagram that would make the
//!   stored bytes exceed the buffer is dropped (cause `store_full`), and so is one the queue
//!   cannot take (cause `queue`), as on a drop link;
//! * **already propagating** means: its last bit left (departure) before an outage started
//!   and it would arrive after that start. Such a datagram is lost (cause `in_flight`): the
//!   link time it used stays used. One that would arrive exactly at the start arrives;
//! * the delay is the link's delay at the departure (it may leave long after hand-over);
//! * with `store_contact_plan = true` the upstream end follows the link's contact plan: a
//!   datagram that would *arrive* after the next outage starts is stored as well (its
//!   serialisation starts over when the link is up again), so nothing is lost in flight. The
//!   link idles for one light time before each outage, as a DTN relay that knows its
//!   predicted occultations does.
//!
//! A drop link (the default) keeps the rules above: a datagram handed over while up is
//! delivered even if the link goes down while it propagates.
//!
//! Serialisation is tracked exactly (whole nanoseconds plus a remainder in ns × bit/s), so
//! `N` bytes at `R` bit/s leave exactly `N·8/R` after the first with no rounding drift; a
//! departure is rounded up to the next whole nanosecond. A byte partly serialised still
//! counts against the queue limit.
//!
//! Cost: the verdict path has no heap allocation and no 128-bit division; the outage
//! schedule is consulted only when the cached up/down interval ends. See
//! `benches/verdict.rs` and `docs/BENCHMARKS.md`.

use std::time::Duration;

use crate::UDP_IP_OVERHEAD_BYTES;
use std::collections::VecDeque;

use crate::profile::{JitterDist, LinkSpec, LossModel, OutageMode};
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
    /// Store-and-forward: the link's store was full while it was down.
    StoreFull,
    /// Store-and-forward: the link went down while the datagram was propagating.
    InFlight,
}

impl DropCause {
    /// Lower-case label for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::Outage => "outage",
            Self::Queue => "queue",
            Self::StoreFull => "store_full",
            Self::InFlight => "in_flight",
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
    /// When the serialiser is free: `busy_ns + busy_rem / rate` ns since the epoch, kept as
    /// whole nanoseconds plus a remainder in (ns × bit/s) units (`busy_rem < rate`), so
    /// serialisation times add up exactly.
    busy_ns: u64,
    busy_rem: u64,
    /// Serialisation time of the last datagram size seen (`wire_len` bytes on the wire):
    /// `ser_ns + ser_rem / rate` ns. Datagrams mostly share a size, so this saves a division.
    ser_wire_len: u64,
    ser_ns: u64,
    ser_rem: u64,
    /// The link's up/down state is known to be `state_up` for every `t` in
    /// `[state_from, state_until)`: the schedule is consulted only when it can change.
    state_from: Duration,
    state_until: Duration,
    state_up: bool,
    /// Latest arrival handed out, for FIFO order.
    last_arrival: Duration,
    /// Store-and-forward only: datagrams handed over and not yet departed, in order.
    waiting: VecDeque<Waiting>,
    /// Their wire bytes: stored ones, and queued ones.
    stored_bytes: u64,
    queue_bytes: u64,
}

/// A datagram in a store-and-forward link's FIFO.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    departure: Duration,
    wire: u64,
    stored: bool,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A jitter draw never moves a datagram by more than this many times the jitter's `amount`.
pub const JITTER_CAP: f64 = 8.0;

impl LinkModel {
    /// A link in its initial state (empty queue, Gilbert-Elliott in the good state).
    pub fn new(spec: LinkSpec, seed: u64) -> Self {
        Self {
            spec,
            rng: LinkRng::new(seed),
            ge_bad: false,
            busy_ns: 0,
            busy_rem: 0,
            ser_wire_len: u64::MAX,
            ser_ns: 0,
            ser_rem: 0,
            state_from: Duration::ZERO,
            state_until: Duration::ZERO,
            state_up: true,
            last_arrival: Duration::ZERO,
            waiting: VecDeque::new(),
            stored_bytes: 0,
            queue_bytes: 0,
        }
    }

    /// Lets `bytes` more wait for serialisation before the tail drop (a rate-limited link
    /// only; saturating). For a link private to one sender, whose queue is that sender's
    /// own egress: a host blocks a sender that overruns its own port instead of dropping.
    pub fn extend_queue(&mut self, bytes: u64) {
        if self.spec.rate_bps.is_some_and(|r| r > 0) {
            self.spec.queue_limit_bytes = self.spec.queue_limit_bytes.saturating_add(bytes);
        }
    }

    /// Bytes a store-and-forward link holds stored (waiting for the link to come back, or
    /// draining after it did) at `now`, counting a datagram whole until it has left; 0 for
    /// a drop link.
    pub fn stored_bytes(&mut self, now: Duration) -> u64 {
        self.expire(now);
        self.stored_bytes
    }

    /// The link's parameters.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// Bytes waiting for (or in) serialisation at `now` (a byte partly sent counts).
    pub fn queued_bytes(&self, now: Duration) -> u64 {
        let Some(bps) = self.rate() else {
            return 0;
        };
        let (start_ns, start_rem) = self.start_at(now);
        let backlog = backlog_scaled(start_ns, start_rem, now_ns(now), bps);
        // Called per datagram by the emulator: divide in 64 bits whenever the backlog fits
        // (below ~2.3 s of backlog at 8 Gbit/s, longer at lower rates).
        match u64::try_from(backlog) {
            Ok(b) => b.div_ceil(8 * NANOS_PER_SEC as u64),
            Err(_) => backlog
                .div_ceil(8 * NANOS_PER_SEC)
                .min(u128::from(u64::MAX)) as u64,
        }
    }

    /// Decides the fate of a datagram of `len` payload bytes handed to the link at `now`.
    pub fn on_packet(&mut self, now: Duration, len: usize) -> Verdict {
        if let OutageMode::Store {
            buffer_bytes,
            contact_plan,
        } = self.spec.outage_mode
        {
            return self.on_packet_store(now, len, buffer_bytes, contact_plan);
        }
        if !self.is_up(now) {
            return Verdict::Drop(DropCause::Outage);
        }
        if self.lose() {
            return Verdict::Drop(DropCause::Loss);
        }
        let Some(departure) = self.serialise(now, len) else {
            return Verdict::Drop(DropCause::Queue);
        };
        let at = departure.saturating_add(self.spec.delay_at(now));
        self.propagate(departure, at)
    }

    /// Jitter, FIFO order and duplication for a datagram that leaves at `departure` and
    /// would arrive at `at` without jitter.
    fn propagate(&mut self, departure: Duration, mut at: Duration) -> Verdict {
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

    /// [`LinkModel::on_packet`] for a store-and-forward link (rules in the module docs).
    fn on_packet_store(
        &mut self,
        now: Duration,
        len: usize,
        buffer: u64,
        contact_plan: bool,
    ) -> Verdict {
        self.expire(now);
        let up_now = self.spec.outages.is_up(now);
        if self.lose() {
            return Verdict::Drop(DropCause::Loss);
        }
        let sched = &self.spec.outages;
        let wire = (len as u64).saturating_add(UDP_IP_OVERHEAD_BYTES as u64);
        // Serialisation start (whole ns + remainder) and time, as `serialise` keeps them.
        let bps = self.rate();
        let (mut start_ns, mut start_rem) = match bps {
            Some(_) => self.start_at(now),
            None => (now_ns(now), 0),
        };
        let (ser_ns, ser_rem) = match bps {
            Some(bps) => {
                let scaled = u128::from(wire) * 8 * NANOS_PER_SEC;
                let b = u128::from(bps);
                (
                    (scaled / b).min(u128::from(u64::MAX)) as u64,
                    (scaled % b) as u64,
                )
            }
            None => (0, 0),
        };
        let mut stored = !up_now;
        // Find the first up interval the whole serialisation fits in. Bounded: every pass
        // moves past one outage.
        let mut fits = false;
        for _ in 0..10_000 {
            let start = Duration::from_nanos(start_ns.saturating_add(u64::from(start_rem > 0)));
            if !sched.is_up(start) {
                let Some(back) = sched.next_change(start) else {
                    return Verdict::Drop(DropCause::Outage); // down for good
                };
                (start_ns, start_rem) = (now_ns(back), 0);
                stored = true;
                continue;
            }
            let (end_ns, end_rem) = add_scaled(start_ns, start_rem, ser_ns, ser_rem, bps);
            let departure = Duration::from_nanos(end_ns.saturating_add(u64::from(end_rem > 0)));
            // Launched only if its last bit leaves before the outage (TIPTOP), or, following
            // the contact plan, only if it also arrives by then.
            let must_end_by = if contact_plan {
                departure.saturating_add(self.spec.delay_at(departure))
            } else {
                departure
            };
            match sched.next_change(start) {
                Some(down) if down < must_end_by => {
                    (start_ns, start_rem) = (now_ns(down), 0);
                    stored = true;
                }
                _ => {
                    fits = true;
                    break;
                }
            }
        }
        if !fits {
            return Verdict::Drop(DropCause::Outage);
        }
        if stored {
            if self.stored_bytes.saturating_add(wire) > buffer {
                return Verdict::Drop(DropCause::StoreFull);
            }
        } else if self.queue_bytes.saturating_add(wire) > self.spec.queue_limit_bytes {
            return Verdict::Drop(DropCause::Queue);
        }
        let (end_ns, end_rem) = add_scaled(start_ns, start_rem, ser_ns, ser_rem, bps);
        if bps.is_some() {
            self.busy_ns = end_ns;
            self.busy_rem = end_rem;
        }
        let departure = Duration::from_nanos(end_ns.saturating_add(u64::from(end_rem > 0)));
        if departure > now {
            self.waiting.push_back(Waiting {
                departure,
                wire,
                stored,
            });
            if stored {
                self.stored_bytes += wire;
            } else {
                self.queue_bytes += wire;
            }
        }
        let at = departure.saturating_add(self.spec.delay_at(departure));
        let verdict = self.propagate(departure, at);
        // Already propagating when the link goes down: lost.
        if let Verdict::Deliver { at, .. } = verdict {
            let sched = &self.spec.outages;
            let lost = !sched.is_up(departure)
                || sched.next_change(departure).is_some_and(|down| down < at);
            if lost {
                return Verdict::Drop(DropCause::InFlight);
            }
        }
        verdict
    }

    /// Forgets the store-and-forward datagrams that have left by `now`.
    fn expire(&mut self, now: Duration) {
        while let Some(w) = self.waiting.front() {
            if w.departure > now {
                break;
            }
            if w.stored {
                self.stored_bytes -= w.wire;
            } else {
                self.queue_bytes -= w.wire;
            }
            self.waiting.pop_front();
        }
    }

    /// The schedule's state at `now`, consulting it only when the cached interval does not
    /// cover `now`.
    fn is_up(&mut self, now: Duration) -> bool {
        if self.state_from <= now && now < self.state_until {
            return self.state_up;
        }
        let sched = &self.spec.outages;
        self.state_up = sched.is_up(now);
        self.state_from = now;
        self.state_until = sched.next_change(now).unwrap_or(Duration::MAX);
        self.state_up
    }

    fn rate(&self) -> Option<u64> {
        self.spec.rate_bps.filter(|&r| r > 0)
    }

    /// When serialisation of a datagram handed over at `now` can start.
    fn start_at(&self, now: Duration) -> (u64, u64) {
        let now = now_ns(now);
        if now > self.busy_ns || (now == self.busy_ns && self.busy_rem == 0) {
            (now, 0)
        } else {
            (self.busy_ns, self.busy_rem)
        }
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
        let Some(bps) = self.rate() else {
            return Some(now);
        };
        let wire = (len as u64).saturating_add(UDP_IP_OVERHEAD_BYTES as u64);
        let limit = self.spec.queue_limit_bytes;
        if wire > limit {
            return None;
        }
        let (start_ns, start_rem) = self.start_at(now);
        // Tail drop iff ceil(backlog bytes) + wire > limit, i.e. iff the backlog in
        // (bit × 1e9) units exceeds (limit - wire) bytes' worth: no division needed.
        let backlog = backlog_scaled(start_ns, start_rem, now_ns(now), bps);
        if backlog > u128::from(limit - wire) * 8 * NANOS_PER_SEC {
            return None;
        }
        if wire != self.ser_wire_len {
            let scaled = u128::from(wire) * 8 * NANOS_PER_SEC;
            let bps = u128::from(bps);
            self.ser_ns = (scaled / bps).min(u128::from(u64::MAX)) as u64;
            self.ser_rem = (scaled % bps) as u64;
            self.ser_wire_len = wire;
        }
        let mut ns = start_ns.saturating_add(self.ser_ns);
        let mut rem = start_rem + self.ser_rem;
        if rem >= bps {
            rem -= bps;
            ns = ns.saturating_add(1);
        }
        self.busy_ns = ns;
        self.busy_rem = rem;
        // The last bit has left at the first whole nanosecond not before the exact instant.
        Some(Duration::from_nanos(ns.saturating_add(u64::from(rem > 0))))
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
        // Each draw is capped at ±JITTER_CAP·amount, so the emulator can bound how long it
        // holds a datagram; the cap moves the Pareto mean by 0.2 % and the normal not at all
        // in practice (8σ). `as` saturates and maps NaN to 0: no draw can overflow.
        let cap = a * JITTER_CAP;
        let offset_ns = offset_ns.clamp(-cap, cap);
        let ns = (at.as_nanos() as i128).saturating_add(offset_ns as i128);
        let ns = ns.clamp(departure.as_nanos() as i128, i128::from(u64::MAX));
        Duration::from_nanos(ns as u64)
    }
}

/// `(ns, rem) + (add_ns, add_rem)` in the serialiser's units (remainder in ns × bit/s, below
/// `bps`); without a rate the remainder is 0.
fn add_scaled(ns: u64, rem: u64, add_ns: u64, add_rem: u64, bps: Option<u64>) -> (u64, u64) {
    let Some(bps) = bps else {
        return (ns.saturating_add(add_ns), 0);
    };
    let mut ns = ns.saturating_add(add_ns);
    let mut rem = rem + add_rem;
    if rem >= bps {
        rem -= bps;
        ns = ns.saturating_add(1);
    }
    (ns, rem)
}

/// `t` in whole nanoseconds (saturating after ~584 years).
fn now_ns(t: Duration) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// Bits waiting at `now` × 1e9, from a serialiser that starts at `start_ns + start_rem/bps`.
fn backlog_scaled(start_ns: u64, start_rem: u64, now: u64, bps: u64) -> u128 {
    u128::from(start_ns.saturating_sub(now)) * u128::from(bps) + u128::from(start_rem)
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

    /// The serialiser as first written: one u128 in (ns × bit/s), divisions everywhere.
    /// The fast one must agree with it exactly.
    struct ReferenceSerialiser {
        bps: u128,
        limit: u128,
        busy_scaled: u128,
    }

    impl ReferenceSerialiser {
        fn serialise(&mut self, now: Duration, len: usize) -> Option<Duration> {
            let wire = (len + UDP_IP_OVERHEAD_BYTES) as u128;
            let now_scaled = now.as_nanos() * self.bps;
            let start = self.busy_scaled.max(now_scaled);
            let backlog = (start - now_scaled).div_ceil(8 * NANOS_PER_SEC);
            if backlog + wire > self.limit {
                return None;
            }
            self.busy_scaled = start + wire * 8 * NANOS_PER_SEC;
            Some(Duration::from_nanos(
                self.busy_scaled.div_ceil(self.bps) as u64
            ))
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_serialiser_matches_the_reference(
            bps in 1u64..100_000_000_000,
            limit in 1u64..10_000_000,
            sends in proptest::collection::vec((0u64..2_000_000, 0usize..9000), 1..200),
        ) {
            let mut spec = LinkSpec::ideal(Duration::ZERO);
            spec.rate_bps = Some(bps);
            spec.queue_limit_bytes = limit;
            let mut fast = LinkModel::new(spec, 1);
            let mut reference = ReferenceSerialiser {
                bps: u128::from(bps),
                limit: u128::from(limit),
                busy_scaled: 0,
            };
            let mut now = Duration::ZERO;
            for (gap, len) in sends {
                now += Duration::from_nanos(gap);
                let want = reference.serialise(now, len);
                proptest::prop_assert_eq!(fast.serialise(now, len), want);
                let queued = reference.busy_scaled.saturating_sub(now.as_nanos() * u128::from(bps));
                proptest::prop_assert_eq!(
                    u128::from(fast.queued_bytes(now)),
                    queued.div_ceil(8 * NANOS_PER_SEC)
                );
            }
        }
    }
}
