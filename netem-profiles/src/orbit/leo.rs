//! LEO satellites from two-line element sets, propagated with SGP4 (the `sgp4` crate, in its
//! AFSPC-compatibility mode: WGS-72 constants, as TLEs are fitted with), and the geometry
//! between them: range, and the Earth blocking the line of sight.
//!
//! SGP4 gives positions in TEME (true equator, mean equinox of the epoch); we treat it as the
//! orbit module's frame of date, and ground stations are turned into it by GMST — the standard
//! TEME→Earth-fixed rotation without polar motion.

use super::time::{J2000, JulianDay};
use super::vector::{Vec3, segment_blocked_by_sphere};
use super::{EARTH_RADIUS_KM, OrbitError};

/// A satellite ready to propagate.
#[derive(Debug, Clone)]
pub struct LeoSatellite {
    /// Name for reports.
    pub name: String,
    /// The TLE's epoch.
    pub epoch: JulianDay,
    constants: sgp4::Constants,
}

impl LeoSatellite {
    /// Parses and initialises a TLE (checksums, field formats and the orbit itself are
    /// checked by SGP4's parser and initialiser; their message is kept).
    pub fn from_tle(name: &str, line1: &str, line2: &str) -> Result<Self, OrbitError> {
        let tle_err = |why: String| OrbitError::Tle {
            name: name.to_string(),
            why,
        };
        let elements = sgp4::Elements::from_tle(
            Some(name.to_string()),
            line1.trim_end().as_bytes(),
            line2.trim_end().as_bytes(),
        )
        .map_err(|e| tle_err(e.to_string()))?;
        if elements.mean_motion < 11.25 {
            return Err(tle_err(format!(
                "mean motion {} rev/day is below 11.25 (period over 128 min): not a LEO orbit",
                elements.mean_motion
            )));
        }
        let constants = sgp4::Constants::from_elements_afspc_compatibility_mode(&elements)
            .map_err(|e| tle_err(e.to_string()))?;
        let epoch = JulianDay(J2000 + elements.epoch() * 365.25);
        Ok(Self {
            name: name.to_string(),
            epoch,
            constants,
        })
    }

    /// Position and velocity (km, km/s) at `minutes` after the TLE epoch, TEME.
    pub fn propagate_minutes(&self, minutes: f64) -> Result<(Vec3, Vec3), OrbitError> {
        let p = self
            .constants
            .propagate_afspc_compatibility_mode(sgp4::MinutesSinceEpoch(minutes))
            .map_err(|e| OrbitError::Propagation {
                name: self.name.clone(),
                minutes,
                why: e.to_string(),
            })?;
        let [x, y, z] = p.position;
        let [vx, vy, vz] = p.velocity;
        Ok((Vec3::new(x, y, z), Vec3::new(vx, vy, vz)))
    }

    /// Geocentric position at `jd`, km.
    pub fn position(&self, jd: JulianDay) -> Result<Vec3, OrbitError> {
        Ok(self
            .propagate_minutes(jd.seconds_since(self.epoch) / 60.0)?
            .0)
    }
}

/// Is the line between two points blocked by the Earth, counting the atmosphere up to
/// `grazing_alt_km` as opaque (optical links are lost in the lower atmosphere well before the
/// solid Earth gets in the way; 80–100 km is a common choice)?
pub fn blocked_by_earth(a: Vec3, b: Vec3, grazing_alt_km: f64) -> bool {
    segment_blocked_by_sphere(a, b, Vec3::default(), EARTH_RADIUS_KM + grazing_alt_km)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vallado, Crawford, Hujsak, Kelso, "Revisiting Spacetrack Report #3" (AIAA 2006-6753),
    // verification case 00005 (tcppver.out).
    const L1: &str = "1 00005U 58002B   00179.78495062  .00000023  00000-0  28098-4 0  4753";
    const L2: &str = "2 00005  34.2682 348.7242 1859667 331.7664  19.3264 10.82419157413667";

    #[test]
    fn sgp4_matches_the_vallado_verification_vectors() {
        // 00005 has a 2.6 h period: not LEO by our mean-motion rule, so build it directly.
        let elements = sgp4::Elements::from_tle(None, L1.as_bytes(), L2.as_bytes()).unwrap();
        let c = sgp4::Constants::from_elements_afspc_compatibility_mode(&elements).unwrap();
        let sat = LeoSatellite {
            name: "00005".into(),
            epoch: JulianDay(J2000 + elements.epoch() * 365.25),
            constants: c,
        };
        let expected = [
            (
                0.0,
                [7022.46529266, -1400.08296755, 0.03995155],
                [1.893841015, 6.405893759, 4.534807250],
            ),
            (
                360.0,
                [-7154.03120202, -3783.17682504, -3536.19412294],
                [4.741887409, -4.151817765, -2.093935425],
            ),
            (
                720.0,
                [-7134.59340119, 6531.68641334, 3260.27186483],
                [-4.113793027, -2.911922039, -2.557327851],
            ),
            (
                1080.0,
                [5568.53901181, 4492.06992591, 3863.87641983],
                [-4.209106476, 5.159719888, 2.744852980],
            ),
        ];
        for (t, pos, vel) in expected {
            let (p, v) = sat.propagate_minutes(t).unwrap();
            let dp = (p - Vec3::new(pos[0], pos[1], pos[2])).norm();
            let dv = (v - Vec3::new(vel[0], vel[1], vel[2])).norm();
            assert!(dp < 1e-3, "t={t}: position off by {dp} km");
            assert!(dv < 1e-6, "t={t}: velocity off by {dv} km/s");
        }
        // Epoch 2000 day 179.78495062 = 2000-06-27 18:50:19.73 UTC.
        let civil = JulianDay::from_civil(2000, 6, 27, 18, 50, 19.733_568).unwrap();
        assert!(sat.epoch.seconds_since(civil).abs() < 0.01);
    }

    #[test]
    fn invalid_tles_are_refused_with_a_clear_error() {
        // Checksum broken (last digit changed).
        let bad = L1.replace("4753", "4754");
        let e = LeoSatellite::from_tle("sat", &bad, L2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid TLE for `sat`"), "{e}");
        // Truncated line.
        assert!(LeoSatellite::from_tle("sat", &L1[..40], L2).is_err());
        // Garbage.
        assert!(LeoSatellite::from_tle("sat", "hello", "world").is_err());
        // Not LEO.
        let e = LeoSatellite::from_tle("sat", L1, L2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a LEO orbit"), "{e}");
    }

    #[test]
    fn earth_blocks_opposite_satellites_but_not_neighbours() {
        let r = EARTH_RADIUS_KM + 550.0;
        let a = Vec3::new(r, 0.0, 0.0);
        assert!(blocked_by_earth(a, -a, 80.0));
        let b = a.rotate_z(20f64.to_radians());
        assert!(!blocked_by_earth(a, b, 80.0));
        // The grazing height matters: a chord whose lowest point is ~70 km up.
        let half = ((EARTH_RADIUS_KM + 70.0) / r).acos();
        let c = a.rotate_z(2.0 * half);
        assert!(blocked_by_earth(a, c, 80.0));
        assert!(!blocked_by_earth(a, c, 60.0));
    }
}
