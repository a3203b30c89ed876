//! A hand-written SVG of the comparison: held-out loss against wall time (left) and against
//! payload bytes sent across sites (right), one line per strategy, the target loss dashed.
//! All axes logarithmic (sync's time and bytes are orders of magnitude above DiLoCo's).

use std::fmt::Write as _;

use crate::svg::{LogAxis, esc};

use super::StrategyResult;

const W: f64 = 1100.0;
const H: f64 = 480.0;
const PANEL_W: f64 = 450.0;
const PANEL_H: f64 = 330.0;
const TOP: f64 = 80.0;
const COLORS: [&str; 7] = [
    "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf",
];

type Series = Vec<(String, &'static str, Vec<(f64, f64)>)>;

#[allow(clippy::too_many_arguments)]
fn panel(out: &mut String, x0: f64, title: &str, xlabel: &str, series: &Series, target: f64) {
    let xs = LogAxis::fit(series.iter().flat_map(|s| s.2.iter().map(|p| p.0)));
    let ys = LogAxis::fit(
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .chain(std::iter::once(target)),
    );
    let px = |v: f64| x0 + xs.frac(v) * PANEL_W;
    let py = |v: f64| TOP + (1.0 - ys.frac(v)) * PANEL_H;
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="14">{}</text>"#,
        x0 + PANEL_W / 2.0,
        TOP - 10.0,
        esc(title)
    );
    for e in xs.lo as i64..=xs.hi as i64 {
        let x = x0 + (e as f64 - xs.lo) / (xs.hi - xs.lo) * PANEL_W;
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle" font-size="11">1e{e}</text>"##,
            TOP + PANEL_H,
            TOP + PANEL_H + 15.0
        );
    }
    for e in ys.lo as i64..=ys.hi as i64 {
        let y = TOP + (1.0 - (e as f64 - ys.lo) / (ys.hi - ys.lo)) * PANEL_H;
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end" font-size="11">1e{e}</text>"##,
            x0 + PANEL_W,
            x0 - 4.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>"#,
        x0 + PANEL_W / 2.0,
        TOP + PANEL_H + 35.0,
        esc(xlabel)
    );
    let ty = py(target);
    let _ = writeln!(
        out,
        r##"<line x1="{x0}" y1="{ty}" x2="{}" y2="{ty}" stroke="#555" stroke-dasharray="6,4"/><text x="{}" y="{}" text-anchor="end" font-size="11">target {target}</text>"##,
        x0 + PANEL_W,
        x0 + PANEL_W - 4.0,
        ty - 4.0
    );
    for (label, color, points) in series {
        let pts: Vec<String> = points
            .iter()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            pts.join(" "),
            esc(label)
        );
    }
}

/// The SVG document.
pub(crate) fn svg(header: &[String], results: &[StrategyResult], target: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    for (i, h) in header.iter().take(2).enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="20" y="{}" font-size="12">{}</text>"#,
            18.0 + 15.0 * i as f64,
            esc(h)
        );
    }
    let mut by_time: Series = Vec::new();
    let mut by_bytes: Series = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let name = r.label.clone();
        by_time.push((
            name.clone(),
            color,
            r.curve
                .iter()
                .map(|p| (p.elapsed.as_secs_f64(), p.loss))
                .collect(),
        ));
        by_bytes.push((
            name,
            color,
            r.curve
                .iter()
                .map(|p| {
                    let (_, cross) = StrategyResult::intra_cross(&p.bytes);
                    (cross as f64, p.loss)
                })
                .collect(),
        ));
    }
    panel(
        &mut out,
        70.0,
        "held-out loss vs wall time",
        "wall time (s)",
        &by_time,
        target,
    );
    panel(
        &mut out,
        70.0 + PANEL_W + 100.0,
        "held-out loss vs bytes across sites",
        "payload bytes sent across sites",
        &by_bytes,
        target,
    );
    let (bound, judged) = super::host_bound_rows(results);
    if judged > 0 {
        let _ = writeln!(
            out,
            r#"<text x="20" y="{}" font-size="11" fill="{}">host-bound strategies (this machine, not the links, set the times; marked HOST): {bound} of {judged}{}</text>"#,
            18.0 + 15.0 * 2.0,
            if bound > 0 { "#b00" } else { "#555" },
            if bound > 0 {
                " - rerun with --clock virtual"
            } else {
                ""
            }
        );
    }
    for (i, r) in results.iter().enumerate() {
        let x = 70.0 + 120.0 * i as f64;
        let y = H - 20.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            x + 25.0,
            COLORS[i % COLORS.len()],
            x + 30.0,
            y + 4.0,
            esc(&if r.host.as_ref().is_some_and(|h| h.verdict.host_bound) {
                format!("{} (HOST)", r.label)
            } else {
                r.label.clone()
            })
        );
    }
    out.push_str("</svg>\n");
    out
}
