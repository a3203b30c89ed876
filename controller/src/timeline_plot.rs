//! `profile timeline --plot FILE.svg`: a hand-written SVG of a profile's links over time —
//! one bar per directed link (green up, red down) and a chart of each site pair's one-way
//! delay — so a user sees at a glance when links drop and how the light time swings.
//! No plotting crate: plain SVG text, deterministic for a given profile and span.

use std::fmt::Write as _;
use std::time::Duration;

use netem_profiles::Profile;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 40.0;
const BAR_H: f64 = 16.0;
const BAR_GAP: f64 = 8.0;
const CHART_H: f64 = 260.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for `profile` over `hours` of emulated time.
pub fn timeline_svg(profile: &Profile, hours: f64) -> String {
    let horizon = Duration::from_secs_f64((hours * 3600.0).max(1.0));
    let n = profile.sites.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    let plot_w = WIDTH - LEFT - RIGHT;
    let x_of = |t: Duration| LEFT + plot_w * (t.as_secs_f64() / horizon.as_secs_f64());
    let bars_top = 50.0;
    let bars_h = pairs.len() as f64 * (BAR_H + BAR_GAP);
    let chart_top = bars_top + bars_h + 50.0;
    let height = chart_top + CHART_H + 60.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16">{} — links over {hours} h (time scale {})</text>"#,
        esc(&profile.name),
        profile.time_scale
    );

    // Availability bars.
    for (row, &(a, b)) in pairs.iter().enumerate() {
        let y = bars_top + row as f64 * (BAR_H + BAR_GAP);
        let label = format!("{} → {}", profile.sites[a].name, profile.sites[b].name);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + BAR_H - 3.0,
            esc(&label)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y:.1}" width="{plot_w:.1}" height="{BAR_H}" fill="#7fc97f"/>"##
        );
        let down = profile
            .link(a, b)
            .outages
            .outages_between(Duration::ZERO, horizon);
        for w in down {
            let (x0, x1) = (x_of(w.start), x_of(w.end));
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{BAR_H}" fill="#e34a33"><title>down {:.1}–{:.1} s</title></rect>"##,
                (x1 - x0).max(0.5),
                w.start.as_secs_f64(),
                w.end.as_secs_f64()
            );
        }
    }

    // Time axis (shared).
    let ticks = 6;
    for k in 0..=ticks {
        let t = horizon.mul_f64(k as f64 / ticks as f64);
        let x = x_of(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ccc"/>"##,
            bars_top - 4.0,
            chart_top + CHART_H
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{:.2} h</text>"#,
            chart_top + CHART_H + 18.0,
            t.as_secs_f64() / 3600.0
        );
    }

    // Delay chart: one line per unordered pair, sampled at 600 points.
    let samples = 600;
    let series: Vec<(String, Vec<f64>)> = (0..n)
        .flat_map(|a| ((a + 1)..n).map(move |b| (a, b)))
        .map(|(a, b)| {
            let link = profile.link(a, b);
            let v = (0..=samples)
                .map(|i| {
                    link.delay_at(horizon.mul_f64(i as f64 / samples as f64))
                        .as_secs_f64()
                        * 1e3
                })
                .collect();
            (
                format!("{} – {}", profile.sites[a].name, profile.sites[b].name),
                v,
            )
        })
        .collect();
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for (_, v) in &series {
        for &d in v {
            lo = lo.min(d);
            hi = hi.max(d);
        }
    }
    if series.is_empty() || !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    if hi - lo < 1e-6 {
        hi = lo + 1.0;
        lo = (lo - 1.0).max(0.0);
    }
    let y_of = |d: f64| chart_top + CHART_H * (1.0 - (d - lo) / (hi - lo));
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}" font-size="14">one-way delay (ms)</text>"#,
        chart_top - 14.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{chart_top:.1}" width="{plot_w:.1}" height="{CHART_H}" fill="none" stroke="#888"/>"##
    );
    for k in 0..=4 {
        let d = lo + (hi - lo) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{d:.3}</text>"#,
            LEFT - 6.0,
            y_of(d) + 4.0
        );
    }
    for (i, (label, v)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut points = String::new();
        for (k, &d) in v.iter().enumerate() {
            let x = LEFT + plot_w * k as f64 / samples as f64;
            let _ = write!(points, "{x:.1},{:.1} ", y_of(d));
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.trim_end()
        );
        let ly = chart_top + CHART_H + 36.0 + 0.0 * i as f64;
        let lx = LEFT + (i % 4) as f64 * 190.0;
        let ly = ly + (i / 4) as f64 * 14.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 9.0,
            lx + 14.0,
            esc(label)
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
name = "t"
seed = 1
[sites.earth]
[sites.moon]
[[links]]
from = "earth"
to = "earth"
delay_ms = 0.05
[[links]]
from = "moon"
to = "moon"
delay_ms = 0.05
[[links]]
from = "earth"
to = "moon"
delay_ms = 1280
[[links.outages.periodic]]
period_s = 7200
duration_s = 1800
phase_s = 600
"#;

    #[test]
    fn svg_has_a_bar_per_link_and_a_down_rect_per_outage() {
        let p = Profile::parse(PROFILE, "t.toml").unwrap();
        let svg = timeline_svg(&p, 4.0);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("earth → moon") && svg.contains("moon → earth"));
        // 2 outages in 4 h per direction.
        assert_eq!(svg.matches("<title>down").count(), 4);
        assert!(svg.contains("<polyline"));
    }
}
