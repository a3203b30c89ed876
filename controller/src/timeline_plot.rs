//! `profile timeline --plot FILE.svg`: an SVG of a profile's links over time, drawn with
//! plotters' SVG backend — one bar per directed link (green up, red down) and a chart of each
//! site pair's one-way delay, one colour per pair — so a user sees at a glance when links
//! drop and how the light time swings. Deterministic for a given profile and span.

use std::time::Duration;

use netem_profiles::Profile;
use plotters::prelude::*;

const WIDTH: u32 = 1000;
const BAR_ROW: u32 = 24;
const CHART_H: u32 = 330;
/// Up and down colours of the availability bars.
const UP: RGBColor = RGBColor(0x7f, 0xc9, 0x7f);
const DOWN: RGBColor = RGBColor(0xe3, 0x4a, 0x33);
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Why the timeline could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the timeline plot ({what}): {message}")]
pub struct TimelinePlotError {
    what: &'static str,
    message: String,
}

fn drawing(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> TimelinePlotError {
    move |e| TimelinePlotError {
        what,
        message: e.to_string(),
    }
}

/// The SVG document for `profile` over `hours` of emulated time.
pub fn timeline_svg(profile: &Profile, hours: f64) -> Result<String, TimelinePlotError> {
    let horizon = Duration::from_secs_f64((hours * 3600.0).max(1.0));
    let span_h = horizon.as_secs_f64() / 3600.0;
    let n = profile.sites.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    let labels: Vec<String> = pairs
        .iter()
        .map(|&(a, b)| format!("{} → {}", profile.sites[a].name, profile.sites[b].name))
        .collect();
    let rows = u32::try_from(pairs.len()).unwrap_or(u32::MAX).max(1);
    let bars_h = rows.saturating_mul(BAR_ROW).saturating_add(70);
    let height = bars_h.saturating_add(CHART_H).saturating_add(40);

    // Delay chart: one line per unordered pair, sampled at 600 points.
    let samples = 600;
    let series: Vec<(String, Vec<(f64, f64)>)> = (0..n)
        .flat_map(|a| ((a + 1)..n).map(move |b| (a, b)))
        .map(|(a, b)| {
            let link = profile.link(a, b);
            let v = (0..=samples)
                .map(|i| {
                    let t = horizon.mul_f64(i as f64 / samples as f64);
                    (
                        t.as_secs_f64() / 3600.0,
                        link.delay_at(t).as_secs_f64() * 1e3,
                    )
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
        for &(_, d) in v {
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

    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| drawing("background")(&e))?;
        let title = format!(
            "{} — links over {hours} h (time scale {})",
            profile.name, profile.time_scale
        );
        let body = root
            .titled(&title, ("sans-serif", 18))
            .map_err(|e| drawing("title")(&e))?;
        let (bars_area, chart_area) = body.split_vertically(bars_h);

        // Availability bars: row i (from the top) is directed pair i.
        let nrows = pairs.len();
        let row_label = |y: &SegmentValue<i32>| -> String {
            let y = match y {
                SegmentValue::Exact(v) | SegmentValue::CenterOf(v) => *v,
                SegmentValue::Last => return String::new(),
            };
            usize::try_from(y)
                .ok()
                .and_then(|y| nrows.checked_sub(1 + y))
                .and_then(|i| labels.get(i))
                .cloned()
                .unwrap_or_default()
        };
        let nrows_i = i32::try_from(nrows).unwrap_or(i32::MAX);
        let mut bars = ChartBuilder::on(&bars_area)
            .caption("link availability (green up, red down)", ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(170)
            .build_cartesian_2d(0.0..span_h, (0..nrows_i.max(1)).into_segmented())
            .map_err(|e| drawing("availability axes")(&e))?;
        bars.configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .y_labels(nrows.max(1))
            .x_label_formatter(&|h| format!("{h:.1} h"))
            .y_label_formatter(&row_label)
            .draw()
            .map_err(|e| drawing("availability axes")(&e))?;
        for (row, &(a, b)) in pairs.iter().enumerate() {
            // Row 0 on top: segment nrows - 1.
            let seg = i32::try_from(nrows - 1 - row).unwrap_or(0);
            let (y0, y1) = (SegmentValue::Exact(seg), SegmentValue::Exact(seg + 1));
            bars.draw_series(std::iter::once(Rectangle::new(
                [(0.0, y0.clone()), (span_h, y1.clone())],
                UP.filled(),
            )))
            .map_err(|e| drawing("availability bar")(&e))?;
            let down = profile
                .link(a, b)
                .outages
                .outages_between(Duration::ZERO, horizon);
            bars.draw_series(down.iter().map(|w| {
                let (x0, x1) = (w.start.as_secs_f64() / 3600.0, w.end.as_secs_f64() / 3600.0);
                Rectangle::new([(x0, y0.clone()), (x1, y1.clone())], DOWN.filled())
            }))
            .map_err(|e| drawing("outage")(&e))?;
        }

        let mut chart = ChartBuilder::on(&chart_area)
            .caption("one-way delay", ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(170)
            .build_cartesian_2d(0.0..span_h, lo..hi)
            .map_err(|e| drawing("delay axes")(&e))?;
        chart
            .configure_mesh()
            .x_desc("emulated time")
            .x_label_formatter(&|h| format!("{h:.1} h"))
            .y_label_formatter(&|d| format!("{d:.3} ms"))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| drawing("delay axes")(&e))?;
        for (i, (label, v)) in series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(v.iter().copied(), c.stroke_width(2)))
                .map_err(|e| drawing("delay line")(&e))?
                .label(label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 10, y + 4)], c.filled()));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(0x88, 0x88, 0x88))
                .draw()
                .map_err(|e| drawing("legend")(&e))?;
        }
        root.present().map_err(|e| drawing("writing")(&e))?;
    }
    Ok(s)
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
        let svg = timeline_svg(&p, 4.0).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("earth → moon") && svg.contains("moon → earth"));
        // 2 outages in 4 h per direction, each a red (#E34A33) rect; one green bar per link.
        assert_eq!(svg.matches(r##"fill="#E34A33""##).count(), 4);
        assert_eq!(svg.matches(r##"fill="#7FC97F""##).count(), 2);
        // One delay line (earth – moon) in the first palette colour.
        assert_eq!(
            svg.matches(r##"stroke="#1F77B4" stroke-width="2""##)
                .count(),
            1
        );
    }
}
