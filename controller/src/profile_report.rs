//! Renders profiles for people: what `spacefabric-controller profile check|show|timeline`
//! print.
//!
//! Pure functions from a [`Profile`] (or files) to text, so the binary stays a thin dispatcher
//! and the output can be tested without running it. Times on the link schedules are emulated
//! time since the scenario epoch; where the profile's `time_scale` is not 1 the scenario time
//! is shown next to it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netem_profiles::{
    Jitter, JitterDist, LinkSpec, LossModel, OutageSchedule, Profile, ProfileErrors, Window,
};

/// How many upcoming outages `profile show` lists per link.
pub const SHOW_NEXT_OUTAGES: usize = 3;
/// Most columns a timeline strip may have (`hours·3600 / step`).
pub const MAX_TIMELINE_STEPS: u64 = 10_000;

/// What went wrong rendering a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The profile did not load or validate.
    #[error("{0}")]
    Profile(#[from] ProfileErrors),
    /// `--hours` is not a positive, finite number of hours.
    #[error("--hours must be a positive number of hours (at most 1,000,000), got {0}")]
    BadHours(f64),
    /// `--step` is not a positive, finite number of seconds.
    #[error("--step must be a positive number of seconds, got {0}")]
    BadStep(f64),
    /// The timeline would have too many columns.
    #[error("{hours} h at a step of {step} s is {steps} steps; the most is {max}: raise --step")]
    TooManySteps {
        /// Requested span.
        hours: f64,
        /// Requested step.
        step: f64,
        /// Steps that would make.
        steps: u64,
        /// [`MAX_TIMELINE_STEPS`].
        max: u64,
    },
}

/// The result of checking several profile files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// `ok FILE` for each valid file.
    pub ok_lines: Vec<String>,
    /// `file:line: key `k`: message`, one per problem, every file.
    pub error_lines: Vec<String>,
}

impl CheckReport {
    /// Were all files valid?
    pub fn all_valid(&self) -> bool {
        self.error_lines.is_empty()
    }
}

/// Loads and validates every file, collecting one line per valid file and one per problem.
pub fn check_files(paths: &[PathBuf]) -> CheckReport {
    let mut report = CheckReport::default();
    for path in paths {
        match Profile::from_file(path) {
            Ok(_) => report.ok_lines.push(format!("ok {}", path.display())),
            Err(errors) => report
                .error_lines
                .extend(errors.0.iter().map(ToString::to_string)),
        }
    }
    report
}

/// Loads one profile file.
pub fn load(path: &Path) -> Result<Profile, ReportError> {
    Ok(Profile::from_file(path)?)
}

/// `profile show`: sites, then every directed link with its delay, RTT, rate, BDP, loss,
/// jitter, queue, how node pairs share it, and next outages.
pub fn show(profile: &Profile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "profile {}: {}", profile.name, profile.description);
    let _ = writeln!(
        out,
        "seed {}; time scale {} (scenario seconds per emulated second; light delay is not scaled)",
        profile.seed, profile.time_scale
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "sites ({}):", profile.sites.len());
    let mut sites = Table::new(&["id", "site", "description"]);
    for (i, s) in profile.sites.iter().enumerate() {
        sites.row(vec![i.to_string(), s.name.clone(), s.description.clone()]);
    }
    out.push_str(&sites.render("  "));
    let _ = writeln!(out);

    let n = profile.sites.len();
    let _ = writeln!(out, "links ({} directed):", n * n);
    let mut links = Table::new(&[
        "link", "delay", "RTT", "rate", "BDP", "loss", "jitter", "dup", "queue", "sharing",
        "outage",
    ]);
    for (from, to) in directed_pairs(n) {
        let spec = profile.link(from, to);
        let rtt = profile.rtt(from, to, Duration::ZERO);
        links.row(vec![
            link_name(profile, from, to),
            fmt_duration(spec.delay_at(Duration::ZERO)),
            fmt_duration(rtt),
            spec.rate_bps.map_or_else(|| "unlimited".into(), fmt_rate),
            spec.bdp_bytes(rtt).map_or_else(|| "-".into(), fmt_bytes),
            fmt_loss(&spec.loss),
            spec.jitter.map_or_else(|| "none".into(), fmt_jitter),
            fmt_probability(spec.duplicate),
            if spec.rate_bps.is_some() {
                fmt_bytes(spec.queue_limit_bytes)
            } else {
                "-".into()
            },
            profile.sharing(from, to).describe(),
            match profile.route(from, to) {
                Some(_) => "routed".to_string(),
                None => spec.outage_mode.describe(),
            },
        ]);
    }
    out.push_str(&links.render("  "));
    let _ = writeln!(
        out,
        "  sharing: `shared` = one trunk per direction for every node pair of the two sites (one rate, one queue, one loss and outage process); `shared xK` = K parallel trunks, node pairs placed in turn; `per pair` = a private copy per node pair"
    );
    let _ = writeln!(
        out,
        "  outage: `drop` = a datagram handed to the link while it is down is lost; `store N` = the upstream end holds up to N bytes and sends them, in order, when the link is up again (what is propagating when it goes down is lost); `routed` = the pair is routed over relays, each hop with its own outage mode (below)"
    );
    let _ = writeln!(out);

    let routes: Vec<_> = profile.routes().collect();
    if !routes.is_empty() {
        let _ = writeln!(
            out,
            "routes ({} directed; the link rows above summarise each: delays added, slowest rate, down when a dropping hop is down):",
            routes.len()
        );
        let mut table = Table::new(&["route", "hops", "delay", "rate"]);
        for (from, to, path) in routes {
            let spec = profile.link(from, to);
            let hops: Vec<String> = path
                .windows(2)
                .map(|w| {
                    format!(
                        "{} ({})",
                        link_name(profile, w[0], w[1]),
                        profile.link(w[0], w[1]).outage_mode.describe()
                    )
                })
                .collect();
            table.row(vec![
                link_name(profile, from, to),
                hops.join(", "),
                fmt_duration(spec.delay_at(Duration::ZERO)),
                spec.rate_bps.map_or_else(|| "unlimited".into(), fmt_rate),
            ]);
        }
        out.push_str(&table.render("  "));
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "outages (emulated time since the scenario epoch):");
    let mut any = false;
    for (from, to) in directed_pairs(n) {
        let spec = profile.link(from, to);
        if spec.outages.is_always_up() {
            continue;
        }
        any = true;
        let next = next_outages(&spec.outages, Duration::ZERO, SHOW_NEXT_OUTAGES);
        let listed: Vec<String> = next
            .iter()
            .map(|w| fmt_window(w, profile.time_scale))
            .collect();
        let _ = writeln!(
            out,
            "  {}: {}; next: {}",
            link_name(profile, from, to),
            describe_schedule(&spec.outages),
            if listed.is_empty() {
                "none".to_string()
            } else {
                listed.join(", ")
            }
        );
    }
    if !any {
        let _ = writeln!(out, "  none: every link is always up");
    }
    let _ = writeln!(
        out,
        "longest outage: {}",
        fmt_duration(profile.longest_outage())
    );
    out
}

/// The end of the shortest geometry table among the profile's links, in emulated time (`None`
/// when no link is geometry-derived). Past it every geometry link keeps its last state.
pub fn geometry_horizon(profile: &Profile) -> Option<Duration> {
    let n = profile.sites.len();
    directed_pairs(n)
        .filter_map(|(a, b)| profile.link(a, b).geometry.as_ref())
        .map(|g| g.table.horizon())
        .min()
}

/// A warning when `hours` of emulated time reach past the profile's geometry tables.
pub fn horizon_warning(profile: &Profile, hours: f64) -> Option<String> {
    let horizon = geometry_horizon(profile)?;
    (hours * 3600.0 > horizon.as_secs_f64()).then(|| {
        format!(
            "{} h reaches past the geometry tables of profile `{}`, which end at {}: from there each geometry link keeps its last state (delay frozen, up stays up, down stays down) instead of following the orbits; raise [geometry] horizon_hours",
            hours,
            profile.name,
            fmt_duration(horizon)
        )
    })
}

/// `profile timeline`: for each directed link over `[0, hours)` of emulated time, the delay
/// range sampled every `step_s` seconds, a strip chart (one column per step: `#` up, `.` down,
/// `:` changing within the step) and the exact down windows.
pub fn timeline(profile: &Profile, hours: f64, step_s: Option<f64>) -> Result<String, ReportError> {
    if !hours.is_finite() || hours <= 0.0 || hours > 1.0e6 {
        return Err(ReportError::BadHours(hours));
    }
    let span = Duration::from_secs_f64(hours * 3600.0);
    let step_s = step_s.unwrap_or(hours * 3600.0 / 60.0);
    if !step_s.is_finite() || step_s <= 0.0 {
        return Err(ReportError::BadStep(step_s));
    }
    let steps_f = (hours * 3600.0 / step_s).ceil();
    if steps_f > MAX_TIMELINE_STEPS as f64 {
        return Err(ReportError::TooManySteps {
            hours,
            step: step_s,
            steps: steps_f as u64,
            max: MAX_TIMELINE_STEPS,
        });
    }
    let steps = (steps_f as u64).max(1);
    // A step longer than the span is one column covering it all.
    let step = Duration::from_secs_f64(step_s.min(hours * 3600.0));
    if step.is_zero() {
        return Err(ReportError::BadStep(step_s));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "profile {}: timeline over {} of emulated time, step {}{}",
        profile.name,
        fmt_duration(span),
        fmt_duration(step),
        if profile.time_scale == 1.0 {
            String::new()
        } else {
            format!(
                " (time scale {}: {} of scenario time)",
                profile.time_scale,
                fmt_duration(Duration::from_secs_f64(
                    (span.as_secs_f64() * profile.time_scale).min(1.0e15)
                ))
            )
        }
    );
    if let Some(w) = horizon_warning(profile, hours) {
        let _ = writeln!(out, "WARNING: {w}");
    }
    let _ = writeln!(
        out,
        "strip: one column per step; # up, . down, : changes within the step"
    );
    let _ = writeln!(out);

    let n = profile.sites.len();
    let mut table = Table::new(&["link", "delay min", "delay max", "up", "strip"]);
    let mut windows_text = String::new();
    for (from, to) in directed_pairs(n) {
        let spec = profile.link(from, to);
        let (dmin, dmax) = delay_range(spec, span, step);
        let down = spec.outages.outages_between(Duration::ZERO, span);
        let down_total: Duration = down.iter().map(Window::len).sum();
        let up_share = 1.0 - down_total.as_secs_f64() / span.as_secs_f64();
        table.row(vec![
            link_name(profile, from, to),
            fmt_duration(dmin),
            fmt_duration(dmax),
            format!("{:.1} %", up_share * 100.0),
            strip(&spec.outages, span, step, steps),
        ]);
        if !down.is_empty() {
            let _ = writeln!(windows_text, "  {}:", link_name(profile, from, to));
            let mut t = Table::new(&["state", "from", "to", "length"]);
            let mut cursor = Duration::ZERO;
            for w in &down {
                if w.start > cursor {
                    t.row(window_row("up", cursor, w.start));
                }
                t.row(window_row("down", w.start, w.end));
                cursor = w.end;
            }
            if cursor < span {
                t.row(window_row("up", cursor, span));
            }
            windows_text.push_str(&t.render("    "));
        }
    }
    out.push_str(&table.render(""));
    let _ = writeln!(out);
    if windows_text.is_empty() {
        let _ = writeln!(out, "windows: every link is up for the whole span");
    } else {
        let _ = writeln!(out, "windows (emulated time since the epoch):");
        out.push_str(&windows_text);
    }
    Ok(out)
}

fn window_row(state: &str, from: Duration, to: Duration) -> Vec<String> {
    vec![
        state.to_string(),
        fmt_clock(from),
        fmt_clock(to),
        fmt_duration(to.saturating_sub(from)),
    ]
}

/// Smallest and largest delay sampled at every step over `[0, span]`.
fn delay_range(spec: &LinkSpec, span: Duration, step: Duration) -> (Duration, Duration) {
    let mut lo = spec.delay_at(Duration::ZERO);
    let mut hi = lo;
    let mut t = step;
    while t <= span {
        let d = spec.delay_at(t);
        lo = lo.min(d);
        hi = hi.max(d);
        t += step;
    }
    (lo, hi)
}

/// One character per step: `#` up for the whole step, `.` down for the whole step, `:` mixed.
fn strip(sched: &OutageSchedule, span: Duration, step: Duration, steps: u64) -> String {
    (0..steps)
        .map(|i| {
            let start = step.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            let end = (start + step).min(span);
            let up_at_start = sched.is_up(start);
            let changes = sched.next_change(start).is_some_and(|c| c < end);
            match (up_at_start, changes) {
                (_, true) => ':',
                (true, false) => '#',
                (false, false) => '.',
            }
        })
        .collect()
}

/// The first `count` merged outages that end after `from`.
pub fn next_outages(sched: &OutageSchedule, from: Duration, count: usize) -> Vec<Window> {
    let mut out = Vec::new();
    let mut t = from;
    while out.len() < count {
        let start = if sched.is_up(t) {
            match sched.next_change(t) {
                Some(s) => s,
                None => break,
            }
        } else {
            t
        };
        let Some(end) = sched.next_change(start) else {
            out.push(Window {
                start,
                end: Duration::MAX,
            });
            break;
        };
        out.push(Window { start, end });
        t = end;
    }
    out
}

fn describe_schedule(sched: &OutageSchedule) -> String {
    let mut parts: Vec<String> = sched
        .periodic
        .iter()
        .map(|p| {
            format!(
                "down {} every {} from {}",
                fmt_duration(p.duration),
                fmt_duration(p.period),
                fmt_duration(p.phase)
            )
        })
        .collect();
    if !sched.windows.is_empty() {
        parts.push(format!("{} explicit window(s)", sched.windows.len()));
    }
    parts.join("; ")
}

fn directed_pairs(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |a| (0..n).map(move |b| (a, b)))
}

fn link_name(profile: &Profile, from: usize, to: usize) -> String {
    format!("{} -> {}", profile.sites[from].name, profile.sites[to].name)
}

fn fmt_window(w: &Window, time_scale: f64) -> String {
    let end = if w.end == Duration::MAX {
        "forever".to_string()
    } else {
        fmt_clock(w.end)
    };
    let mut s = format!(
        "[{}, {}) {}",
        fmt_clock(w.start),
        end,
        fmt_duration(w.len())
    );
    if time_scale != 1.0 {
        let _ = write!(
            s,
            " (scenario {})",
            fmt_clock(Duration::from_secs_f64(
                (w.start.as_secs_f64() * time_scale).min(1.0e15)
            ))
        );
    }
    s
}

/// A duration in the unit that suits it: `50 us`, `12.5 ms`, `1.282 s`, `12h25m00s`.
pub fn fmt_duration(d: Duration) -> String {
    if d == Duration::MAX {
        return "forever".into();
    }
    let s = d.as_secs_f64();
    if d.is_zero() {
        "0".into()
    } else if s < 1e-3 {
        format!("{} us", trim_float(s * 1e6, 3))
    } else if s < 1.0 {
        format!("{} ms", trim_float(s * 1e3, 3))
    } else if s < 60.0 {
        format!("{} s", trim_float(s, 3))
    } else {
        fmt_clock(d)
    }
}

/// `HhMMmSSs` (or `Dd HhMMmSSs`), milliseconds shown when not whole.
pub fn fmt_clock(d: Duration) -> String {
    let total = d.as_secs();
    let ms = d.subsec_millis();
    let (days, h, m, s) = (
        total / 86_400,
        (total / 3600) % 24,
        (total / 60) % 60,
        total % 60,
    );
    let mut out = String::new();
    if days > 0 {
        let _ = write!(out, "{days}d ");
    }
    let _ = write!(out, "{h}h{m:02}m{s:02}");
    if ms > 0 {
        let _ = write!(out, ".{ms:03}");
    }
    out.push('s');
    out
}

/// `200 Mbit/s`, `10 Gbit/s`, `64 kbit/s`.
pub fn fmt_rate(bps: u64) -> String {
    let b = bps as f64;
    if b >= 1e9 {
        format!("{} Gbit/s", trim_float(b / 1e9, 3))
    } else if b >= 1e6 {
        format!("{} Mbit/s", trim_float(b / 1e6, 3))
    } else if b >= 1e3 {
        format!("{} kbit/s", trim_float(b / 1e3, 3))
    } else {
        format!("{bps} bit/s")
    }
}

/// Decimal units: `64.1 MB`, `65.5 kB`, `900 B`.
pub fn fmt_bytes(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "unlimited".into();
    }
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{} GB", trim_float(b / 1e9, 2))
    } else if b >= 1e6 {
        format!("{} MB", trim_float(b / 1e6, 1))
    } else if b >= 1e3 {
        format!("{} kB", trim_float(b / 1e3, 1))
    } else {
        format!("{bytes} B")
    }
}

fn fmt_probability(p: f64) -> String {
    if p == 0.0 {
        "0".into()
    } else {
        format!("{} %", trim_float(p * 100.0, 4))
    }
}

fn fmt_loss(loss: &LossModel) -> String {
    match *loss {
        LossModel::None => "none".into(),
        LossModel::Bernoulli { p } => format!("{} random", fmt_probability(p)),
        LossModel::GilbertElliott { p, r, h, k } => format!(
            "GE p={} r={} h={} k={}",
            trim_float(p, 6),
            trim_float(r, 6),
            trim_float(h, 6),
            trim_float(k, 6)
        ),
    }
}

fn fmt_jitter(j: Jitter) -> String {
    let dist = match j.dist {
        JitterDist::Uniform => "uniform ±",
        JitterDist::Normal => "normal σ ",
        JitterDist::Pareto => "pareto mean ",
    };
    format!(
        "{dist}{}{}",
        fmt_duration(j.amount),
        if j.reorder { " reorder" } else { "" }
    )
}

/// `x` with at most `decimals` decimals, trailing zeros removed.
fn trim_float(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A plain text table with left-aligned columns.
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(ToString::to_string).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self, indent: &str) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = indent.to_string();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_well() {
        assert_eq!(fmt_duration(Duration::from_micros(50)), "50 us");
        assert_eq!(fmt_duration(Duration::from_millis(1282)), "1.282 s");
        assert_eq!(fmt_duration(Duration::from_secs(44_700)), "12h25m00s");
        assert_eq!(fmt_rate(200_000_000), "200 Mbit/s");
        assert_eq!(fmt_rate(10_000_000_000), "10 Gbit/s");
        assert_eq!(fmt_bytes(64_100_000), "64.1 MB");
        assert_eq!(fmt_clock(Duration::from_secs(90_061)), "1d 1h01m01s");
    }

    #[test]
    fn timeline_refuses_bad_spans_and_steps_without_panicking() {
        let profile = Profile::from_file(
            &netem_profiles::shipped_profiles_dir().join("lunar-farside-relay.toml"),
        )
        .unwrap();
        for (hours, step) in [
            (f64::NAN, None),
            (-1.0, None),
            (0.0, None),
            (f64::INFINITY, None),
            (1.0, Some(0.0)),
            (1.0, Some(-5.0)),
            (1.0, Some(f64::NAN)),
            (1000.0, Some(0.001)),
        ] {
            assert!(timeline(&profile, hours, step).is_err(), "{hours} {step:?}");
        }
        let one_column = timeline(&profile, 1.0, Some(1e300)).unwrap();
        assert!(one_column.contains("earth -> farside"));
        let t = timeline(&profile, 4.0, Some(60.0)).unwrap();
        // Geometry-derived: a DSN hand-over gap at 0h38m29.2s-0h40m43.5s (docs/ORBITS.md).
        assert!(t.contains("down   0h38m29.1"), "{t}");
    }

    /// The horizon rule seen from the CLI: earth-moon-dsn's tables end at 48 h with Goldstone
    /// below its mask, so past 48 h the link stays down (the Moon really rises again at
    /// ~50 h: the table does not extrapolate) and the timeline says so loudly.
    #[test]
    fn past_the_geometry_horizon_the_timeline_warns_and_the_last_state_holds() {
        let profile =
            Profile::from_file(&netem_profiles::shipped_profiles_dir().join("earth-moon-dsn.toml"))
                .unwrap();
        assert_eq!(
            geometry_horizon(&profile),
            Some(Duration::from_secs(48 * 3600))
        );
        assert!(horizon_warning(&profile, 48.0).is_none());
        let t = timeline(&profile, 52.0, Some(600.0)).unwrap();
        assert!(t.contains("WARNING: 52 h reaches past"), "{t}");
        assert!(t.contains("keeps its last state"), "{t}");
        let (earth, moon) = (
            profile.site_id("earth").unwrap(),
            profile.site_id("moon").unwrap(),
        );
        let link = profile.link(earth, moon);
        assert!(!link.outages.is_up(Duration::from_secs(48 * 3600 - 1)));
        for h in [49, 50, 51, 52, 1000] {
            assert!(!link.outages.is_up(Duration::from_secs(h * 3600)), "{h} h");
        }
        assert!(
            timeline(&profile, 47.0, None)
                .unwrap()
                .find("WARNING")
                .is_none()
        );
    }

    #[test]
    fn strip_marks_changes_within_a_step() {
        let sched = OutageSchedule {
            periodic: vec![netem_profiles::PeriodicOutage {
                period: Duration::from_secs(10),
                duration: Duration::from_secs(5),
                phase: Duration::from_secs(5),
            }],
            windows: vec![],
        };
        let s = strip(&sched, Duration::from_secs(20), Duration::from_secs(5), 4);
        assert_eq!(s, "#.#.");
        let s = strip(&sched, Duration::from_secs(20), Duration::from_secs(10), 2);
        assert_eq!(s, "::");
    }
}
