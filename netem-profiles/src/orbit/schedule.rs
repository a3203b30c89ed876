//! Precomputed link geometry, cheap enough for the packet path.
//!
//! A [`GeometryTable`] samples a link's light time on a fixed grid of scenario time (default
//! step 10 s) over a horizon, and finds every up/down edge by bisecting the geometry inside
//! the step where the state changed (to 1 ms of scenario time), so outages are an explicit,
//! sorted window list. A lookup is then an index computation and one linear interpolation
//! for the delay, and a binary search for the state: tens of nanoseconds, no trigonometry.
//!
//! Time scale: scenario time = emulated time × `time_scale`. The grid and the edges live in
//! scenario time; lookups take emulated time. With a scale of 60 an orbit of 90 minutes
//! passes in 90 s of emulated time, the windows are those of scale 1 divided by 60, and the
//! light delay — a property of the geometry, not of the clock — is not scaled.
//!
//! Beyond the horizon (rounded up to a whole step) the link keeps its last state: the last
//! sample's delay holds, and an outage still open at the horizon never ends (its window ends
//! at `Duration::MAX`; `next_change` then says `None`). The geometry is not extrapolated, so a
//! run that outlasts the table sees a frozen link: `spacefabric-controller profile timeline`
//! and `contact-plan` warn when asked past the horizon, and [`GeometryTable::horizon`] lets
//! runners warn. Profiles choose a horizon that covers their runs.
//! An up or down spell shorter than one step can be missed; steps are chosen far shorter
//! than any pass or occultation (a LEO pass lasts minutes).

use std::time::Duration;

use super::OrbitError;
use crate::SPEED_OF_LIGHT_KM_S;
use crate::schedule::Window;

/// A link's geometry at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeometrySample {
    /// Distance between the two ends, km.
    pub range_km: f64,
    /// Is the line of sight clear (both ends see each other)?
    pub up: bool,
}

/// Most samples one table may hold (8 MB of delays): e.g. 115 days at a 10 s step.
pub const MAX_SAMPLES: usize = 1_000_000;

/// Bisection stops when the bracket is this short, in scenario seconds.
const EDGE_RESOLUTION_S: f64 = 1e-3;

/// A link's delay and outages precomputed over a horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct GeometryTable {
    /// Grid step, scenario seconds.
    step_s: f64,
    /// Scenario seconds per emulated second.
    time_scale: f64,
    /// One-way light time at each grid point, seconds; `delay_s[i]` is at `i·step_s`.
    delay_s: Vec<f64>,
    /// Outages in emulated time, sorted, disjoint, non-empty.
    outages: Vec<Window>,
    /// Horizon, scenario seconds.
    horizon_s: f64,
    /// Grid samples per emulated second (`time_scale / step_s`), and per emulated
    /// nanosecond: lookups multiply instead of divide.
    samples_per_s: f64,
    samples_per_ns: f64,
}

fn emulated(scenario_s: f64, time_scale: f64) -> Duration {
    Duration::from_secs_f64((scenario_s / time_scale).max(0.0))
}

impl GeometryTable {
    /// Samples `geometry(scenario_seconds)` every `step_s` over `[0, horizon_s]` and bisects
    /// every state change. Errors from `geometry` (e.g. a TLE that cannot be propagated that
    /// far) are returned as they are.
    pub fn build(
        horizon_s: f64,
        step_s: f64,
        time_scale: f64,
        mut geometry: impl FnMut(f64) -> Result<GeometrySample, OrbitError>,
    ) -> Result<Self, OrbitError> {
        super::check_range("geometry horizon (s)", horizon_s, 1.0, 366.0 * 86_400.0)?;
        super::check_range("geometry step (s)", step_s, 0.001, 3600.0)?;
        super::check_range("time_scale", time_scale, 1e-6, 1e6)?;
        let n = (horizon_s / step_s).ceil() as usize + 1;
        if n > MAX_SAMPLES {
            return Err(OrbitError::Invalid {
                what: "geometry horizon / step (samples per table)".to_string(),
                value: n as f64,
                why: "at most 1,000,000 samples per table: shorten the horizon or lengthen the step",
            });
        }
        let horizon_s = (n - 1) as f64 * step_s;
        let mut delay_s = Vec::with_capacity(n);
        let mut outages = Vec::new();
        let mut down_since: Option<f64> = None;
        let mut prev_up = true;
        for i in 0..n {
            let s = i as f64 * step_s;
            let g = geometry(s)?;
            delay_s.push(g.range_km / SPEED_OF_LIGHT_KM_S);
            let edge = if i == 0 {
                (!g.up).then_some(0.0)
            } else if g.up != prev_up {
                // Bisect in ((i-1)·step, i·step] for the first instant in the new state.
                let (mut lo, mut hi) = (s - step_s, s);
                while hi - lo > EDGE_RESOLUTION_S {
                    let mid = 0.5 * (lo + hi);
                    if geometry(mid)?.up == prev_up {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                Some(hi)
            } else {
                None
            };
            if let Some(at) = edge {
                if g.up {
                    if let Some(start) = down_since.take() {
                        push_window(&mut outages, start, at, time_scale);
                    }
                } else {
                    down_since = Some(at);
                }
            }
            prev_up = g.up;
        }
        if let Some(start) = down_since {
            // Down at the horizon: the link keeps its last state, down for good.
            let w = Window {
                start: emulated(start, time_scale),
                end: Duration::MAX,
            };
            outages.push(w);
        }
        let samples_per_s = time_scale / step_s;
        Ok(Self {
            step_s,
            time_scale,
            delay_s,
            outages,
            horizon_s,
            samples_per_s,
            samples_per_ns: samples_per_s * 1e-9,
        })
    }

    /// One-way light time at emulated time `t`, interpolated linearly between grid points.
    #[inline]
    pub fn delay_at(&self, t: Duration) -> Duration {
        // Delays are non-negative and far below u64::MAX ns: a plain conversion is exact to
        // the nanosecond and cheaper than `from_secs_f64`'s checks.
        Duration::from_nanos((self.delay_secs_at(t) * 1e9 + 0.5) as u64)
    }

    /// [`Self::delay_at`] in seconds.
    #[inline]
    pub fn delay_secs_at(&self, t: Duration) -> f64 {
        let x = t.as_secs() as f64 * self.samples_per_s
            + f64::from(t.subsec_nanos()) * self.samples_per_ns;
        let last = self.delay_s.len() - 1;
        if x >= last as f64 {
            return self.delay_s[last];
        }
        let i = x as usize;
        let f = x - i as f64;
        self.delay_s[i] + (self.delay_s[i + 1] - self.delay_s[i]) * f
    }

    /// Is the link up at emulated time `t`?
    #[inline]
    pub fn is_up(&self, t: Duration) -> bool {
        self.covering(t).is_none()
    }

    fn covering(&self, t: Duration) -> Option<&Window> {
        // The last outage starting at or before t.
        let i = self.outages.partition_point(|w| w.start <= t);
        i.checked_sub(1)
            .map(|i| &self.outages[i])
            .filter(|w| w.contains(t))
    }

    /// The next instant after `t` at which the state changes, if any (`None` past the last
    /// change, and inside an outage open at the horizon).
    pub fn next_change(&self, t: Duration) -> Option<Duration> {
        if let Some(w) = self.covering(t) {
            return (w.end != Duration::MAX).then_some(w.end);
        }
        let i = self.outages.partition_point(|w| w.start <= t);
        self.outages.get(i).map(|w| w.start)
    }

    /// Every outage, in emulated time, sorted and disjoint; the last one ends at
    /// `Duration::MAX` when the link is down at the horizon.
    pub fn outages(&self) -> &[Window] {
        &self.outages
    }

    /// The horizon in emulated time: the end of the computed geometry; past it the link keeps
    /// its last state.
    pub fn horizon(&self) -> Duration {
        emulated(self.horizon_s, self.time_scale)
    }

    /// The grid step in scenario seconds.
    pub fn step_s(&self) -> f64 {
        self.step_s
    }

    /// The time scale (scenario seconds per emulated second).
    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// Smallest and largest sampled one-way delay, seconds.
    pub fn delay_range_s(&self) -> (f64, f64) {
        self.delay_s
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &d| (lo.min(d), hi.max(d)))
    }

    /// Smallest and largest sampled one-way delay within emulated `[from, to)`, seconds.
    pub fn delay_range_between_s(&self, from: Duration, to: Duration) -> (f64, f64) {
        let idx = |t: Duration| {
            ((t.as_secs_f64() * self.time_scale / self.step_s) as usize).min(self.delay_s.len() - 1)
        };
        let (a, b) = (idx(from), idx(to));
        let mut r = (self.delay_secs_at(from), self.delay_secs_at(from));
        for &d in &self.delay_s[a..=b.max(a)] {
            r = (r.0.min(d), r.1.max(d));
        }
        let end = self.delay_secs_at(to);
        (r.0.min(end), r.1.max(end))
    }
}

fn push_window(out: &mut Vec<Window>, start_s: f64, end_s: f64, scale: f64) {
    let w = Window {
        start: emulated(start_s, scale),
        end: emulated(end_s, scale),
    };
    if !w.is_empty() {
        out.push(w);
    }
}

#[cfg(test)]
mod tests {
    use super::super::endpoint::{Endpoint, LinkGeometry};
    use super::super::lunar::LunarOrbiter;
    use super::super::time::JulianDay;
    use super::*;

    /// A synthetic geometry: range grows 1 km per scenario second, down during
    /// [100 s, 250 s) and from 900 s on.
    fn synthetic(s: f64) -> Result<GeometrySample, OrbitError> {
        Ok(GeometrySample {
            range_km: 300_000.0 + s,
            up: !((100.0..250.0).contains(&s) || s >= 900.0),
        })
    }

    #[test]
    fn edges_are_bisected_and_delay_interpolated() {
        let t = GeometryTable::build(1000.0, 7.0, 1.0, synthetic).unwrap();
        let w = t.outages();
        assert_eq!(w.len(), 2);
        assert!((w[0].start.as_secs_f64() - 100.0).abs() <= 1e-3, "{w:?}");
        assert!((w[0].end.as_secs_f64() - 250.0).abs() <= 1e-3);
        assert!((w[1].start.as_secs_f64() - 900.0).abs() <= 1e-3);
        // The horizon is rounded up to whole steps (143 × 7 s); down there, down for good.
        assert_eq!(w[1].end, Duration::MAX);
        assert_eq!(t.horizon(), Duration::from_secs(1001));
        assert!(t.is_up(Duration::from_secs(99)));
        assert!(!t.is_up(Duration::from_secs(101)));
        assert!(t.is_up(Duration::from_secs(251)));
        assert!(!t.is_up(Duration::from_secs(1000)));
        assert!(!t.is_up(Duration::from_secs(5000)));
        assert_eq!(t.next_change(Duration::from_secs(0)), Some(w[0].start));
        assert_eq!(t.next_change(Duration::from_secs(150)), Some(w[0].end));
        assert_eq!(t.next_change(Duration::from_secs(950)), None);
        assert_eq!(t.next_change(Duration::from_secs(1001)), None);
        // Linear range → interpolation is exact between grid points.
        let d = t.delay_secs_at(Duration::from_secs_f64(123.4));
        assert!((d - 300_123.4 / SPEED_OF_LIGHT_KM_S).abs() < 1e-12);
        // Past the horizon the last value holds.
        let last = t.delay_secs_at(Duration::from_secs(10_000));
        assert!((last - 301_001.0 / SPEED_OF_LIGHT_KM_S).abs() < 1e-12);
        assert_eq!(
            t.delay_at(Duration::from_secs_f64(123.4)),
            Duration::from_nanos((d * 1e9 + 0.5) as u64)
        );
    }

    /// The horizon rule: past the table the link keeps its last state — up stays up (and
    /// the last delay holds), down stays down, in the table and in the outage schedule a
    /// profile builds from it.
    #[test]
    fn past_the_horizon_the_last_state_holds() {
        let up_at_end = GeometryTable::build(1000.0, 10.0, 1.0, |s| {
            Ok(GeometrySample {
                range_km: 1000.0 + s,
                up: !(300.0..400.0).contains(&s),
            })
        })
        .unwrap();
        let far = Duration::from_secs(1_000_000);
        assert!(up_at_end.is_up(far));
        assert_eq!(up_at_end.next_change(Duration::from_secs(500)), None);
        assert_eq!(up_at_end.delay_secs_at(far), 2000.0 / SPEED_OF_LIGHT_KM_S);
        let down_at_end = GeometryTable::build(1000.0, 10.0, 1.0, |s| {
            Ok(GeometrySample {
                range_km: 1000.0,
                up: s < 900.0,
            })
        })
        .unwrap();
        assert!(!down_at_end.is_up(far));
        assert_eq!(down_at_end.next_change(Duration::from_secs(950)), None);
        let sched = crate::schedule::OutageSchedule {
            periodic: vec![],
            windows: down_at_end.outages().to_vec(),
        };
        assert!(!sched.is_up(far));
        assert_eq!(sched.next_change(Duration::from_secs(950)), None);
        assert_eq!(
            sched.next_change(Duration::from_secs(10)),
            Some(down_at_end.outages()[0].start)
        );
        // A timeout is not sized on a window that never ends.
        assert_eq!(sched.longest_outage(), Duration::ZERO);
    }

    #[test]
    fn starting_down_opens_a_window_at_zero() {
        let t = GeometryTable::build(100.0, 10.0, 1.0, |s| {
            Ok(GeometrySample {
                range_km: 1.0,
                up: s >= 42.0,
            })
        })
        .unwrap();
        assert_eq!(t.outages()[0].start, Duration::ZERO);
        assert!((t.outages()[0].end.as_secs_f64() - 42.0).abs() < 1e-3);
    }

    #[test]
    fn invalid_table_parameters_are_refused() {
        assert!(GeometryTable::build(0.0, 10.0, 1.0, synthetic).is_err());
        assert!(GeometryTable::build(100.0, 0.0, 1.0, synthetic).is_err());
        assert!(GeometryTable::build(100.0, 10.0, f64::NAN, synthetic).is_err());
        let e = GeometryTable::build(86_400.0 * 365.0, 1.0, 1.0, synthetic).unwrap_err();
        assert!(e.to_string().contains("at most 1,000,000 samples"), "{e}");
    }

    /// Time scale 60 gives the windows of scale 1 compressed 60×, and the same delays at
    /// the corresponding instants.
    #[test]
    fn time_scale_compresses_windows_not_delay() {
        let epoch = JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap();
        let relay = LunarOrbiter::circular("relay", 100.0, 0.0, 0.0, 0.0, epoch).unwrap();
        let link = LinkGeometry::new(Endpoint::EarthCentre, Endpoint::LunarOrbiter(relay));
        let f = |s: f64| link.sample(epoch.plus_seconds(s));
        let t1 = GeometryTable::build(6.0 * 3600.0, 10.0, 1.0, f).unwrap();
        let t60 = GeometryTable::build(6.0 * 3600.0, 10.0, 60.0, f).unwrap();
        assert!(t1.outages().len() >= 3, "{:?}", t1.outages());
        assert_eq!(t1.outages().len(), t60.outages().len());
        for (a, b) in t1.outages().iter().zip(t60.outages()) {
            let ds = a.start.as_secs_f64() / 60.0 - b.start.as_secs_f64();
            let de = a.end.as_secs_f64() / 60.0 - b.end.as_secs_f64();
            assert!(ds.abs() < 1e-6 && de.abs() < 1e-6, "{a:?} vs {b:?}");
        }
        for k in 0..100 {
            let t = Duration::from_secs(k * 200);
            let d1 = t1.delay_secs_at(t);
            let d60 = t60.delay_secs_at(t / 60);
            assert!((d1 - d60).abs() < 1e-9);
            assert!(d1 > 1.1 && d1 < 1.4);
        }
    }
}
