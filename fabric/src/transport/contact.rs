//! When a node may send to a peer: the contact plan of one link, from the profile's outage
//! schedules. Pure: no I/O, no clock; times are emulated time since the scenario epoch.
//!
//! Data sent at `t` on the link ours → peer is useful only if the link is up at `t` and the
//! peer's acknowledgements can come back, i.e. the link peer → ours is up when the data
//! arrives (`t + delay`). Sending outside that leaves unacknowledged packets that fill the
//! congestion window and push quinn's probe timeout into exponential back-off — the research
//! measured 113–287 s of dead time after a 5-minute outage that way. So the sender keeps its
//! bytes for the next contact instead, and also stops early enough that what it has queued
//! at the link's rate leaves before the contact ends ([`SendClock`]).

use std::time::Duration;

use netem_profiles::{LinkSpec, OutageSchedule, UDP_IP_OVERHEAD_BYTES};

/// Upper bound on schedule steps examined when looking for the next contact.
const MAX_STEPS: usize = 100_000;

/// Whether the link is usable now, and until or from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// Sending is useful now, until `until` (`None`: forever).
    Open {
        /// End of the contact.
        until: Option<Duration>,
    },
    /// Sending is useless now; the next contact starts at `opens_at` (`None`: never).
    Closed {
        /// Start of the next contact.
        opens_at: Option<Duration>,
    },
}

/// The contact plan of one link, both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactPlan {
    out: OutageSchedule,
    back: OutageSchedule,
    /// One-way delay ours → peer plus the guard: how long before the acknowledgement path
    /// goes down the last byte must leave.
    ack_lead: Duration,
}

impl ContactPlan {
    /// The plan for sending on `out` (ours → peer) with acknowledgements on `back`; the last
    /// byte of a contact leaves `guard` before the peer's acknowledgement of it would meet
    /// the outage (room for delayed ACKs and queueing).
    pub fn new(out: &LinkSpec, back: &LinkSpec, guard: Duration) -> Self {
        Self {
            out: out.outages.clone(),
            back: back.outages.clone(),
            ack_lead: out.delay + guard,
        }
    }

    /// Does the link never go down?
    pub fn is_always_open(&self) -> bool {
        self.out.is_always_up() && self.back.is_always_up()
    }

    fn open(&self, t: Duration) -> bool {
        self.out.is_up(t) && self.back.is_up(t + self.ack_lead)
    }

    /// The first instant after `t` where either schedule changes.
    fn next_change(&self, t: Duration) -> Option<Duration> {
        let out = self.out.next_change(t);
        let back = self
            .back
            .next_change(t + self.ack_lead)
            .map(|c| c.saturating_sub(self.ack_lead));
        match (out, back) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The contact state at `t`.
    pub fn at(&self, t: Duration) -> Contact {
        if self.open(t) {
            // Both directions are up: the first change of either closes the contact.
            return Contact::Open {
                until: self.next_change(t),
            };
        }
        let mut probe = t;
        for _ in 0..MAX_STEPS {
            match self.next_change(probe) {
                Some(next) if next > probe => {
                    if self.open(next) {
                        return Contact::Closed {
                            opens_at: Some(next),
                        };
                    }
                    probe = next;
                }
                _ => return Contact::Closed { opens_at: None },
            }
        }
        Contact::Closed { opens_at: None }
    }
}

/// When the bytes handed to one link will have left it, at the link's rate: a sender
/// starts a chunk only if it will have left before the contact ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendClock {
    rate_bps: Option<u64>,
    mtu: u16,
    busy_until: Duration,
}

/// What [`SendClock::admit`] decides for a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it now.
    Now,
    /// Wait until this instant (the next contact) and ask again.
    WaitUntil(Duration),
    /// The link has no contact left.
    Never,
}

impl SendClock {
    /// A clock for a link of `rate_bps` (`None`: unlimited) carrying datagrams of `mtu` bytes.
    pub fn new(rate_bps: Option<u64>, mtu: u16) -> Self {
        Self {
            rate_bps,
            mtu,
            busy_until: Duration::ZERO,
        }
    }

    /// Time the link needs to serialise `len` payload bytes (QUIC and IP/UDP headers
    /// included: ~40 bytes of QUIC framing per packet, 28 of IP/UDP).
    pub fn serialisation_time(&self, len: usize) -> Duration {
        let Some(rate) = self.rate_bps.filter(|&r| r > 0) else {
            return Duration::ZERO;
        };
        let mtu = f64::from(self.mtu);
        let wire = len as f64 * (mtu + UDP_IP_OVERHEAD_BYTES as f64) / (mtu - 40.0);
        Duration::from_secs_f64(wire * 8.0 / rate as f64)
    }

    /// Decides whether a chunk of `len` bytes may be handed to the link at `now` under
    /// `plan`; when it may, the clock advances past it.
    pub fn admit(&mut self, plan: &ContactPlan, now: Duration, len: usize) -> Admit {
        match plan.at(now) {
            Contact::Closed { opens_at: Some(t) } => Admit::WaitUntil(t),
            Contact::Closed { opens_at: None } => Admit::Never,
            Contact::Open { until } => {
                let start = self.busy_until.max(now);
                let end = start + self.serialisation_time(len);
                match until {
                    Some(u) if end > u => {
                        // A chunk longer than a whole contact would never go: let it start
                        // at the contact's opening rather than starve.
                        let whole_contact = u.saturating_sub(now);
                        if self.busy_until <= now && whole_contact < self.serialisation_time(len) {
                            self.busy_until = end;
                            Admit::Now
                        } else {
                            Admit::WaitUntil(u)
                        }
                    }
                    _ => {
                        self.busy_until = end;
                        Admit::Now
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netem_profiles::Window;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn link(delay: Duration, outages: &[(u64, u64)]) -> LinkSpec {
        let mut l = LinkSpec::ideal(delay);
        l.outages = OutageSchedule {
            periodic: vec![],
            windows: outages
                .iter()
                .map(|&(a, b)| Window {
                    start: s(a),
                    end: s(b),
                })
                .collect(),
        };
        l
    }

    #[test]
    fn always_up_is_always_open() {
        let l = link(s(1), &[]);
        let plan = ContactPlan::new(&l, &l, Duration::ZERO);
        assert!(plan.is_always_open());
        assert_eq!(plan.at(s(5)), Contact::Open { until: None });
    }

    #[test]
    fn contact_ends_one_delay_before_the_ack_path_goes_down() {
        // Both directions down during [100, 160); one-way delay 2 s.
        let l = link(s(2), &[(100, 160)]);
        let plan = ContactPlan::new(&l, &l, Duration::ZERO);
        assert_eq!(plan.at(s(10)), Contact::Open { until: Some(s(98)) });
        // From 98 on, data would arrive while acknowledgements cannot leave.
        assert_eq!(
            plan.at(s(98)),
            Contact::Closed {
                opens_at: Some(s(160))
            }
        );
        assert_eq!(
            plan.at(s(120)),
            Contact::Closed {
                opens_at: Some(s(160))
            }
        );
        assert_eq!(plan.at(s(160)), Contact::Open { until: None });
    }

    #[test]
    fn a_link_that_never_comes_back_has_no_contact() {
        let l = link(s(1), &[(10, u64::MAX / 2_000_000_000)]);
        let plan = ContactPlan::new(&l, &l, Duration::ZERO);
        assert!(matches!(plan.at(s(20)), Contact::Closed { .. }));
    }

    #[test]
    fn send_clock_keeps_chunks_inside_the_contact() {
        let l = link(s(1), &[(10, 20)]);
        let plan = ContactPlan::new(&l, &l, Duration::ZERO);
        // 8 Mbit/s: a 1 MB chunk takes a little over 1 s.
        let mut clock = SendClock::new(Some(8_000_000), 1452);
        let t = clock.serialisation_time(1_000_000);
        assert!(t > s(1) && t < Duration::from_millis(1100), "{t:?}");
        // Contact until 9 s (ack path closes at 10 - 1). Eight chunks (8.4 s) fit from t = 0.
        let mut admitted = 0;
        while clock.admit(&plan, Duration::ZERO, 1_000_000) == Admit::Now {
            admitted += 1;
        }
        assert_eq!(admitted, 8);
        assert_eq!(
            clock.admit(&plan, Duration::ZERO, 1_000_000),
            Admit::WaitUntil(s(9))
        );
        assert_eq!(clock.admit(&plan, s(9), 10), Admit::WaitUntil(s(20)));
        assert_eq!(clock.admit(&plan, s(20), 1_000_000), Admit::Now);
    }

    #[test]
    fn unlimited_rate_costs_no_time() {
        let mut clock = SendClock::new(None, 1452);
        let l = link(s(0), &[]);
        let plan = ContactPlan::new(&l, &l, Duration::ZERO);
        for _ in 0..1000 {
            assert_eq!(clock.admit(&plan, Duration::ZERO, 1 << 30), Admit::Now);
        }
    }
}
