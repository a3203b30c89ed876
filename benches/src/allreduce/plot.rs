//! The SVG of the sweep, drawn with plotters' SVG backend: time against size (left) and bus
//! bandwidth against size (right), one colour per algorithm, the reference bound dashed
//! black where the profile gives one. Log axes: sizes on power-of-two ticks, time in
//! s/ms/µs, bandwidth in Mbit/s or Gbit/s. With several `-d`/`-o` values only the first
//! (datatype, op) pair is drawn (the title names it): a row's time follows its bytes, not
//! its type, and one line per algorithm stays readable. Rows this host bounded are named in
//! a line under the panels.

use std::ops::Range;

use plotters::prelude::*;

use crate::plot_axes::{
    bitrate_label, bytes_label, colour, decade_range, decade_ticks, pow2_range, pow2_ticks,
    time_label,
};

use super::report::{SizeResult, Sweep};

const W: u32 = 1100;
const H: u32 = 480;
/// The reference bound's colour (near-black: plotters draws the axes in pure black).
const BOUND: RGBColor = RGBColor(0x22, 0x22, 0x22);

/// One line of a panel: label, colour, points (size in bytes, value); `None` colour = bound.
type Series = Vec<(String, Option<RGBColor>, Vec<(f64, f64)>)>;

/// Draws one panel: `series` over power-of-two sizes, `y_label` formatting the y ticks.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    xs: &Range<f64>,
    series: &Series,
    y_label: &dyn Fn(&f64) -> String,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let ys = decade_range(series.iter().flat_map(|s| s.2.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(85)
        .build_cartesian_2d(
            xs.clone().log_scale().with_key_points(pow2_ticks(xs)),
            ys.clone().log_scale().with_key_points(decade_ticks(&ys)),
        )
        .map_err(|e| anyhow::anyhow!("drawing the '{title}' panel: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("size per rank (bytes)")
        .y_desc(y_desc)
        .x_label_formatter(&|v| bytes_label(*v))
        .y_label_formatter(y_label)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing the '{title}' axes: {e}"))?;
    for (label, color, points) in series {
        let pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1 > 0.0).collect();
        if pts.is_empty() {
            continue;
        }
        let err = |e| anyhow::anyhow!("drawing series '{label}': {e}");
        match color {
            Some(c) => {
                let c = *c;
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(err)?
                    .label(label.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 3), (x + 18, y + 3)], c.filled())
                    });
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                    .map_err(err)?;
            }
            None => {
                chart
                    .draw_series(DashedLineSeries::new(pts, 6, 4, BOUND.stroke_width(2)))
                    .map_err(err)?
                    .label(label.as_str())
                    .legend(|(x, y)| Rectangle::new([(x, y - 1), (x + 18, y + 1)], BOUND.filled()));
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x44, 0x44, 0x44))
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing the '{title}' legend: {e}"))?;
    Ok(())
}

/// The SVG document.
pub(crate) fn svg(s: &Sweep) -> anyhow::Result<String> {
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
    // (bytes, bound time in µs, bound busbw in bit/s), where the profile gives a bound.
    let mut bound: Vec<(f64, f64, f64)> = drawn
        .iter()
        .filter(|r| r.bound.total_s > 0.0 && r.bound.total_s.is_finite())
        .map(|r| {
            (
                r.bytes as f64,
                r.bound_us(),
                r.bytes as f64 * 8.0 / r.bound.total_s * factor(r),
            )
        })
        .collect();
    bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    bound.dedup_by(|a, b| a.0 == b.0);
    let mut time_series: Series = Vec::new();
    let mut bw_series: Series = Vec::new();
    for (i, a) in algos.iter().enumerate() {
        let rs = of(a);
        time_series.push((
            a.clone(),
            Some(colour(i)),
            rs.iter().map(|r| (r.bytes as f64, r.mean_us())).collect(),
        ));
        // busbw() is GB/s (decimal bytes): ×8e9 for bit/s.
        bw_series.push((
            a.clone(),
            Some(colour(i)),
            rs.iter()
                .map(|r| (r.bytes as f64, r.busbw() * 8e9))
                .collect(),
        ));
    }
    if !bound.is_empty() {
        time_series.push((
            "bound".to_string(),
            None,
            bound.iter().map(|b| (b.0, b.1)).collect(),
        ));
        bw_series.push((
            "bound".to_string(),
            None,
            bound.iter().map(|b| (b.0, b.2)).collect(),
        ));
    }
    let xs = pow2_range(drawn.iter().map(|r| r.bytes as f64));
    let title = format!(
        "all-reduce {} {} on {} ({} nodes, {}), clock {}{}",
        first.0.map_or("", |d| d.name()),
        first.1.map_or("", |o| o.name()),
        s.profile,
        s.nodes,
        s.placement,
        s.clock,
        if s.emulated { "" } else { " - emulation off" }
    );
    let (bound_rows, judged) = s.host_bound_rows();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("drawing the plot background: {e}"))?;
        let body = root
            .titled(&title, ("sans-serif", 16))
            .map_err(|e| anyhow::anyhow!("drawing the plot title: {e}"))?;
        let (panels, foot) = body.split_vertically(H - 60);
        let halves = panels.split_evenly((1, 2));
        if let [left, right] = halves.as_slice() {
            panel(
                left,
                "time per all-reduce",
                "time",
                &xs,
                &time_series,
                &|v| time_label(*v),
            )?;
            panel(right, "bus bandwidth", "busbw", &xs, &bw_series, &|v| {
                bitrate_label(*v)
            })?;
        }
        if judged > 0 {
            let marked: Vec<String> = s
                .results
                .iter()
                .filter(|r| r.host.as_ref().is_some_and(|(_, v)| v.host_bound))
                .map(|r| format!("{} {}", r.algo_label(), bytes_label(r.bytes as f64)))
                .collect();
            let text = format!(
                "host-bound rows (this machine, not the links, set the time): {bound_rows} of {judged}{}",
                if marked.is_empty() {
                    String::new()
                } else {
                    format!(": {}", marked.join(", "))
                }
            );
            let color = if bound_rows > 0 {
                RGBColor(0xd6, 0x27, 0x28)
            } else {
                RGBColor(0x44, 0x44, 0x44)
            };
            let style = TextStyle::from(("sans-serif", 12).into_font())
                .color(&color)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
            foot.draw_text(&text, &style, ((W / 2) as i32, 40))
                .map_err(|e| anyhow::anyhow!("drawing the host-bound line: {e}"))?;
        }
        root.present()
            .map_err(|e| anyhow::anyhow!("writing the plot: {e}"))?;
    }
    Ok(out)
}

fn factor(r: &SizeResult) -> f64 {
    spacefabric_node::collective::Collective::AllReduce.bus_factor(r.world)
}
