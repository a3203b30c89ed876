//! What the benches' plotters charts share: logarithmic ranges fitted to the data, the tick
//! positions (powers of two for sizes, decades otherwise), tick labels in human units (bytes
//! as K/M/G, time in s/ms/µs, bandwidth in Mbit/s or Gbit/s) and one colour per series.
//! Pure: no drawing here, so the choices are unit-tested without parsing SVG.

use std::ops::Range;

use plotters::style::RGBColor;

/// One colour per algorithm or strategy, in the order they are drawn.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of series number `i`.
pub(crate) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The most tick labels an axis gets before every n-th is dropped.
const MAX_TICKS: usize = 10;

/// Whole decades holding every positive finite value (1..10 when there is none), as a range
/// for a log-scaled axis.
pub(crate) fn decade_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 1.0..10.0;
    }
    let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    10f64.powf(lo)..10f64.powf(hi)
}

/// Powers of ten inside `r` (ends included), thinned to at most [`MAX_TICKS`].
pub(crate) fn decade_ticks(r: &Range<f64>) -> Vec<f64> {
    log_ticks(r, 10.0)
}

/// Powers of two from the largest at or below `lo` to the smallest at or above `hi`, as a
/// range for a log-scaled size axis.
pub(crate) fn pow2_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 1.0..2.0;
    }
    let (lo, hi) = (lo.log2().floor(), hi.log2().ceil());
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    2f64.powf(lo)..2f64.powf(hi)
}

/// Powers of two inside `r` (ends included), every n-th so at most [`MAX_TICKS`] remain.
pub(crate) fn pow2_ticks(r: &Range<f64>) -> Vec<f64> {
    log_ticks(r, 2.0)
}

fn log_ticks(r: &Range<f64>, base: f64) -> Vec<f64> {
    if !(r.start > 0.0 && r.end.is_finite() && r.end >= r.start) {
        return Vec::new();
    }
    // Rounded exponents: the ends came from powers of `base`, so they are whole numbers up
    // to floating-point noise.
    let (lo, hi) = (
        (r.start.ln() / base.ln()).round() as i64,
        (r.end.ln() / base.ln()).round() as i64,
    );
    let n = usize::try_from(hi - lo + 1).unwrap_or(0);
    let step = n.div_ceil(MAX_TICKS).max(1);
    (lo..=hi)
        .step_by(step)
        .map(|e| base.powi(e as i32))
        .collect()
}

/// A byte count as nccl-tests sizes read: 8, 1K, 128M, 1G (binary prefixes).
pub(crate) fn bytes_label(b: f64) -> String {
    const K: f64 = 1024.0;
    let (v, unit) = if b >= K * K * K {
        (b / (K * K * K), "G")
    } else if b >= K * K {
        (b / (K * K), "M")
    } else if b >= K {
        (b / K, "K")
    } else {
        (b, "")
    };
    format!("{}{unit}", trim(v))
}

/// A time given in microseconds, in the unit that keeps the number readable: s, ms or µs.
pub(crate) fn time_label(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", trim(us / 1e3))
    } else {
        format!("{} µs", trim(us))
    }
}

/// A rate given in bits per second, in Gbit/s from 1 Gbit/s up, in Mbit/s below.
pub(crate) fn bitrate_label(bits_per_s: f64) -> String {
    if bits_per_s >= 1e9 {
        format!("{} Gbit/s", trim(bits_per_s / 1e9))
    } else {
        format!("{} Mbit/s", trim(bits_per_s / 1e6))
    }
}

/// A seconds count in the unit that keeps it readable (the train plot's wall-time axis).
pub(crate) fn seconds_label(s: f64) -> String {
    time_label(s * 1e6)
}

/// A plain number (a loss): at most three decimals, no trailing zeros.
pub(crate) fn number_label(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:e}")
    } else {
        trim(v)
    }
}

/// `v` with at most three decimals and no trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_ticks_are_powers_of_two_thinned_to_ten() {
        let r = pow2_range([8.0, 1000.0].into_iter());
        assert_eq!(r, 8.0..1024.0);
        assert_eq!(
            pow2_ticks(&r),
            [8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]
        );
        // 8 B .. 128 MiB is 25 powers: every third is kept.
        let wide = pow2_ticks(&(8.0..(128u64 << 20) as f64));
        assert!(wide.len() <= 10, "{wide:?}");
        assert_eq!(wide.first(), Some(&8.0));
        assert!(wide.iter().all(|t| t.log2().fract() == 0.0));
        assert_eq!(pow2_range(std::iter::empty()), 1.0..2.0);
    }

    #[test]
    fn decades_span_the_data_and_ignore_non_positive_values() {
        let r = decade_range([3.0, 450.0, -1.0, f64::NAN, 0.0].into_iter());
        assert_eq!(r, 1.0..1000.0);
        assert_eq!(decade_ticks(&r), [1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(decade_range(std::iter::empty()), 1.0..10.0);
    }

    #[test]
    fn labels_carry_readable_units() {
        assert_eq!(bytes_label(8.0), "8");
        assert_eq!(bytes_label(1024.0), "1K");
        assert_eq!(bytes_label((128u64 << 20) as f64), "128M");
        assert_eq!(bytes_label((1u64 << 30) as f64), "1G");
        assert_eq!(time_label(10.0), "10 µs");
        assert_eq!(time_label(2500.0), "2.5 ms");
        assert_eq!(time_label(3e6), "3 s");
        assert_eq!(seconds_label(0.01), "10 ms");
        assert_eq!(number_label(0.1), "0.1");
        assert_eq!(number_label(1e-5), "1e-5");
        assert_eq!(bitrate_label(1e8), "100 Mbit/s");
        assert_eq!(bitrate_label(2.5e9), "2.5 Gbit/s");
        assert_eq!(bitrate_label(1e5), "0.1 Mbit/s");
    }
}
