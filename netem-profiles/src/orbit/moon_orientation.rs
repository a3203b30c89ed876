//! The Moon's orientation: the IAU WGCCRE rotation model of the Moon and the precession that
//! carries it (and any J2000-referred frame) into the orbit module's mean equator and equinox
//! of date.
//!
//! Rotation model: Archinal et al., "Report of the IAU Working Group on Cartographic
//! Coordinates and Rotational Elements: 2015", Celest. Mech. Dyn. Astr. 130:22 (2018), table 2
//! (unchanged from the 2009 report, Celest. Mech. Dyn. Astr. 109:101–135 (2011)): the pole's
//! right ascension α₀ and declination δ₀ in the ICRF and the prime meridian angle W, each with
//! the periodic terms in the arguments E1…E13. The prime meridian is the mean-Earth direction,
//! so the sub-Earth point is at selenographic (0°, 0°) on average and moves by the optical and
//! physical librations (±8° in longitude, ±7° in latitude). The report quotes this model as an
//! approximation of the DE403 lunar mean-Earth frame to about 150 m on the surface; ICRF and
//! the FK5 J2000 mean equator of Meeus' precession differ by ~20 mas (≈ 0.2 m on the Moon).
//!
//! Precession: IAU 1976 angles ζ, z, θ from J2000 (Meeus, Astronomical Algorithms, eq. 21.3).

use super::time::{J2000, JulianDay};
use super::vector::Vec3;

/// Orthonormal axes given by their components in some frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axes {
    /// First axis.
    pub x: Vec3,
    /// Second axis.
    pub y: Vec3,
    /// Third axis (`x × y`).
    pub z: Vec3,
}

impl Axes {
    /// The vector with components `v` along these axes.
    pub fn combine(&self, v: Vec3) -> Vec3 {
        self.x * v.x + self.y * v.y + self.z * v.z
    }

    /// The components of `v` along these axes.
    pub fn components(&self, v: Vec3) -> Vec3 {
        Vec3::new(v.dot(self.x), v.dot(self.y), v.dot(self.z))
    }
}

/// The IAU pole and prime meridian of the Moon at TT Julian Day `jde`: (α₀, δ₀, W), degrees,
/// α₀ and δ₀ in the ICRF.
pub fn iau_moon_pole_and_meridian_deg(jde: f64) -> (f64, f64, f64) {
    let d = jde - J2000;
    let t = d / 36_525.0;
    let e = |c: f64, rate: f64| (c + rate * d).rem_euclid(360.0).to_radians();
    let e1 = e(125.045, -0.052_992_1);
    let e2 = e(250.089, -0.105_984_2);
    let e3 = e(260.008, 13.012_000_9);
    let e4 = e(176.625, 13.340_715_4);
    let e5 = e(357.529, 0.985_600_3);
    let e6 = e(311.589, 26.405_708_4);
    let e7 = e(134.963, 13.064_993_0);
    let e8 = e(276.617, 0.328_714_6);
    let e9 = e(34.226, 1.748_487_7);
    let e10 = e(15.134, -0.158_976_3);
    let e11 = e(119.743, 0.003_609_6);
    let e12 = e(239.961, 0.164_357_3);
    let e13 = e(25.053, 12.959_008_8);
    let alpha = 269.9949 + 0.0031 * t - 3.8787 * e1.sin() - 0.1204 * e2.sin() + 0.0700 * e3.sin()
        - 0.0172 * e4.sin()
        + 0.0072 * e6.sin()
        - 0.0052 * e10.sin()
        + 0.0043 * e13.sin();
    let delta = 66.5392 + 0.0130 * t + 1.5419 * e1.cos() + 0.0239 * e2.cos() - 0.0278 * e3.cos()
        + 0.0068 * e4.cos()
        - 0.0029 * e6.cos()
        + 0.0009 * e7.cos()
        + 0.0008 * e10.cos()
        - 0.0009 * e13.cos();
    // 13.17635815 d − 1.4e-12 d²: reduce the large term first to keep precision.
    let spin = (13.176_358_15 * d).rem_euclid(360.0) - 1.4e-12 * d * d;
    let w = 38.3213 + spin + 3.5610 * e1.sin() + 0.1208 * e2.sin() - 0.0642 * e3.sin()
        + 0.0158 * e4.sin()
        + 0.0252 * e5.sin()
        - 0.0066 * e6.sin()
        - 0.0047 * e7.sin()
        - 0.0046 * e8.sin()
        + 0.0028 * e9.sin()
        + 0.0052 * e10.sin()
        + 0.0040 * e11.sin()
        + 0.0019 * e12.sin()
        - 0.0044 * e13.sin();
    (alpha, delta, w.rem_euclid(360.0))
}

/// The Moon's equator axes in the ICRF for a pole (α₀, δ₀), radians: x towards the ascending
/// node Q of the lunar equator on the ICRF equator (right ascension α₀ + 90°), z the pole,
/// y = z × x.
pub fn equator_axes_icrf(alpha: f64, delta: f64) -> Axes {
    let (sa, ca) = alpha.sin_cos();
    let (sd, cd) = delta.sin_cos();
    let z = Vec3::new(cd * ca, cd * sa, sd);
    let x = Vec3::new(-sa, ca, 0.0);
    Axes {
        x,
        y: z.cross(x),
        z,
    }
}

/// The Moon's body-fixed (mean-Earth / IAU) axes at TT Julian Day `jde`, in the ICRF: x
/// towards selenographic 0°N 0°E, y towards 0°N 90°E, z the north pole.
pub fn body_axes_icrf(jde: f64) -> Axes {
    let (a, d, w) = iau_moon_pole_and_meridian_deg(jde);
    let eq = equator_axes_icrf(a.to_radians(), d.to_radians());
    let (sw, cw) = w.to_radians().sin_cos();
    Axes {
        x: eq.x * cw + eq.y * sw,
        y: eq.y * cw - eq.x * sw,
        z: eq.z,
    }
}

/// Precession from the J2000 mean equator and equinox to the mean equator and equinox of
/// the date `t` (TT Julian centuries since J2000): IAU 1976 angles (Meeus eq. 21.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Precession {
    zeta: f64,
    z: f64,
    theta: f64,
}

impl Precession {
    /// The precession to the date of `jd`.
    pub fn to_date(jd: JulianDay) -> Self {
        let t = jd.tt_centuries();
        let arcsec =
            |c1: f64, c2: f64, c3: f64| ((c1 + (c2 + c3 * t) * t) * t / 3600.0).to_radians();
        Self {
            zeta: arcsec(2306.2181, 0.301_88, 0.017_998),
            z: arcsec(2306.2181, 1.094_68, 0.018_203),
            theta: arcsec(2004.3109, -0.426_65, -0.041_833),
        }
    }

    /// `v` (J2000 components) in the mean equator and equinox of date.
    pub fn apply(&self, v: Vec3) -> Vec3 {
        v.rotate_z(self.zeta).rotate_y(-self.theta).rotate_z(self.z)
    }

    /// Every axis of `axes` (J2000 components) in the frame of date.
    pub fn apply_axes(&self, axes: &Axes) -> Axes {
        Axes {
            x: self.apply(axes.x),
            y: self.apply(axes.y),
            z: self.apply(axes.z),
        }
    }
}

/// The Moon's body-fixed axes at `jd` (UTC) in the mean equator and equinox of date.
pub fn body_axes_of_date(jd: JulianDay) -> Axes {
    Precession::to_date(jd).apply_axes(&body_axes_icrf(jd.tt()))
}

/// Selenographic (longitude east, latitude) of the direction `dir` given in the frame in
/// which `body` is expressed, degrees; longitude in (−180, 180].
pub fn selenographic_deg(body: &Axes, dir: Vec3) -> (f64, f64) {
    let c = body.components(dir.unit());
    (
        c.y.atan2(c.x).to_degrees(),
        c.z.clamp(-1.0, 1.0).asin().to_degrees(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ra_dec(v: Vec3) -> (f64, f64) {
        (
            v.y.atan2(v.x).to_degrees().rem_euclid(360.0),
            v.z.asin().to_degrees(),
        )
    }

    /// Meeus example 21.b: θ Persei from J2000 to 2028 Nov 13.19 TD (JDE 2462088.69), proper
    /// motion applied first (+0.03425 s and −0.0895″ a year, 28.86705 years): α = 2h46m11.331s,
    /// δ = +49°20′54.54″.
    #[test]
    fn precession_of_meeus_example_21b() {
        let years: f64 = 28.867_05;
        let alpha0: f64 = (2.0 + 44.0 / 60.0 + (11.986 + 0.034_25 * years) / 3600.0) * 15.0;
        let delta0: f64 = 49.0 + 13.0 / 60.0 + (42.48 - 0.0895 * years) / 3600.0;
        let v = Vec3::from_spherical(alpha0.to_radians(), delta0.to_radians(), 1.0);
        let p = Precession::to_date(JulianDay::from_tt(2_462_088.69));
        let (a, d) = ra_dec(p.apply(v));
        let want_a = (2.0 + 46.0 / 60.0 + 11.331 / 3600.0) * 15.0;
        let want_d = 49.0 + 20.0 / 60.0 + 54.54 / 3600.0;
        assert!(
            (a - want_a).abs() * 3600.0 < 0.05 * 15.0,
            "α {a} vs {want_a}"
        );
        assert!((d - want_d).abs() * 3600.0 < 0.05, "δ {d} vs {want_d}");
    }

    #[test]
    fn body_axes_are_orthonormal_and_right_handed() {
        for k in 0..50 {
            let jd = JulianDay::from_tt(2_461_000.5 + f64::from(k) * 37.3);
            let b = body_axes_of_date(jd);
            for v in [b.x, b.y, b.z] {
                assert!((v.norm() - 1.0).abs() < 1e-12);
            }
            assert!(b.x.dot(b.y).abs() < 1e-12 && b.x.dot(b.z).abs() < 1e-12);
            assert!((b.x.cross(b.y) - b.z).norm() < 1e-12);
        }
    }

    /// The pole of the IAU model stays 1.5–1.6° from the ecliptic pole (the Cassini
    /// inclination I = 1.543°, Meeus ch. 53), and W advances one turn per sidereal month.
    #[test]
    fn pole_is_the_cassini_pole_and_w_turns_monthly() {
        let eps = super::super::moon::mean_obliquity_rad(0.0);
        let ecliptic_pole = Vec3::new(0.0, -eps.sin(), eps.cos());
        for k in 0..200 {
            let jde = J2000 + f64::from(k) * 36.5;
            let (a, d, _) = iau_moon_pole_and_meridian_deg(jde);
            let pole = Vec3::from_spherical(a.to_radians(), d.to_radians(), 1.0);
            let tilt = pole.dot(ecliptic_pole).acos().to_degrees();
            assert!((1.50..1.60).contains(&tilt), "{jde}: {tilt}");
        }
        let (_, _, w0) = iau_moon_pole_and_meridian_deg(J2000);
        let (_, _, w1) = iau_moon_pole_and_meridian_deg(J2000 + 27.321_661);
        assert!((w1 - w0).abs() < 0.5, "{w0} {w1}");
    }
}
