//! Atmospheric refraction at a ground station: how much the air lifts an object's apparent
//! elevation above its geometric one, for profiles that turn it on (`[geometry] refraction =
//! true`; off by default, so the elevation mask compares with geometric elevation).
//!
//! Formulas (Meeus, Astronomical Algorithms, ch. 16), for the standard atmosphere of 1010 hPa
//! and 10 °C at the station (no pressure or temperature keys: weather is out of scope):
//! - Sæmundsson (Sky & Telescope 1986): refraction for a true (geometric) elevation h,
//!   R = 1.02′ / tan(h + 10.3° / (h + 5.11°)) — what the geometry needs;
//! - Bennett (J. Navigation 1982): refraction for an apparent elevation h₀,
//!   R = 1′ / tan(h₀ + 7.31° / (h₀ + 4.4°)) — the almanac's inverse, used in tests.
//!
//! Both are ~34′ at the horizon and agree to ~0.1′. Below a true elevation of −1.5° (where
//! the formulas lose meaning: the object is below any horizon by far) the value at −1.5° is
//! used, so the result stays finite and monotone.

/// Lowest true elevation the formula is evaluated at, degrees.
const LOWEST_TRUE_ELEVATION_DEG: f64 = -1.5;

/// Refraction (apparent − true elevation) for a true elevation `h_deg`, degrees
/// (Sæmundsson).
pub fn refraction_for_true_deg(h_deg: f64) -> f64 {
    let h = h_deg.clamp(LOWEST_TRUE_ELEVATION_DEG, 90.0);
    let arcmin = 1.02 / (h + 10.3 / (h + 5.11)).to_radians().tan();
    // At the zenith the formula gives −0.0049′ (rounding of its constants): clamp at 0.
    arcmin.max(0.0) / 60.0
}

/// Refraction for an apparent elevation `h0_deg`, degrees (Bennett).
pub fn refraction_for_apparent_deg(h0_deg: f64) -> f64 {
    let h0 = h0_deg.clamp(-1.0, 90.0);
    let arcmin = 1.0 / (h0 + 7.31 / (h0 + 4.4)).to_radians().tan();
    arcmin.max(0.0) / 60.0
}

/// Apparent elevation of an object at true elevation `h_deg`, degrees.
pub fn apparent_elevation_deg(h_deg: f64) -> f64 {
    h_deg + refraction_for_true_deg(h_deg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the apparent horizon the standard refraction is 34′ (the almanac's value for
    /// sunrise/sunset computations; Bennett gives 34.5′); an object whose true elevation
    /// is −0.575° appears on the horizon.
    #[test]
    fn refraction_at_the_horizon_is_about_34_arcmin() {
        let r0 = refraction_for_apparent_deg(0.0) * 60.0;
        assert!((r0 - 34.5).abs() < 0.2, "{r0}");
        let h_true = -r0 / 60.0;
        let apparent = apparent_elevation_deg(h_true);
        assert!(apparent.abs() * 60.0 < 0.5, "{apparent}");
        // Sæmundsson at true 0° (29′) and at 10° (5.3′), Meeus ch. 16.
        let r_true0 = refraction_for_true_deg(0.0) * 60.0;
        assert!((28.5..29.5).contains(&r_true0), "{r_true0}");
        let r10 = refraction_for_true_deg(10.0) * 60.0;
        assert!((5.1..5.5).contains(&r10), "{r10}");
    }

    /// The two formulas are inverses of each other to ~0.1′ from the horizon up.
    #[test]
    fn saemundsson_and_bennett_agree() {
        for k in 0..=90 {
            let h0 = f64::from(k);
            let h = h0 - refraction_for_apparent_deg(h0);
            let back = apparent_elevation_deg(h);
            assert!((back - h0).abs() * 60.0 < 0.1, "{h0}: {back}");
        }
    }

    #[test]
    fn refraction_is_finite_and_monotone_everywhere() {
        let mut prev = f64::INFINITY;
        for k in -900..=900 {
            let h = f64::from(k) / 10.0;
            let r = refraction_for_true_deg(h);
            assert!(r.is_finite() && r >= 0.0 && r <= prev + 1e-12, "{h}: {r}");
            prev = r;
        }
        assert!(apparent_elevation_deg(f64::NAN).is_nan());
    }
}
