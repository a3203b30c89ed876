//! The Moon as a place: sites on its surface and relay orbiters around it.
//!
//! The Moon is a sphere of radius [`MOON_RADIUS_KM`] oriented by the IAU WGCCRE rotation model
//! ([`super::moon_orientation`]): x towards selenographic 0°N 0°E (the mean sub-Earth point),
//! z the north pole, y = z × x (0°N 90°E). The real sub-Earth point wanders by the librations
//! (±8° in longitude, ±7° in latitude), so the Earth rises and sets for sites near the limb,
//! and the station-to-site range carries the libration (up to ~240 km of surface motion).
//! The spin axis is 1.5° from the ecliptic pole and 6.5–6.9° from the normal of the Moon's
//! orbit (the orbit is inclined 5.1° to the ecliptic on the other side: Cassini's laws).
//!
//! Relay orbiters are Keplerian (two-body, no Earth or Sun perturbation, no mascons) in a
//! Moon-centred inertial frame chosen by [`OrbiterFrame`]: by default the lunar equator at the
//! element epoch (the IAU pole then, x towards the ascending node of that equator on the ICRF
//! equator — GMAT's "BodyInertial" axes for the Moon), so an inclination of 90° is a true
//! polar orbit over the body-fixed poles; or, as before, axes parallel to the mean ecliptic
//! and equinox of date.

use super::moon::{mean_obliquity_rad, moon_position};
use super::moon_orientation::{
    Axes, Precession, body_axes_of_date, equator_axes_icrf, iau_moon_pole_and_meridian_deg,
};
use super::time::JulianDay;
use super::vector::{Vec3, segment_blocked_by_sphere};
use super::{MOON_MU_KM3_S2, MOON_RADIUS_KM, OrbitError, check_range};

/// The Moon's centre and body axes at one instant (geocentric frame of date).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoonFrame {
    /// Geocentric position of the Moon's centre, km.
    pub centre: Vec3,
    /// Selenographic 0°N 0°E (the mean sub-Earth point).
    pub x: Vec3,
    /// Selenographic 0°N 90°E.
    pub y: Vec3,
    /// Selenographic north pole (the spin axis).
    pub z: Vec3,
}

impl MoonFrame {
    /// The frame at `jd`: the lunar series for the centre, the IAU model for the axes.
    pub fn at(jd: JulianDay) -> Self {
        Self::from_parts(moon_position(jd).equatorial_km, body_axes_of_date(jd))
    }

    /// The frame from the Moon's centre and its body axes (both in the frame of date).
    pub fn from_parts(centre: Vec3, axes: Axes) -> Self {
        Self {
            centre,
            x: axes.x,
            y: axes.y,
            z: axes.z,
        }
    }

    /// The body axes.
    pub fn axes(&self) -> Axes {
        Axes {
            x: self.x,
            y: self.y,
            z: self.z,
        }
    }

    /// The body-fixed direction of selenographic (lat, lon), degrees.
    pub fn direction(&self, lat_deg: f64, lon_deg: f64) -> Vec3 {
        let (slat, clat) = lat_deg.to_radians().sin_cos();
        let (slon, clon) = lon_deg.to_radians().sin_cos();
        self.x * (clat * clon) + self.y * (clat * slon) + self.z * slat
    }

    /// The sub-Earth point (selenographic longitude east, latitude), degrees: the total
    /// geometric libration in longitude and latitude.
    pub fn sub_earth_deg(&self) -> (f64, f64) {
        super::moon_orientation::selenographic_deg(&self.axes(), -self.centre)
    }
}

/// A site on the lunar surface.
#[derive(Debug, Clone, PartialEq)]
pub struct LunarSite {
    /// Name for reports.
    pub name: String,
    /// Selenographic latitude, degrees north.
    pub lat_deg: f64,
    /// Selenographic longitude, degrees east.
    pub lon_deg: f64,
    /// Height above the mean sphere, km.
    pub alt_km: f64,
    /// Lowest elevation at which the site can work a target, degrees.
    pub mask_deg: f64,
}

impl LunarSite {
    /// A site, range-checked (latitude ±90°, longitude ±180°, altitude −10…20 km, mask
    /// 0…90°).
    pub fn new(
        name: &str,
        lat_deg: f64,
        lon_deg: f64,
        alt_km: f64,
        mask_deg: f64,
    ) -> Result<Self, OrbitError> {
        let what = |k: &str| format!("lunar site `{name}` {k}");
        check_range(&what("latitude"), lat_deg, -90.0, 90.0)?;
        check_range(&what("longitude"), lon_deg, -180.0, 180.0)?;
        check_range(&what("altitude_km"), alt_km, -10.0, 20.0)?;
        check_range(&what("elevation mask"), mask_deg, 0.0, 90.0)?;
        Ok(Self {
            name: name.to_string(),
            lat_deg,
            lon_deg,
            alt_km,
            mask_deg,
        })
    }

    /// Local vertical in `frame` (unit).
    pub fn up(&self, frame: &MoonFrame) -> Vec3 {
        frame.direction(self.lat_deg, self.lon_deg)
    }

    /// Geocentric position, km.
    pub fn position(&self, frame: &MoonFrame) -> Vec3 {
        frame.centre + self.up(frame) * (MOON_RADIUS_KM + self.alt_km)
    }

    /// Elevation of a geocentric point above the site's horizon, degrees.
    pub fn elevation_deg(&self, frame: &MoonFrame, target: Vec3) -> f64 {
        super::earth::elevation_deg(self.position(frame), self.up(frame), target)
    }

    /// Does the site see `target` at or above its mask?
    pub fn sees(&self, frame: &MoonFrame, target: Vec3) -> bool {
        self.elevation_deg(frame, target) >= self.mask_deg
    }

    /// Is the site on the hemisphere facing the Earth on average (the mean sub-Earth point
    /// within 90°)? Within ~10° of the limb the Earth still rises and sets.
    pub fn is_near_side(&self) -> bool {
        self.lat_deg.to_radians().cos() * self.lon_deg.to_radians().cos() > 0.0
    }
}

/// The Moon-centred inertial axes a relay orbiter's elements refer to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrbiterFrame {
    /// The lunar equator at the element epoch (IAU pole), x towards its ascending node on the
    /// ICRF equator; fixed in the ICRF, precessed to date. Profile key value
    /// `moon-equator` (the default).
    MoonEquator,
    /// Axes parallel to the mean ecliptic and equinox of date. Profile key value `ecliptic`.
    Ecliptic,
}

impl OrbiterFrame {
    /// The profile key value.
    pub fn key(self) -> &'static str {
        match self {
            Self::MoonEquator => "moon-equator",
            Self::Ecliptic => "ecliptic",
        }
    }

    /// Every accepted key value.
    pub const KEYS: [&'static str; 2] = ["moon-equator", "ecliptic"];

    /// The frame named by a profile key value.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "moon-equator" => Some(Self::MoonEquator),
            "ecliptic" => Some(Self::Ecliptic),
            _ => None,
        }
    }
}

/// A spacecraft on a Keplerian orbit around the Moon.
#[derive(Debug, Clone, PartialEq)]
pub struct LunarOrbiter {
    /// Name for reports.
    pub name: String,
    /// Semi-major axis, km.
    pub a_km: f64,
    /// Eccentricity, [0, 1).
    pub e: f64,
    /// Inclination to the reference plane of `frame`, radians.
    i: f64,
    /// Longitude of the ascending node, radians.
    raan: f64,
    /// Argument of periapsis, radians.
    argp: f64,
    /// Mean anomaly at `epoch`, radians.
    m0: f64,
    /// Epoch of `m0`.
    pub epoch: JulianDay,
    /// Mean motion, rad/s.
    n: f64,
    /// The frame of the elements.
    frame: OrbiterFrame,
    /// For [`OrbiterFrame::MoonEquator`]: its axes in the ICRF (J2000).
    equator_icrf: Axes,
}

/// Lowest periapsis altitude accepted, km (lunar mountains reach ~10.7 km).
pub const MIN_PERIAPSIS_ALT_KM: f64 = 10.0;
/// Largest semi-major axis accepted, km (the Moon's Hill sphere is ~60,000 km).
pub const MAX_SEMI_MAJOR_AXIS_KM: f64 = 40_000.0;

impl LunarOrbiter {
    /// An orbiter from classical elements (angles in degrees), validated: 0 ≤ e < 1, the
    /// periapsis at least [`MIN_PERIAPSIS_ALT_KM`] above the surface, the apoapsis inside
    /// [`MAX_SEMI_MAJOR_AXIS_KM`], inclination 0…180°, the other angles finite.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        a_km: f64,
        e: f64,
        i_deg: f64,
        raan_deg: f64,
        argp_deg: f64,
        m0_deg: f64,
        epoch: JulianDay,
    ) -> Result<Self, OrbitError> {
        let what = |k: &str| format!("orbiter `{name}` {k}");
        check_range(&what("eccentricity"), e, 0.0, 1.0 - 1e-9)?;
        check_range(
            &what("semi_major_axis_km"),
            a_km,
            MOON_RADIUS_KM,
            MAX_SEMI_MAJOR_AXIS_KM,
        )?;
        if a_km * (1.0 - e) < MOON_RADIUS_KM + MIN_PERIAPSIS_ALT_KM {
            return Err(OrbitError::Invalid {
                what: what("periapsis altitude_km"),
                value: a_km * (1.0 - e) - MOON_RADIUS_KM,
                why: "the orbit must clear the lunar surface by at least 10 km",
            });
        }
        if a_km * (1.0 + e) > MAX_SEMI_MAJOR_AXIS_KM {
            return Err(OrbitError::Invalid {
                what: what("apoapsis radius_km"),
                value: a_km * (1.0 + e),
                why: "beyond 40,000 km the Earth's pull makes a Keplerian lunar orbit meaningless",
            });
        }
        check_range(&what("inclination"), i_deg, 0.0, 180.0)?;
        for (k, v) in [
            ("raan", raan_deg),
            ("arg_periapsis", argp_deg),
            ("mean_anomaly", m0_deg),
        ] {
            check_range(&what(k), v, -360.0, 360.0)?;
        }
        Ok(Self {
            name: name.to_string(),
            a_km,
            e,
            i: i_deg.to_radians(),
            raan: raan_deg.to_radians(),
            argp: argp_deg.to_radians(),
            m0: m0_deg.to_radians(),
            epoch,
            n: (MOON_MU_KM3_S2 / a_km.powi(3)).sqrt(),
            frame: OrbiterFrame::MoonEquator,
            equator_icrf: {
                let (a, d, _) = iau_moon_pole_and_meridian_deg(epoch.tt());
                equator_axes_icrf(a.to_radians(), d.to_radians())
            },
        })
    }

    /// The same orbiter with its elements referred to `frame`.
    pub fn in_frame(mut self, frame: OrbiterFrame) -> Self {
        self.frame = frame;
        self
    }

    /// The frame of the elements.
    pub fn frame(&self) -> OrbiterFrame {
        self.frame
    }

    /// A circular orbit at `alt_km` above the mean sphere.
    pub fn circular(
        name: &str,
        alt_km: f64,
        i_deg: f64,
        raan_deg: f64,
        m0_deg: f64,
        epoch: JulianDay,
    ) -> Result<Self, OrbitError> {
        Self::new(
            name,
            MOON_RADIUS_KM + alt_km,
            0.0,
            i_deg,
            raan_deg,
            0.0,
            m0_deg,
            epoch,
        )
    }

    /// Orbital period, seconds.
    pub fn period_s(&self) -> f64 {
        std::f64::consts::TAU / self.n
    }

    /// Position relative to the Moon's centre at `jd`, in the frame of date (equatorial
    /// axes), km.
    pub fn moon_relative(&self, jd: JulianDay) -> Vec3 {
        let m = (self.m0 + self.n * jd.seconds_since(self.epoch)).rem_euclid(std::f64::consts::TAU);
        // Kepler's equation by Newton's method (converges in a few steps for e < 1).
        let mut ecc_anom = if self.e > 0.8 {
            std::f64::consts::PI
        } else {
            m
        };
        for _ in 0..50 {
            let f = ecc_anom - self.e * ecc_anom.sin() - m;
            let step = f / (1.0 - self.e * ecc_anom.cos());
            ecc_anom -= step;
            if step.abs() < 1e-13 {
                break;
            }
        }
        let perifocal = Vec3::new(
            self.a_km * (ecc_anom.cos() - self.e),
            self.a_km * (1.0 - self.e * self.e).sqrt() * ecc_anom.sin(),
            0.0,
        );
        let in_plane = perifocal
            .rotate_z(self.argp)
            .rotate_x(self.i)
            .rotate_z(self.raan);
        match self.frame {
            OrbiterFrame::Ecliptic => in_plane.rotate_x(mean_obliquity_rad(jd.tt_centuries())),
            OrbiterFrame::MoonEquator => {
                Precession::to_date(jd).apply(self.equator_icrf.combine(in_plane))
            }
        }
    }

    /// Geocentric position at `jd` given the Moon's frame at that instant, km.
    pub fn position(&self, jd: JulianDay, frame: &MoonFrame) -> Vec3 {
        frame.centre + self.moon_relative(jd)
    }
}

/// Is the straight line between two geocentric points blocked by the Moon?
pub fn blocked_by_moon(a: Vec3, b: Vec3, frame: &MoonFrame) -> bool {
    segment_blocked_by_sphere(a, b, frame.centre, MOON_RADIUS_KM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> JulianDay {
        JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap()
    }

    /// The body frame is orthonormal, x points within the libration (< 10°) of the Earth,
    /// and the spin axis is 6.5–6.9° from the orbit normal (the old model took them as one).
    #[test]
    fn frame_faces_the_earth_within_the_libration() {
        for k in 0..(30 * 4) {
            let jd = epoch().plus_seconds(f64::from(k) * 6.0 * 3600.0);
            let f = MoonFrame::at(jd);
            for v in [f.x, f.y, f.z] {
                assert!((v.norm() - 1.0).abs() < 1e-9);
            }
            assert!(f.x.dot(f.y).abs() < 1e-9 && f.x.dot(f.z).abs() < 1e-9);
            let to_earth = (-f.centre).unit();
            let off = f.x.dot(to_earth).acos().to_degrees();
            assert!(off < 10.5, "{off}");
            let later = moon_position(jd.plus_seconds(60.0)).equatorial_km;
            let normal = f.centre.cross(later - f.centre).unit();
            let tilt = normal.dot(f.z).acos().to_degrees();
            assert!((6.4..7.0).contains(&tilt), "{tilt}");
        }
    }

    /// Meeus, Astronomical Algorithms, example 53.a (1992 April 12, 0h TD): the total
    /// libration l = −1.23°, b = +4.20° (optical −1.206°/+4.194° plus physical
    /// −0.025°/+0.006°). Meeus computes the apparent (light-time, aberration, nutation)
    /// sub-Earth point; ours is geometric and the IAU model is a different fit of the same
    /// physics: agreement to 0.05° is expected.
    #[test]
    fn libration_of_meeus_example_53a() {
        let f = MoonFrame::at(JulianDay::from_tt(2_448_724.5));
        let (l, b) = f.sub_earth_deg();
        eprintln!("53.a: l = {l:.4}°, b = {b:.4}°");
        assert!((l - -1.23).abs() < 0.05, "l = {l}");
        assert!((b - 4.20).abs() < 0.05, "b = {b}");
    }

    /// Near side (mean sub-Earth point) sees the Earth's centre within the libration of the
    /// zenith, every sample; the far side (180°E, and 120°E 30°S) never sees it over a month.
    #[test]
    fn far_side_never_sees_the_earth() {
        let near = LunarSite::new("near", 0.0, 0.0, 0.0, 5.0).unwrap();
        let far = LunarSite::new("far", 0.0, 180.0, 0.0, 0.0).unwrap();
        let far2 = LunarSite::new("far2", -30.0, 120.0, 0.0, 0.0).unwrap();
        assert!(near.is_near_side() && !far.is_near_side() && !far2.is_near_side());
        for k in 0..(30 * 24) {
            let jd = epoch().plus_seconds(k as f64 * 3600.0);
            let f = MoonFrame::at(jd);
            let earth = Vec3::default();
            assert!(near.elevation_deg(&f, earth) > 79.0);
            assert!(near.sees(&f, earth));
            assert!(!far.sees(&f, earth));
            assert!(!far2.sees(&f, earth));
            // Even the Earth's limb: a point one Earth radius off-centre stays far below.
            assert!(far.elevation_deg(&f, Vec3::new(0.0, 0.0, 6378.0)) < -70.0);
        }
    }

    #[test]
    fn orbiter_circles_at_its_radius_with_its_period() {
        let o = LunarOrbiter::circular("relay", 100.0, 0.0, 0.0, 0.0, epoch()).unwrap();
        let p = o.period_s();
        assert!((p / 60.0 - 117.8).abs() < 0.5, "{}", p / 60.0);
        let r0 = o.moon_relative(epoch());
        let r1 = o.moon_relative(epoch().plus_seconds(p));
        assert!((r0.norm() - (MOON_RADIUS_KM + 100.0)).abs() < 1e-6);
        assert!((r0 - r1).norm() < 1e-3);
        let e = LunarOrbiter::new("ell", 6000.0, 0.6, 90.0, 10.0, 20.0, 30.0, epoch()).unwrap();
        let peri = 6000.0 * 0.4;
        let apo = 6000.0 * 1.6;
        for k in 0..100 {
            let r = e
                .moon_relative(epoch().plus_seconds(k as f64 * 300.0))
                .norm();
            assert!(r >= peri - 1e-6 && r <= apo + 1e-6);
        }
    }

    #[test]
    fn invalid_orbits_are_refused_with_the_parameter_named() {
        let ep = epoch();
        let cases = [
            (
                LunarOrbiter::new("r", 1000.0, 0.0, 0.0, 0.0, 0.0, 0.0, ep),
                "semi_major_axis_km",
            ),
            (
                LunarOrbiter::new("r", 1737.4, 0.0, 0.0, 0.0, 0.0, 0.0, ep),
                "periapsis",
            ),
            (
                LunarOrbiter::new("r", 3000.0, 1.2, 0.0, 0.0, 0.0, 0.0, ep),
                "eccentricity",
            ),
            (
                LunarOrbiter::new("r", 3000.0, 0.5, 0.0, 0.0, 0.0, 0.0, ep),
                "periapsis",
            ),
            (
                LunarOrbiter::new("r", 3000.0, 0.0, 200.0, 0.0, 0.0, 0.0, ep),
                "inclination",
            ),
            (
                LunarOrbiter::new("r", 3000.0, 0.0, 0.0, f64::NAN, 0.0, 0.0, ep),
                "raan",
            ),
            (
                LunarOrbiter::new("r", 30_000.0, 0.5, 0.0, 0.0, 0.0, 0.0, ep),
                "apoapsis",
            ),
        ];
        for (res, key) in cases {
            let e = res.unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("orbiter `r`"), "{e}");
        }
    }

    /// A low equatorial orbit (Earth within ~5° of its plane) spends 35–45 % of its time
    /// behind the Moon as seen from the Earth's centre (the arc 2·asin(R/r) gives 39 % at
    /// 100 km); a polar orbit whose plane faces the Earth would spend less.
    #[test]
    fn relay_occultation_fraction_for_a_low_orbit() {
        let o = LunarOrbiter::circular("relay", 100.0, 0.0, 0.0, 0.0, epoch()).unwrap();
        let n = 20_000;
        let mut hidden = 0;
        for k in 0..n {
            // Sample 10 days every 43.2 s.
            let jd = epoch().plus_seconds(k as f64 * 43.2);
            let f = MoonFrame::at(jd);
            let p = o.position(jd, &f);
            hidden += usize::from(blocked_by_moon(p, Vec3::default(), &f));
        }
        let frac = hidden as f64 / n as f64;
        let expected =
            2.0 * (MOON_RADIUS_KM / (MOON_RADIUS_KM + 100.0)).asin() / std::f64::consts::TAU;
        assert!((0.35..0.45).contains(&frac), "{frac}");
        assert!((frac - expected).abs() < 0.02, "{frac} vs {expected}");
    }
}
