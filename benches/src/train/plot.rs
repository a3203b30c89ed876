//! The SVG of the comparison, drawn with plotters' SVG backend: held-out loss against wall
//! time (left) and against payload bytes sent across sites (right), one colour per
//! strategy, the target loss dashed. The x axes are logarithmic (sync's time and bytes are
//! orders of magnitude above DiLoCo's): time in s/ms/µs, bytes on power-of-two ticks. The
//! loss axis is linear over the losses drawn (a few tenths apart at the end of a run, which a
//! decade-wide log axis would flatten into one line).

use std::ops::Range;

use plotters::prelude::*;

use crate::plot_axes::{
    bytes_label, colour, decade_range, decade_ticks, number_label, pow2_range, pow2_ticks,
    seconds_label,
};

/// Characters of a header line that fit the plot's width at its font size.
const HEADER_CHARS: usize = 175;

use super::StrategyResult;

const W: u32 = 1100;
const H: u32 = 500;

/// One line of a panel: strategy, colour, points (x, loss).
type Series = Vec<(String, RGBColor, Vec<(f64, f64)>)>;

/// How a panel's x axis is laid out.
struct XAxis<'a> {
    desc: &'a str,
    range: Range<f64>,
    ticks: Vec<f64>,
    label: &'a dyn Fn(&f64) -> String,
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x: &XAxis<'_>,
    series: &Series,
    target: f64,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let ys = loss_range(
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .chain(std::iter::once(target)),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            x.range.clone().log_scale().with_key_points(x.ticks.clone()),
            ys,
        )
        .map_err(|e| anyhow::anyhow!("drawing the '{title}' panel: {e}"))?;
    chart
        .configure_mesh()
        .x_desc(x.desc)
        .y_desc("held-out loss")
        .y_labels(8)
        .x_label_formatter(x.label)
        .y_label_formatter(&|v| number_label(*v))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing the '{title}' axes: {e}"))?;
    if target > 0.0 && target.is_finite() {
        chart
            .draw_series(DashedLineSeries::new(
                [(x.range.start, target), (x.range.end, target)],
                6,
                4,
                RGBColor(0x55, 0x55, 0x55).stroke_width(1),
            ))
            .map_err(|e| anyhow::anyhow!("drawing the target line: {e}"))?
            .label(format!("target {target}"))
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 1), (x + 18, y + 1)],
                    RGBColor(0x55, 0x55, 0x55).filled(),
                )
            });
    }
    for (label, c, points) in series {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.0 > 0.0 && p.1 > 0.0)
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = *c;
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("drawing strategy '{label}': {e}"))?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 18, y + 3)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x44, 0x44, 0x44))
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing the '{title}' legend: {e}"))?;
    Ok(())
}

/// The SVG document.
pub(crate) fn svg(
    header: &[String],
    results: &[StrategyResult],
    target: f64,
) -> anyhow::Result<String> {
    let mut by_time: Series = Vec::new();
    let mut by_bytes: Series = Vec::new();
    for (i, r) in results.iter().enumerate() {
        // A strategy this host bounded is marked in the legend, as in the table.
        let label = if r.host.as_ref().is_some_and(|h| h.verdict.host_bound) {
            format!("{} (HOST)", r.label)
        } else {
            r.label.clone()
        };
        by_time.push((
            label.clone(),
            colour(i),
            r.curve
                .iter()
                .map(|p| (p.elapsed.as_secs_f64(), p.loss))
                .collect(),
        ));
        by_bytes.push((
            label,
            colour(i),
            r.curve
                .iter()
                .map(|p| {
                    let (_, cross) = StrategyResult::intra_cross(&p.bytes);
                    (cross as f64, p.loss)
                })
                .collect(),
        ));
    }
    let time_range = decade_range(by_time.iter().flat_map(|s| s.2.iter().map(|p| p.0)));
    let time_axis = XAxis {
        desc: "wall time",
        ticks: decade_ticks(&time_range),
        range: time_range,
        label: &|v| seconds_label(*v),
    };
    let bytes_range = pow2_range(by_bytes.iter().flat_map(|s| s.2.iter().map(|p| p.0)));
    let bytes_axis = XAxis {
        desc: "payload bytes sent across sites",
        ticks: pow2_ticks(&bytes_range),
        range: bytes_range,
        label: &|v| bytes_label(*v),
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("drawing the plot background: {e}"))?;
        let (head, body) = root.split_vertically(62);
        for (i, h) in header.iter().take(2).enumerate() {
            let y = 6 + 18 * i32::try_from(i).unwrap_or(0);
            head.draw_text(
                &clip(h, HEADER_CHARS),
                &("sans-serif", 13).into_font().color(&BLACK),
                (20, y),
            )
            .map_err(|e| anyhow::anyhow!("drawing the plot header: {e}"))?;
        }
        let (bound, judged) = super::host_bound_rows(results);
        if judged > 0 {
            let text = format!(
                "host-bound strategies (this machine, not the links, set the times; marked HOST): {bound} of {judged}{}",
                if bound > 0 {
                    " - rerun with --clock virtual"
                } else {
                    ""
                }
            );
            let color = if bound > 0 {
                RGBColor(0xbb, 0x00, 0x00)
            } else {
                RGBColor(0x55, 0x55, 0x55)
            };
            head.draw_text(
                &text,
                &("sans-serif", 12).into_font().color(&color),
                (20, 42),
            )
            .map_err(|e| anyhow::anyhow!("drawing the host-bound line: {e}"))?;
        }
        let halves = body.split_evenly((1, 2));
        if let [left, right] = halves.as_slice() {
            panel(
                left,
                "held-out loss vs wall time",
                &time_axis,
                &by_time,
                target,
            )?;
            panel(
                right,
                "held-out loss vs bytes across sites",
                &bytes_axis,
                &by_bytes,
                target,
            )?;
        }
        root.present()
            .map_err(|e| anyhow::anyhow!("writing the plot: {e}"))?;
    }
    Ok(out)
}

/// The loss axis: the finite positive losses drawn, with 5 % of their span (at least 0.05)
/// above and below, so curves that end a few tenths apart stay apart.
fn loss_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(0.05);
    (lo - pad).max(0.0)..hi + pad
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_axis_spans_the_losses_not_a_decade() {
        let r = loss_range([4.3, 2.34, 2.5, f64::NAN, 0.0].into_iter());
        assert!(r.start > 2.2 && r.start < 2.34, "{r:?}");
        assert!(r.end > 4.3 && r.end < 4.5, "{r:?}");
        assert_eq!(loss_range(std::iter::empty()), 0.0..1.0);
        let one = loss_range([2.0].into_iter());
        assert!(one.start < 2.0 && one.end > 2.0);
    }

    #[test]
    fn long_header_lines_are_clipped_with_a_mark() {
        assert_eq!(clip("short", 10), "short");
        let c = clip(&"x".repeat(300), HEADER_CHARS);
        assert_eq!(c.chars().count(), HEADER_CHARS);
        assert!(c.ends_with('…'));
    }
}
