//! Satellites leaving the Moon on hyperbolic escape — the mass-driver swarm: compute
//! satellites thrown horizontally off a lunar base by an electromagnetic launcher with a
//! chosen hyperbolic excess speed `v_inf`, so that their distance (and light time) to the base
//! and to the Earth grows day by day.
//!
//! Model: two-body hyperbola around the Moon only, periapsis at the launch point (a horizontal
//! launch), launched towards local east at the base, the orbit's orientation fixed in inertial
//! space at launch. The Earth's and Sun's gravity are ignored: beyond the Moon's Hill sphere
//! (~60,000 km, reached within hours to a day) the real path bends, so read the delays as the
//! right order of growth (≈ v_inf × t), not an ephemeris. Before launch a satellite sits at
//! the base.

use super::lunar::{LunarSite, MoonFrame};
use super::time::JulianDay;
use super::vector::Vec3;
use super::{MOON_MU_KM3_S2, MOON_RADIUS_KM, OrbitError, check_range};

/// One satellite's escape.
#[derive(Debug, Clone, PartialEq)]
pub struct EscapeTrajectory {
    /// Name for reports.
    pub name: String,
    /// The launch site.
    pub base: LunarSite,
    /// Hyperbolic excess speed, km/s.
    pub v_inf_km_s: f64,
    /// Launch instant.
    pub launch: JulianDay,
    /// Periapsis radius (the launch point), km.
    r_p: f64,
    /// Eccentricity (> 1).
    e: f64,
    /// |a|, km.
    a_abs: f64,
    /// Mean motion of the hyperbola, rad/s.
    n: f64,
    /// Inertial unit vectors at launch: towards periapsis, and along the launch velocity.
    p_hat: Vec3,
    q_hat: Vec3,
}

impl EscapeTrajectory {
    /// A satellite launched from `base` at `launch` with excess speed `v_inf_km_s`
    /// (0.05…20 km/s).
    pub fn new(
        name: &str,
        base: LunarSite,
        v_inf_km_s: f64,
        launch: JulianDay,
    ) -> Result<Self, OrbitError> {
        check_range(
            &format!("escape `{name}` v_inf_km_s"),
            v_inf_km_s,
            0.05,
            20.0,
        )?;
        let frame = MoonFrame::at(launch);
        let up = base.up(&frame);
        // Local east; at a pole, any horizontal direction (use the body y axis).
        let east = frame.z.cross(up);
        let q_hat = if east.norm() > 1e-9 {
            east.unit()
        } else {
            frame.y
        };
        let r_p = MOON_RADIUS_KM + base.alt_km;
        let a_abs = MOON_MU_KM3_S2 / (v_inf_km_s * v_inf_km_s);
        let e = 1.0 + r_p / a_abs;
        Ok(Self {
            name: name.to_string(),
            base,
            v_inf_km_s,
            launch,
            r_p,
            e,
            a_abs,
            n: (MOON_MU_KM3_S2 / a_abs.powi(3)).sqrt(),
            p_hat: up,
            q_hat,
        })
    }

    /// Launch speed at the surface (v_inf² + escape speed²)^½, km/s.
    pub fn launch_speed_km_s(&self) -> f64 {
        (self.v_inf_km_s.powi(2) + 2.0 * MOON_MU_KM3_S2 / self.r_p).sqrt()
    }

    /// Geocentric position at `jd` given the Moon's frame then, km.
    pub fn position(&self, jd: JulianDay, frame: &MoonFrame) -> Vec3 {
        let dt = jd.seconds_since(self.launch);
        if dt <= 0.0 {
            return self.base.position(frame);
        }
        // Hyperbolic Kepler equation M = e sinh H − H, by Newton from a safe start.
        let m = self.n * dt;
        let mut h = (2.0 * m / self.e + 1.0).ln().max(m.cbrt().min(m));
        for _ in 0..100 {
            let f = self.e * h.sinh() - h - m;
            let step = f / (self.e * h.cosh() - 1.0);
            h -= step;
            if step.abs() < 1e-12 * (1.0 + h.abs()) {
                break;
            }
        }
        let x = self.a_abs * (self.e - h.cosh());
        let y = self.a_abs * (self.e * self.e - 1.0).sqrt() * h.sinh();
        frame.centre + self.p_hat * x + self.q_hat * y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_recedes_at_about_v_inf() {
        let ep = JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap();
        let base = LunarSite::new("base", 0.0, 30.0, 0.0, 0.0).unwrap();
        let s = EscapeTrajectory::new("s1", base.clone(), 2.0, ep).unwrap();
        assert!((s.launch_speed_km_s() - (4.0 + 2.0 * 4902.8 / 1737.4f64).sqrt()).abs() < 1e-3);
        let f0 = MoonFrame::at(ep);
        assert!((s.position(ep, &f0) - base.position(&f0)).norm() < 1e-6);
        let dist = |days: f64| {
            let jd = ep.plus_seconds(days * 86_400.0);
            let f = MoonFrame::at(jd);
            (s.position(jd, &f) - f.centre).norm()
        };
        // Just after launch it is at the surface, then it climbs; after 10 days it has gone
        // about v_inf × t (plus the log term of the hyperbola).
        assert!((dist(1e-6) - MOON_RADIUS_KM).abs() < 1.0);
        let d10 = dist(10.0);
        assert!(
            d10 > 2.0 * 864_000.0 && d10 < 2.0 * 864_000.0 * 1.1,
            "{d10}"
        );
        assert!(dist(5.0) < d10);
        assert!(EscapeTrajectory::new("s", base, 0.0, ep).is_err());
    }
}
