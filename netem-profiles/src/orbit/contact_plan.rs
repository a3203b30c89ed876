//! Export of a profile's link schedule as an ION contact plan (`ionrc` syntax), so DTN users
//! can feed the same contacts and light times to ION's contact graph routing.
//!
//! ION's grammar (ionadmin, `ionrc(5)`):
//! `a contact <from_time> <until_time> <from_node> <to_node> <xmit_data_rate>` and
//! `a range <from_time> <until_time> <from_node> <to_node> <owlt>`; times are `+N` (seconds
//! after the moment ionadmin reads the line) or absolute `yyyy/mm/dd-hh:mm:ss`; node numbers
//! are positive integers; the rate is bytes/s and the one-way light time whole seconds, both
//! held by ionadmin in 32-bit unsigned integers; `#` starts a comment.
//!
//! - Node numbers are the sites' positions in the profile, from 1; a comment header maps them.
//! - `a contact +t0 +t1 FROM TO RATE`: each interval in which the directed link `FROM → TO`
//!   is up within the horizon; times are whole seconds of emulated time since the scenario
//!   epoch, rounded inwards (start up, end down) so every listed contact is really up. RATE in
//!   bytes/s: a link's rate, or for an unlimited link [`UNLIMITED_RATE_BYTES_S`]; any rate
//!   above [`ION_MAX_RATE_BYTES_S`] (4,294,967,295 bytes/s ≈ 34.36 Gbit/s, ION's 32-bit
//!   field) is written as that maximum with a warning (in the plan as a comment and in
//!   [`ContactPlan::warnings`]) — written as is, ION would silently keep it modulo 2³².
//! - `a range +t0 +t1 A B OWLT` (A < B: ION applies it to both directions): one-way light time
//!   in whole seconds (rounded), one line per span during which the delay stays within ±0.5 s;
//!   the ranges of `A, B` cover every contact of `A → B` and `B → A` second for second. The
//!   exact delays (ms) are in a comment before each.
//! - ionadmin treats `[from, until]` as closed: the contacts of one direction and the ranges of
//!   one pair never share a second (it would drop an overlapping one), and `until > from`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::profile::Profile;
use crate::schedule::Window;

/// Rate written for links without a rate limit, bytes/s (1 Tbit/s), before the clamp to
/// [`ION_MAX_RATE_BYTES_S`].
pub const UNLIMITED_RATE_BYTES_S: u64 = 125_000_000_000;

/// The largest transmission rate ionadmin can hold (an `unsigned int`), bytes/s.
pub const ION_MAX_RATE_BYTES_S: u64 = u32::MAX as u64;

/// An exported contact plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactPlan {
    /// The `ionrc` text.
    pub text: String,
    /// What had to be changed to fit ION (each also a `# WARNING` comment in `text`).
    pub warnings: Vec<String>,
}

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

/// A window's whole seconds, rounded inwards; `None` when no whole second is left.
fn whole_seconds(w: &Window) -> Option<(u64, u64)> {
    let t0 = w.start.as_secs() + u64::from(w.start.subsec_nanos() > 0);
    let t1 = w.end.as_secs();
    (t1 > t0).then_some((t0, t1))
}

/// The contact plan of `profile` over `horizon` of emulated time.
pub fn contact_plan(profile: &Profile, horizon: Duration) -> ContactPlan {
    let mut out = String::new();
    let mut warnings = Vec::new();
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
    let mut contacts = String::new();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue;
            }
            let link = profile.link(from, to);
            let wanted = link
                .rate_bps
                .map_or(UNLIMITED_RATE_BYTES_S, |bps| (bps / 8).max(1));
            let rate = wanted.min(ION_MAX_RATE_BYTES_S);
            let windows: Vec<(u64, u64)> = up_windows(profile, from, to, horizon)
                .iter()
                .filter_map(whole_seconds)
                .collect();
            if rate < wanted && !windows.is_empty() {
                let what = if link.rate_bps.is_none() {
                    "unlimited".to_string()
                } else {
                    format!("{wanted} bytes/s")
                };
                warnings.push(format!(
                    "link {} -> {} (nodes {} -> {}): rate {what} exceeds ION's 32-bit limit; written as {rate} bytes/s",
                    profile.sites[from].name,
                    profile.sites[to].name,
                    from + 1,
                    to + 1
                ));
            }
            for (t0, t1) in windows {
                let _ = writeln!(
                    contacts,
                    "a contact +{t0} +{t1} {} {} {rate}",
                    from + 1,
                    to + 1
                );
            }
        }
    }
    for w in &warnings {
        let _ = writeln!(out, "# WARNING: {w}");
    }
    out.push_str(&contacts);
    for a in 0..n {
        for b in (a + 1)..n {
            // Ranges over the union of both directions' contacts.
            let mut spans: Vec<(u64, u64)> = up_windows(profile, a, b, horizon)
                .iter()
                .chain(&up_windows(profile, b, a, horizon))
                .filter_map(whole_seconds)
                .collect();
            spans.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (t0, t1) in spans {
                match merged.last_mut() {
                    Some(last) if t0 <= last.1 => last.1 = last.1.max(t1),
                    _ => merged.push((t0, t1)),
                }
            }
            let link = profile.link(a, b);
            for span in merged {
                write_ranges(&mut out, link, span, a + 1, b + 1);
            }
        }
    }
    ContactPlan {
        text: out,
        warnings,
    }
}

/// Range lines over whole seconds `[t0, t1]`, split (at whole seconds) where the delay
/// drifts by more than 1 s, so each written OWLT is within ~0.5 s of the delays it covers
/// (sampled every minute).
fn write_ranges(
    out: &mut String,
    link: &crate::profile::LinkSpec,
    (t0, t1): (u64, u64),
    a: usize,
    b: usize,
) {
    const STEP_S: u64 = 60;
    let delay = |t: u64| link.delay_at(Duration::from_secs(t)).as_secs_f64();
    let mut span_start = t0;
    let (mut lo, mut hi) = (delay(t0), delay(t0));
    let mut t = t0;
    loop {
        let next = (t + STEP_S).min(t1);
        let d = delay(next);
        let drift = d.max(hi) - d.min(lo) > 1.0;
        // ION's intervals are closed and may not overlap: the next span starts at `t`, this
        // one ends a second before.
        if drift && t > span_start + 1 {
            emit_range(out, span_start, t - 1, (lo, hi), a, b);
            span_start = t;
            (lo, hi) = (delay(t).min(d), delay(t).max(d));
        } else {
            (lo, hi) = (lo.min(d), hi.max(d));
        }
        if next >= t1 {
            emit_range(out, span_start, t1, (lo, hi), a, b);
            return;
        }
        t = next;
    }
}

fn emit_range(out: &mut String, t0: u64, t1: u64, (lo, hi): (f64, f64), a: usize, b: usize) {
    let _ = writeln!(out, "# owlt {:.3}–{:.3} ms", lo * 1e3, hi * 1e3);
    let owlt = (0.5 * (lo + hi)).round();
    let _ = writeln!(out, "a range +{t0} +{t1} {a} {b} {owlt:.0}");
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
            routes: Vec::new(),
        }
    }

    #[test]
    fn contacts_are_the_up_intervals_with_rate_and_range() {
        let plan = contact_plan(&profile(), Duration::from_secs(10_000));
        assert!(plan.warnings.is_empty());
        let plan = plan.text;
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
