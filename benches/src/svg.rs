//! The pieces the benchmarks' hand-written SVG plots share: a logarithmic axis fitted to the
//! data, and escaping for text drawn into the SVG.

/// A base-10 logarithmic axis spanning whole decades around the data.
pub(crate) struct LogAxis {
    /// log10 of the axis' low end.
    pub(crate) lo: f64,
    /// log10 of the axis' high end.
    pub(crate) hi: f64,
}

impl LogAxis {
    /// The decades that hold every positive finite value (0..1 when there is none).
    pub(crate) fn fit(values: impl Iterator<Item = f64>) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Self { lo: 0.0, hi: 1.0 };
        }
        let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
        Self {
            lo,
            hi: if hi <= lo { lo + 1.0 } else { hi },
        }
    }

    /// Position of `v` along the axis, in [0, 1].
    pub(crate) fn frac(&self, v: f64) -> f64 {
        ((v.max(1e-300).log10() - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }
}

/// `s` with the characters SVG text may not hold escaped.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_spans_whole_decades_and_clamps() {
        let a = LogAxis::fit([3.0, 450.0, -1.0, f64::NAN].into_iter());
        assert_eq!((a.lo, a.hi), (0.0, 3.0));
        assert!((a.frac(10.0) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(a.frac(1e9), 1.0);
        assert_eq!(a.frac(0.0), 0.0);
        let empty = LogAxis::fit(std::iter::empty());
        assert_eq!((empty.lo, empty.hi), (0.0, 1.0));
        assert_eq!(esc("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
