//! When a link is down: periodic outages and explicit windows, in emulated time.
//!
//! All arithmetic is in whole nanoseconds, so window edges are exact: a datagram at
//! `start - 1 ns` passes, one at `start` is dropped, one at `end` passes again.
//! Times here are already in emulated time: the profile loader divides scenario-time
//! periods by the profile's time scale.

use std::time::Duration;

/// A half-open interval `[start, end)` of emulated time since the scenario epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// First instant inside.
    pub start: Duration,
    /// First instant after.
    pub end: Duration,
}

impl Window {
    /// Does the window contain `t`?
    pub fn contains(&self, t: Duration) -> bool {
        self.start <= t && t < self.end
    }

    /// Its length.
    pub fn len(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Down for `duration` every `period`, starting at `phase` (and at `phase + k·period` for
/// every whole k, negative ones included, so a window may straddle the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicOutage {
    /// Time between the starts of two outages (> 0).
    pub period: Duration,
    /// Length of each outage (≤ period).
    pub duration: Duration,
    /// Start of the first outage after the epoch (< period).
    pub phase: Duration,
}

impl PeriodicOutage {
    /// The occurrence containing `t`, if any.
    fn window_at(&self, t: Duration) -> Option<Window> {
        let period = self.period.as_nanos() as i128;
        let rel = t.as_nanos() as i128 - self.phase.as_nanos() as i128;
        let k = rel.div_euclid(period);
        let start = self.phase.as_nanos() as i128 + k * period;
        let end = start + self.duration.as_nanos() as i128;
        let tn = t.as_nanos() as i128;
        (tn >= start && tn < end).then(|| Window {
            start: nanos(start.max(0)),
            end: nanos(end),
        })
    }

    /// The first start strictly after `t`.
    fn next_start_after(&self, t: Duration) -> Duration {
        let period = self.period.as_nanos() as i128;
        let rel = t.as_nanos() as i128 - self.phase.as_nanos() as i128;
        let k = rel.div_euclid(period) + 1;
        nanos(self.phase.as_nanos() as i128 + k * period)
    }
}

fn nanos(n: i128) -> Duration {
    let n = n.clamp(0, u64::MAX as i128) as u64;
    Duration::from_nanos(n)
}

/// The outages of one direction of one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutageSchedule {
    /// Repeating outages.
    pub periodic: Vec<PeriodicOutage>,
    /// One-off outages, sorted by start.
    pub windows: Vec<Window>,
}

impl OutageSchedule {
    /// A link that never goes down.
    pub fn always_up() -> Self {
        Self::default()
    }

    /// Does the schedule have no outage at all?
    pub fn is_always_up(&self) -> bool {
        self.periodic.is_empty() && self.windows.iter().all(Window::is_empty)
    }

    /// Is the link up at `t`?
    pub fn is_up(&self, t: Duration) -> bool {
        self.covering_end(t).is_none()
    }

    /// If some outage covers `t`, the latest end among those covering it.
    fn covering_end(&self, t: Duration) -> Option<Duration> {
        let periodic = self.periodic.iter().filter_map(|p| p.window_at(t));
        let explicit = self.windows.iter().copied().filter(|w| w.contains(t));
        periodic.chain(explicit).map(|w| w.end).max()
    }

    /// The first instant after `t` at which the link changes state (up→down or down→up),
    /// or `None` if it never changes again (a window ending at `Duration::MAX` is down for
    /// good, e.g. a geometry link down at its table's horizon).
    pub fn next_change(&self, t: Duration) -> Option<Duration> {
        if self.is_up(t) {
            self.next_down_after(t)
        } else {
            let change = self.next_up_after(t);
            change.filter(|&c| c != Duration::MAX)
        }
    }

    /// From down at `t`: the end of the merged outage covering it.
    fn next_up_after(&self, t: Duration) -> Option<Duration> {
        {
            // Follow overlapping outages until one ends with nothing else covering.
            let mut end = self.covering_end(t)?;
            // Bounded: each step moves past at least one whole window.
            for _ in 0..10_000 {
                match self.covering_end(end) {
                    Some(later) if later > end => end = later,
                    _ => return Some(end),
                }
            }
            Some(end)
        }
    }

    /// The first outage start strictly after `t` (from up at `t`).
    fn next_down_after(&self, t: Duration) -> Option<Duration> {
        let periodic = self.periodic.iter().map(|p| p.next_start_after(t));
        let explicit = self
            .windows
            .iter()
            .filter(|w| !w.is_empty() && w.start > t)
            .map(|w| w.start);
        periodic.chain(explicit).min()
    }

    /// The merged outage windows that intersect `[from, to)`, clipped to it.
    pub fn outages_between(&self, from: Duration, to: Duration) -> Vec<Window> {
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            if self.is_up(t) {
                match self.next_change(t) {
                    Some(next) if next < to => t = next,
                    _ => break,
                }
            } else {
                let end = self.next_change(t).unwrap_or(to).min(to);
                out.push(Window { start: t, end });
                t = end;
            }
        }
        out
    }

    /// The longest single outage (periodic duration or explicit window). A window that never
    /// ends (`end == Duration::MAX`: down for good) is not counted: no timeout should wait
    /// for it.
    pub fn longest_outage(&self) -> Duration {
        let periodic = self.periodic.iter().map(|p| p.duration);
        let explicit = self
            .windows
            .iter()
            .filter(|w| w.end != Duration::MAX)
            .map(Window::len);
        periodic.chain(explicit).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Duration = Duration::from_nanos(1);

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn periodic_edges_are_exact_to_the_nanosecond() {
        let sched = OutageSchedule {
            periodic: vec![PeriodicOutage {
                period: s(100),
                duration: s(10),
                phase: s(30),
            }],
            windows: vec![],
        };
        assert!(sched.is_up(s(30) - NS));
        assert!(!sched.is_up(s(30)));
        assert!(!sched.is_up(s(40) - NS));
        assert!(sched.is_up(s(40)));
        assert!(!sched.is_up(s(130)));
        assert_eq!(sched.next_change(s(0)), Some(s(30)));
        assert_eq!(sched.next_change(s(30)), Some(s(40)));
        assert_eq!(sched.next_change(s(40)), Some(s(130)));
    }

    #[test]
    fn overlapping_outages_merge() {
        let sched = OutageSchedule {
            periodic: vec![PeriodicOutage {
                period: s(100),
                duration: s(10),
                phase: s(0),
            }],
            windows: vec![
                Window {
                    start: s(5),
                    end: s(20),
                },
                Window {
                    start: s(20),
                    end: s(25),
                },
            ],
        };
        assert_eq!(sched.next_change(s(1)), Some(s(25)));
        let w = sched.outages_between(s(0), s(150));
        assert_eq!(
            w,
            vec![
                Window {
                    start: s(0),
                    end: s(25)
                },
                Window {
                    start: s(100),
                    end: s(110)
                }
            ]
        );
        assert_eq!(sched.longest_outage(), s(15));
    }

    #[test]
    fn window_straddling_the_epoch() {
        let sched = OutageSchedule {
            periodic: vec![PeriodicOutage {
                period: s(100),
                duration: s(20),
                phase: s(90),
            }],
            windows: vec![],
        };
        assert!(!sched.is_up(s(5)), "the k = -1 occurrence covers [-10, 10)");
        assert!(sched.is_up(s(10)));
    }

    #[test]
    fn explicit_only_schedule_ends() {
        let sched = OutageSchedule {
            periodic: vec![],
            windows: vec![Window {
                start: s(10),
                end: s(20),
            }],
        };
        assert_eq!(sched.next_change(s(20)), None);
        assert!(OutageSchedule::always_up().is_always_up());
    }
}
