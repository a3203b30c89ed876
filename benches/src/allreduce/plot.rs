//! A hand-written SVG of the sweep: time against size (left) and bus bandwidth against size
//! (right), one line per algorithm, the reference bound dashed. Both axes logarithmic. With
//! several `-d`/`-o` values only the first (datatype, op) pair is drawn (the title names
//! it): a row's time follows its bytes, not its type, and one line per algorithm stays
//! readable.

use std::fmt::Write as _;

use crate::svg::{LogAxis, esc};

use super::report::{SizeResult, Sweep};

const W: f64 = 1100.0;
const H: f64 = 460.0;
const PANEL_W: f64 = 470.0;
const PANEL_H: f64 = 340.0;
const TOP: f64 = 50.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One line of a panel: label, colour, dashed?, points (x, y).
type Series<'a> = Vec<(String, &'a str, bool, Vec<(f64, f64)>)>;

fn fmt_bytes(b: f64) -> String {
    if b >= (1u64 << 30) as f64 {
        format!("{}G", b / (1u64 << 30) as f64)
    } else if b >= (1 << 20) as f64 {
        format!("{}M", b / (1 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{}K", b / 1024.0)
    } else {
        format!("{b}")
    }
}

#[allow(clippy::too_many_arguments)]
fn panel(
    out: &mut String,
    x0: f64,
    title: &str,
    ylabel: &str,
    xs: &LogAxis,
    ys: &LogAxis,
    series: &Series<'_>,
) {
    let px = |x: f64| x0 + 60.0 + xs.frac(x) * (PANEL_W - 70.0);
    let py = |y: f64| TOP + PANEL_H - ys.frac(y) * PANEL_H;
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        x0 + PANEL_W / 2.0,
        TOP - 15.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{TOP}" width="{}" height="{PANEL_H}" fill="none" stroke="#444"/>"##,
        x0 + 60.0,
        PANEL_W - 70.0
    );
    let mut e = xs.lo;
    while e <= xs.hi {
        let v = 10f64.powf(e);
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            TOP + PANEL_H,
            TOP + PANEL_H + 15.0,
            fmt_bytes(v),
            x = px(v)
        );
        e += 1.0;
    }
    let mut e = ys.lo;
    while e <= ys.hi {
        let v = 10f64.powf(e);
        let _ = writeln!(
            out,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">1e{e}</text>"##,
            x0 + 60.0,
            x0 + PANEL_W - 10.0,
            x0 + 55.0,
            py(v) + 4.0,
            y = py(v)
        );
        e += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">size per rank (bytes)</text>"#,
        x0 + PANEL_W / 2.0 + 30.0,
        TOP + PANEL_H + 35.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        x0 + 12.0,
        TOP + PANEL_H / 2.0,
        x0 + 12.0,
        TOP + PANEL_H / 2.0,
        esc(ylabel)
    );
    for (label, color, dashed, pts) in series {
        let path: Vec<String> = pts
            .iter()
            .filter(|(_, y)| *y > 0.0)
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        if path.is_empty() {
            continue;
        }
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}><title>{}</title></polyline>"#,
            path.join(" "),
            esc(label)
        );
        if !dashed {
            for p in &path {
                let mut it = p.split(',');
                if let (Some(x), Some(y)) = (it.next(), it.next()) {
                    let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
                }
            }
        }
    }
}

/// The SVG document.
pub(crate) fn svg(s: &Sweep) -> String {
    let first = (s.datatypes.first().copied(), s.ops.first().copied());
    let drawn: Vec<&SizeResult> = s
        .results
        .iter()
        .filter(|r| first.0.is_none_or(|d| d == r.datatype) && first.1.is_none_or(|o| o == r.op))
        .collect();
    let mut algos: Vec<String> = Vec::new();
    for r in &drawn {
        let l = r.algo.short_name().to_string();
        if !algos.contains(&l) {
            algos.push(l);
        }
    }
    let of = |a: &str| -> Vec<&SizeResult> {
        drawn
            .iter()
            .copied()
            .filter(|r| r.algo.short_name() == a)
            .collect()
    };
    let mut bound: Vec<(f64, f64, f64)> = drawn
        .iter()
        .map(|r| {
            (
                r.bytes as f64,
                r.bound_us(),
                r.bytes as f64 / 1e9 / r.bound.total_s.max(1e-12) * factor(r),
            )
        })
        .collect();
    bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    bound.dedup_by(|a, b| a.0 == b.0);
    let mut time_series: Series<'_> = Vec::new();
    let mut bw_series: Series<'_> = Vec::new();
    for (i, a) in algos.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let rs = of(a);
        time_series.push((
            a.clone(),
            color,
            false,
            rs.iter().map(|r| (r.bytes as f64, r.mean_us())).collect(),
        ));
        bw_series.push((
            a.clone(),
            color,
            false,
            rs.iter().map(|r| (r.bytes as f64, r.busbw())).collect(),
        ));
    }
    time_series.push((
        "bound".to_string(),
        "#000",
        true,
        bound.iter().map(|b| (b.0, b.1)).collect(),
    ));
    bw_series.push((
        "bound".to_string(),
        "#000",
        true,
        bound.iter().map(|b| (b.0, b.2)).collect(),
    ));
    let xs = LogAxis::fit(drawn.iter().map(|r| r.bytes as f64));
    let yt = LogAxis::fit(
        time_series
            .iter()
            .flat_map(|(_, _, _, p)| p.iter().map(|(_, y)| *y)),
    );
    let yb = LogAxis::fit(
        bw_series
            .iter()
            .flat_map(|(_, _, _, p)| p.iter().map(|(_, y)| *y)),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="18" font-size="15" text-anchor="middle">all-reduce {} {} on {} ({} nodes, {}), clock {}{}</text>"#,
        W / 2.0,
        first.0.map_or("", |d| d.name()),
        first.1.map_or("", |o| o.name()),
        esc(&s.profile),
        s.nodes,
        esc(&s.placement),
        s.clock,
        if s.emulated { "" } else { " - emulation off" }
    );
    let (bound_rows, judged) = s.host_bound_rows();
    if judged > 0 {
        let marked: Vec<String> = s
            .results
            .iter()
            .filter(|r| r.host.as_ref().is_some_and(|(_, v)| v.host_bound))
            .map(|r| format!("{} {}", r.algo_label(), fmt_bytes(r.bytes as f64)))
            .collect();
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="{}">host-bound rows (this machine, not the links, set the time): {bound_rows} of {judged}{}</text>"#,
            W / 2.0,
            H - 4.0,
            if bound_rows > 0 { "#d62728" } else { "#444" },
            esc(&if marked.is_empty() {
                String::new()
            } else {
                format!(": {}", marked.join(", "))
            })
        );
    }
    panel(
        &mut out,
        10.0,
        "time per all-reduce",
        "time (us)",
        &xs,
        &yt,
        &time_series,
    );
    panel(
        &mut out,
        20.0 + PANEL_W + 40.0,
        "bus bandwidth",
        "busbw (GB/s)",
        &xs,
        &yb,
        &bw_series,
    );
    let mut lx = 80.0;
    let ly = H - 22.0;
    for (label, color, dashed, _) in &time_series {
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="12">{}</text>"#,
            lx + 25.0,
            lx + 30.0,
            ly + 4.0,
            esc(label)
        );
        lx += 40.0 + 8.0 * label.len() as f64;
    }
    let _ = writeln!(out, "</svg>");
    out
}

fn factor(r: &SizeResult) -> f64 {
    spacefabric_node::collective::Collective::AllReduce.bus_factor(r.world)
}
