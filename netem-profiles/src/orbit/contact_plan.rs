//! Export of a profile's link schedule as an ION contact plan (`ionrc` syntax), so DTN users
//! can feed the same contacts and light times to ION's contact graph routing.
//!
//! - Node numbers are the sites' positions in the profile, from 1; a comment header maps them.
//! - `a contact +t0 +t1 FROM TO RATE`: each interval in which the directed link `FROM → TO`
//!   is up within the horizon; times are whole seconds of emulated time since the scenario
//!   epoch, rounded inwards (start up, end down) so every listed contact is really up; RATE in
//!   bytes/s (an unlimited link is written as 1 Tbit/s).
//! - `a range +t0 +t1 A B OWLT` (A < B: ION applies it to both directions): one-way light time
//!   in whole seconds (rounded), one line per span during which the delay stays within ±0.5 s;
//!   ranges cover the contacts of `A → B`. The exact delays (ms) are in a comment before each.

use std::fmt::Write as _;
use std::time::Duration;

use crate::profile::Profile;
use crate::schedule::Window;

/// Rate written for links without a rate limit, bytes/s (1 Tbit/s).
pub const UNLIMITED_RATE_BYTES_S: u64 = 125_000_000_000;

/// The up intervals of a directed link within `[0, horizon)`.
fn up_windows(profile: &Profile, from: usize, to: usize, horizon: Duration) -> Vec<Window> {
    let down = profile
        .link(from, to)
        .outages
        .outages_between(Duration::ZERO, horizon);
    let mut up = Vec::new();
    let mut t = Duration::ZERO;
    for w in down {
        if w.start > t {
            up.push(Window {
                start: t,
                end: w.start,
            });
        }
        t = t.max(w.end);
    }
    if t < horizon {
        up.push(Window {
            start: t,
            end: horizon,
        });
    }
    up
}

/// The contact plan of `profile` over `horizon` of emulated time.
pub fn contact_plan(profile: &Profile, horizon: Duration) -> String {
    let mut out = String::new();
    let n = profile.sites.len();
    let _ = writeln!(
        out,
        "# ION contact plan exported by spacefabric from profile `{}` over {:.0} s of emulated time",
        profile.name,
        horizon.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "# times: seconds since the scenario epoch; rates: bytes/s; ranges: light seconds (rounded)"
    );
    for (i, s) in profile.sites.iter().enumerate() {
        let _ = writeln!(out, "# node {} = {}", i + 1, s.name);
    }
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue;
            }
            let link = profile.link(from, to);
            let rate = link
                .rate_bps
                .map_or(UNLIMITED_RATE_BYTES_S, |bps| (bps / 8).max(1));
            for w in up_windows(profile, from, to, horizon) {
                let (t0, t1) = (w.start.as_secs_f64().ceil(), w.end.as_secs_f64().floor());
                if t1 > t0 {
                    let _ = writeln!(
                        out,
                        "a contact +{t0:.0} +{t1:.0} {} {} {rate}",
                        from + 1,
                        to + 1
                    );
                }
            }
        }
    }
    for a in 0..n {
        for b in (a + 1)..n {
            let link = profile.link(a, b);
            for w in up_windows(profile, a, b, horizon) {
                write_ranges(&mut out, link, w, a + 1, b + 1);
            }
        }
    }
    out
}

/// Range lines over `w`, split where the delay drifts by more than 0.5 s.
fn write_ranges(out: &mut String, link: &crate::profile::LinkSpec, w: Window, a: usize, b: usize) {
    let step = Duration::from_secs(60);
    let mut span_start = w.start;
    let d0 = link.delay_at(w.start).as_secs_f64();
    let (mut lo, mut hi) = (d0, d0);
    let mut t = w.start;
    loop {
        let next = (t + step).min(w.end);
        let d = link.delay_at(next).as_secs_f64();
        let drift = d.max(hi) - d.min(lo) > 1.0;
        if drift || next >= w.end {
            let end = if drift { t } else { w.end };
            if !drift {
                lo = lo.min(d);
                hi = hi.max(d);
            }
            let (t0, t1) = (span_start.as_secs_f64().ceil(), end.as_secs_f64().floor());
            if t1 > t0 {
                let _ = writeln!(out, "# owlt {:.3}–{:.3} ms", lo * 1e3, hi * 1e3);
                let owlt = (0.5 * (lo + hi)).round();
                let _ = writeln!(out, "a range +{t0:.0} +{t1:.0} {a} {b} {owlt:.0}");
            }
            if !drift {
                break;
            }
            span_start = t;
            lo = d;
            hi = d;
        } else {
            lo = lo.min(d);
            hi = hi.max(d);
        }
        t = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{LinkSpec, Site};
    use crate::schedule::{OutageSchedule, PeriodicOutage};

    fn profile() -> Profile {
        let site = |n: &str| Site {
            name: n.to_string(),
            description: String::new(),
        };
        let mut em = LinkSpec::ideal(Duration::from_millis(1282));
        em.rate_bps = Some(100_000_000);
        em.outages = OutageSchedule {
            periodic: vec![PeriodicOutage {
                period: Duration::from_secs(7080),
                duration: Duration::from_secs(2760),
                phase: Duration::from_secs(4320),
            }],
            windows: vec![],
        };
        let lan = LinkSpec::ideal(Duration::from_micros(50));
        Profile {
            name: "t".into(),
            description: String::new(),
            seed: 1,
            time_scale: 1.0,
            sites: vec![site("earth"), site("moon")],
            links: vec![lan.clone(), em.clone(), em, lan],
            sharing: Vec::new(),
        }
    }

    #[test]
    fn contacts_are_the_up_intervals_with_rate_and_range() {
        let plan = contact_plan(&profile(), Duration::from_secs(10_000));
        let lines: Vec<&str> = plan.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            vec![
                "a contact +0 +4320 1 2 12500000",
                "a contact +7080 +10000 1 2 12500000",
                "a contact +0 +4320 2 1 12500000",
                "a contact +7080 +10000 2 1 12500000",
                "a range +0 +4320 1 2 1",
                "a range +7080 +10000 1 2 1",
            ]
        );
        assert!(plan.contains("# node 2 = moon"));
        assert!(plan.contains("# owlt 1282.000–1282.000 ms"));
    }
}
