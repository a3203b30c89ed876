//! The Moon's geocentric position from the truncated ELP-2000/82 theory as given by Meeus,
//! Astronomical Algorithms (2nd ed.), chapter 47: all 60 periodic terms of table 47.A
//! (longitude Σl and distance Σr — every non-zero Σr term, 46 of them, is included) and all 60
//! of table 47.B (latitude Σb), with the additive terms for Venus, Jupiter and the flattening
//! of the Earth. Meeus quotes ~10″ in longitude and ~4″ in latitude against the full theory;
//! the distance is good to a few km.
//!
//! Input: an instant as a UTC [`JulianDay`] (converted to TT with the constant offset of
//! [`super::time::tt_minus_utc_s`], the leap-second table). Output: geometric (not light-time corrected) ecliptic
//! longitude, latitude and distance of the centre of the Moon, its position vector in the
//! mean equator and equinox of date (the orbit module's frame), and the apparent right
//! ascension and declination (with the short nutation series of Meeus ch. 22), which is what
//! Meeus' worked example 47.a prints.

use super::time::JulianDay;
use super::vector::Vec3;
use crate::SPEED_OF_LIGHT_KM_S;

/// Mean distance of the theory's constant term, km.
const MEAN_DISTANCE_KM: f64 = 385_000.56;

/// Table 47.A: multiples of D, M, M', F; coefficient of sin in Σl (1e-6 degree);
/// coefficient of cos in Σr (1e-3 km).
const TABLE_47A: [(i8, i8, i8, i8, i32, i32); 60] = [
    (0, 0, 1, 0, 6_288_774, -20_905_355),
    (2, 0, -1, 0, 1_274_027, -3_699_111),
    (2, 0, 0, 0, 658_314, -2_955_968),
    (0, 0, 2, 0, 213_618, -569_925),
    (0, 1, 0, 0, -185_116, 48_888),
    (0, 0, 0, 2, -114_332, -3_149),
    (2, 0, -2, 0, 58_793, 246_158),
    (2, -1, -1, 0, 57_066, -152_138),
    (2, 0, 1, 0, 53_322, -170_733),
    (2, -1, 0, 0, 45_758, -204_586),
    (0, 1, -1, 0, -40_923, -129_620),
    (1, 0, 0, 0, -34_720, 108_743),
    (0, 1, 1, 0, -30_383, 104_755),
    (2, 0, 0, -2, 15_327, 10_321),
    (0, 0, 1, 2, -12_528, 0),
    (0, 0, 1, -2, 10_980, 79_661),
    (4, 0, -1, 0, 10_675, -34_782),
    (0, 0, 3, 0, 10_034, -23_210),
    (4, 0, -2, 0, 8_548, -21_636),
    (2, 1, -1, 0, -7_888, 24_208),
    (2, 1, 0, 0, -6_766, 30_824),
    (1, 0, -1, 0, -5_163, -8_379),
    (1, 1, 0, 0, 4_987, -16_675),
    (2, -1, 1, 0, 4_036, -12_831),
    (2, 0, 2, 0, 3_994, -10_445),
    (4, 0, 0, 0, 3_861, -11_650),
    (2, 0, -3, 0, 3_665, 14_403),
    (0, 1, -2, 0, -2_689, -7_003),
    (2, 0, -1, 2, -2_602, 0),
    (2, -1, -2, 0, 2_390, 10_056),
    (1, 0, 1, 0, -2_348, 6_322),
    (2, -2, 0, 0, 2_236, -9_884),
    (0, 1, 2, 0, -2_120, 5_751),
    (0, 2, 0, 0, -2_069, 0),
    (2, -2, -1, 0, 2_048, -4_950),
    (2, 0, 1, -2, -1_773, 4_130),
    (2, 0, 0, 2, -1_595, 0),
    (4, -1, -1, 0, 1_215, -3_958),
    (0, 0, 2, 2, -1_110, 0),
    (3, 0, -1, 0, -892, 3_258),
    (2, 1, 1, 0, -810, 2_616),
    (4, -1, -2, 0, 759, -1_897),
    (0, 2, -1, 0, -713, -2_117),
    (2, 2, -1, 0, -700, 2_354),
    (2, 1, -2, 0, 691, 0),
    (2, -1, 0, -2, 596, 0),
    (4, 0, 1, 0, 549, -1_423),
    (0, 0, 4, 0, 537, -1_117),
    (4, -1, 0, 0, 520, -1_571),
    (1, 0, -2, 0, -487, -1_739),
    (2, 1, 0, -2, -399, 0),
    (0, 0, 2, -2, -381, -4_421),
    (1, 1, 1, 0, 351, 0),
    (3, 0, -2, 0, -340, 0),
    (4, 0, -3, 0, 330, 0),
    (2, -1, 2, 0, 327, 0),
    (0, 2, 1, 0, -323, 1_165),
    (1, 1, -1, 0, 299, 0),
    (2, 0, 3, 0, 294, 0),
    (2, 0, -1, -2, 0, 8_752),
];

/// Table 47.B: multiples of D, M, M', F; coefficient of sin in Σb (1e-6 degree).
const TABLE_47B: [(i8, i8, i8, i8, i32); 60] = [
    (0, 0, 0, 1, 5_128_122),
    (0, 0, 1, 1, 280_602),
    (0, 0, 1, -1, 277_693),
    (2, 0, 0, -1, 173_237),
    (2, 0, -1, 1, 55_413),
    (2, 0, -1, -1, 46_271),
    (2, 0, 0, 1, 32_573),
    (0, 0, 2, 1, 17_198),
    (2, 0, 1, -1, 9_266),
    (0, 0, 2, -1, 8_822),
    (2, -1, 0, -1, 8_216),
    (2, 0, -2, -1, 4_324),
    (2, 0, 1, 1, 4_200),
    (2, 1, 0, -1, -3_359),
    (2, -1, -1, 1, 2_463),
    (2, -1, 0, 1, 2_211),
    (2, -1, -1, -1, 2_065),
    (0, 1, -1, -1, -1_870),
    (4, 0, -1, -1, 1_828),
    (0, 1, 0, 1, -1_794),
    (0, 0, 0, 3, -1_749),
    (0, 1, -1, 1, -1_565),
    (1, 0, 0, 1, -1_491),
    (0, 1, 1, 1, -1_475),
    (0, 1, 1, -1, -1_410),
    (0, 1, 0, -1, -1_344),
    (1, 0, 0, -1, -1_335),
    (0, 0, 3, 1, 1_107),
    (4, 0, 0, -1, 1_021),
    (4, 0, -1, 1, 833),
    (0, 0, 1, -3, 777),
    (4, 0, -2, 1, 671),
    (2, 0, 0, -3, 607),
    (2, 0, 2, -1, 596),
    (2, -1, 1, -1, 491),
    (2, 0, -2, 1, -451),
    (0, 0, 3, -1, 439),
    (2, 0, 2, 1, 422),
    (2, 0, -3, -1, 421),
    (2, 1, -1, 1, -366),
    (2, 1, 0, 1, -351),
    (4, 0, 0, 1, 331),
    (2, -1, 1, 1, 315),
    (2, -2, 0, -1, 302),
    (0, 0, 1, 3, -283),
    (2, 1, 1, -1, -229),
    (1, 1, 0, -1, 223),
    (1, 1, 0, 1, 223),
    (0, 1, -2, -1, -220),
    (2, 1, -1, -1, -220),
    (1, 0, 1, 1, -185),
    (2, -1, -2, -1, 181),
    (0, 1, 2, 1, -177),
    (4, 0, -2, -1, 176),
    (4, -1, -1, -1, 166),
    (1, 0, 1, -1, -164),
    (4, 0, 1, -1, 132),
    (1, 0, -1, -1, -119),
    (4, -1, 0, -1, 115),
    (2, -2, 0, 1, 107),
];

/// The Moon at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoonPosition {
    /// Geometric ecliptic longitude, mean equinox of date, degrees in [0, 360).
    pub longitude_deg: f64,
    /// Geometric ecliptic latitude, degrees.
    pub latitude_deg: f64,
    /// Distance between the centres of the Earth and the Moon, km.
    pub distance_km: f64,
    /// Apparent right ascension (with nutation), degrees in [0, 360).
    pub right_ascension_deg: f64,
    /// Apparent declination (with nutation), degrees.
    pub declination_deg: f64,
    /// Position in the mean equator and equinox of date, km (no nutation: the orbit module's
    /// frame).
    pub equatorial_km: Vec3,
}

impl MoonPosition {
    /// One-way light time over the centre-to-centre distance.
    pub fn light_time_s(&self) -> f64 {
        self.distance_km / SPEED_OF_LIGHT_KM_S
    }
}

fn poly(t: f64, c: &[f64]) -> f64 {
    c.iter().rev().fold(0.0, |acc, &k| acc * t + k)
}

/// Mean obliquity of the ecliptic (Meeus eq. 22.2), radians, for TT centuries `t`.
pub fn mean_obliquity_rad(t: f64) -> f64 {
    let arcsec = poly(t, &[84_381.448, -46.815, -0.000_59, 0.001_813]);
    (arcsec / 3600.0).to_radians()
}

/// Nutation in longitude and obliquity (Meeus ch. 22, the short series good to 0.5″ and
/// 0.1″), radians.
fn nutation_rad(t: f64) -> (f64, f64) {
    let omega = (125.044_52 - 1_934.136_261 * t).to_radians();
    let l_sun = (280.466_5 + 36_000.769_8 * t).to_radians();
    let l_moon = (218.316_5 + 481_267.881_3 * t).to_radians();
    let dpsi = -17.20 * omega.sin() - 1.32 * (2.0 * l_sun).sin() - 0.23 * (2.0 * l_moon).sin()
        + 0.21 * (2.0 * omega).sin();
    let deps = 9.20 * omega.cos() + 0.57 * (2.0 * l_sun).cos() + 0.10 * (2.0 * l_moon).cos()
        - 0.09 * (2.0 * omega).cos();
    ((dpsi / 3600.0).to_radians(), (deps / 3600.0).to_radians())
}

/// Ecliptic (longitude, latitude) → equatorial (right ascension, declination), radians.
fn ecliptic_to_equatorial(lon: f64, lat: f64, eps: f64) -> (f64, f64) {
    let ra = (lon.sin() * eps.cos() - lat.tan() * eps.sin()).atan2(lon.cos());
    let dec = (lat.sin() * eps.cos() + lat.cos() * eps.sin() * lon.sin()).asin();
    (ra.rem_euclid(std::f64::consts::TAU), dec)
}

/// The Moon's position at `jd` (UTC).
pub fn moon_position(jd: JulianDay) -> MoonPosition {
    let t = jd.tt_centuries();
    let deg = |c: &[f64]| poly(t, c).rem_euclid(360.0).to_radians();
    // Fundamental arguments (Meeus eqs. 47.1–47.5).
    let l_prime = deg(&[
        218.316_447_7,
        481_267.881_234_21,
        -0.001_578_6,
        1.0 / 538_841.0,
        -1.0 / 65_194_000.0,
    ]);
    let d = deg(&[
        297.850_192_1,
        445_267.111_403_4,
        -0.001_881_9,
        1.0 / 545_868.0,
        -1.0 / 113_065_000.0,
    ]);
    let m = deg(&[
        357.529_109_2,
        35_999.050_290_9,
        -0.000_153_6,
        1.0 / 24_490_000.0,
    ]);
    let m_prime = deg(&[
        134.963_396_4,
        477_198.867_505_5,
        0.008_741_4,
        1.0 / 69_699.0,
        -1.0 / 14_712_000.0,
    ]);
    let f = deg(&[
        93.272_095_0,
        483_202.017_523_3,
        -0.003_653_9,
        -1.0 / 3_526_000.0,
        1.0 / 863_310_000.0,
    ]);
    let a1 = deg(&[119.75, 131.849]);
    let a2 = deg(&[53.09, 479_264.290]);
    let a3 = deg(&[313.45, 481_266.484]);
    // Eccentricity of the Earth's orbit, decreasing: terms in M are multiplied by E or E².
    let e = poly(t, &[1.0, -0.002_516, -0.000_007_4]);
    let e_factor = |mult_m: i8| match mult_m.abs() {
        1 => e,
        2 => e * e,
        _ => 1.0,
    };

    let (mut sum_l, mut sum_r) = (0.0, 0.0);
    for &(cd, cm, cmp, cf, sl, sr) in &TABLE_47A {
        let arg =
            f64::from(cd) * d + f64::from(cm) * m + f64::from(cmp) * m_prime + f64::from(cf) * f;
        let k = e_factor(cm);
        sum_l += f64::from(sl) * k * arg.sin();
        sum_r += f64::from(sr) * k * arg.cos();
    }
    let mut sum_b = 0.0;
    for &(cd, cm, cmp, cf, sb) in &TABLE_47B {
        let arg =
            f64::from(cd) * d + f64::from(cm) * m + f64::from(cmp) * m_prime + f64::from(cf) * f;
        sum_b += f64::from(sb) * e_factor(cm) * arg.sin();
    }
    // Additive terms: Venus (A1), Jupiter (A2), the flattening of the Earth (L' − F, ...).
    sum_l += 3958.0 * a1.sin() + 1962.0 * (l_prime - f).sin() + 318.0 * a2.sin();
    sum_b += -2235.0 * l_prime.sin()
        + 382.0 * a3.sin()
        + 175.0 * (a1 - f).sin()
        + 175.0 * (a1 + f).sin()
        + 127.0 * (l_prime - m_prime).sin()
        - 115.0 * (l_prime + m_prime).sin();

    let lon = (l_prime + (sum_l / 1e6).to_radians()).rem_euclid(std::f64::consts::TAU);
    let lat = (sum_b / 1e6).to_radians();
    let distance_km = MEAN_DISTANCE_KM + sum_r / 1000.0;

    let eps0 = mean_obliquity_rad(t);
    let equatorial_km = Vec3::from_spherical(lon, lat, distance_km).rotate_x(eps0);
    let (dpsi, deps) = nutation_rad(t);
    let (ra, dec) = ecliptic_to_equatorial(lon + dpsi, lat, eps0 + deps);
    MoonPosition {
        longitude_deg: lon.to_degrees(),
        latitude_deg: lat.to_degrees(),
        distance_km,
        right_ascension_deg: ra.to_degrees(),
        declination_deg: dec.to_degrees(),
        equatorial_km,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_47a_has_every_distance_term() {
        let nonzero_r = TABLE_47A.iter().filter(|t| t.5 != 0).count();
        assert_eq!(nonzero_r, 46);
        assert_eq!(TABLE_47B.len(), 60);
    }

    /// Meeus example 47.a: 1992 April 12, 0h TD.
    #[test]
    fn meeus_example_47a() {
        // 0h TD = 0h TT; our input is UTC.
        let jd = JulianDay::from_tt(2_448_724.5);
        let p = moon_position(jd);
        assert!(
            (p.longitude_deg - 133.162_655).abs() < 2e-6,
            "{}",
            p.longitude_deg
        );
        assert!(
            (p.latitude_deg - -3.229_126).abs() < 2e-6,
            "{}",
            p.latitude_deg
        );
        assert!((p.distance_km - 368_409.7).abs() < 0.1, "{}", p.distance_km);
        // Apparent α = 134.688470°, δ = 13.768368° (Meeus uses the full nutation series;
        // ours is good to 0.5″).
        assert!(
            (p.right_ascension_deg - 134.688_470).abs() < 3e-4,
            "{}",
            p.right_ascension_deg
        );
        assert!(
            (p.declination_deg - 13.768_368).abs() < 3e-4,
            "{}",
            p.declination_deg
        );
        assert!((p.equatorial_km.norm() - p.distance_km).abs() < 1e-6);
        assert!((p.light_time_s() - 1.228_886).abs() < 1e-5);
    }

    /// The range stays inside the physical bounds over 2026–2027, sampled every 3 hours, and
    /// reaches close to both ends.
    #[test]
    fn range_within_physical_bounds_2026_2027() {
        let start = JulianDay::from_civil(2026, 1, 1, 0, 0, 0.0).unwrap();
        let (mut min, mut max) = (f64::MAX, 0.0_f64);
        for k in 0..(730 * 8) {
            let d = moon_position(start.plus_seconds(k as f64 * 10_800.0)).distance_km;
            min = min.min(d);
            max = max.max(d);
        }
        assert!(min > 356_000.0 && max < 407_000.0, "{min} .. {max}");
        assert!(min < 358_000.0 && max > 405_500.0, "{min} .. {max}");
    }
}
