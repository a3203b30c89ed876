//! Accuracy of the orbit module against published values and independent calculations.
//! Every check prints its numbers; `cargo test -p netem-profiles --test profiles orbit_accuracy --
//! --nocapture` shows them (they are quoted in docs/ORBITS.md).
#![allow(clippy::unwrap_used)]

use netem_profiles::orbit::earth::GroundStation;
use netem_profiles::orbit::lunar::{LunarOrbiter, LunarSite};
use netem_profiles::orbit::moon::moon_position;
use netem_profiles::orbit::{Endpoint, GeometryTable, JulianDay, LinkGeometry};

/// The minimum (or maximum) of the Earth–Moon distance within ±`days` of `around`, refined to
/// the minute: (instant, km).
fn extremum(around: JulianDay, days: f64, minimum: bool) -> (JulianDay, f64) {
    let sign = if minimum { 1.0 } else { -1.0 };
    let f = |jd: JulianDay| sign * moon_position(jd).distance_km;
    let mut best = (around, f(around));
    let steps = (2.0 * days * 24.0 * 6.0) as i64;
    for k in 0..=steps {
        let jd = around.plus_seconds((k as f64 / 6.0 - days * 24.0) * 3600.0);
        let v = f(jd);
        if v < best.1 {
            best = (jd, v);
        }
    }
    for k in -10..=10 {
        let jd = best.0.plus_seconds(k as f64 * 60.0);
        let v = f(jd);
        if v < best.1 {
            best = (jd, v);
        }
    }
    (best.0, sign * best.1)
}

/// Published perigees (centre-to-centre): 2016-11-14 ~11:15 UTC 356,509 km (the
/// "closest since 1948" perigee, widely published as 356,508–356,509 km), 2017-12-04 ~08:45
/// UTC 357,492 km, 2017-05-26 357,209 km. Target: within 0.05 %.
#[test]
fn perigee_distances_match_published_values() {
    let cases = [
        ((2016, 11, 14, 11, 15), 356_509.0, "2016-11-14"),
        ((2017, 12, 4, 8, 45), 357_492.0, "2017-12-04"),
        ((2017, 5, 26, 0, 0), 357_209.0, "2017-05-26"),
    ];
    for ((y, mo, d, h, mi), published, label) in cases {
        let around = JulianDay::from_civil(y, mo, d, h, mi, 0.0).unwrap();
        let (at, km) = extremum(around, 1.0, true);
        let err = (km - published) / published;
        println!(
            "perigee {label}: model {km:.1} km at {}, published {published} km, error {:+.1} km ({:+.4} %)",
            at.to_iso(),
            km - published,
            err * 100.0
        );
        assert!(err.abs() < 5e-4, "{label}: {km} vs {published}");
    }
}

/// The extremes of 2026–2027 (model predictions; printed for docs/ORBITS.md).
#[test]
fn extremes_of_2026_2027() {
    let start = JulianDay::from_civil(2026, 1, 1, 0, 0, 0.0).unwrap();
    let (mut lo, mut hi) = ((start, f64::MAX), (start, 0.0));
    for k in 0..(730 * 24 * 4) {
        let jd = start.plus_seconds(k as f64 * 900.0);
        let d = moon_position(jd).distance_km;
        if d < lo.1 {
            lo = (jd, d);
        }
        if d > hi.1 {
            hi = (jd, d);
        }
    }
    let lo = extremum(lo.0, 0.02, true);
    let hi = extremum(hi.0, 0.02, false);
    println!(
        "2026-2027: closest {:.1} km at {} (light time {:.4} s), farthest {:.1} km at {} ({:.4} s)",
        lo.1,
        lo.0.to_iso(),
        lo.1 / netem_profiles::SPEED_OF_LIGHT_KM_S,
        hi.1,
        hi.0.to_iso(),
        hi.1 / netem_profiles::SPEED_OF_LIGHT_KM_S
    );
    assert!(lo.1 > 356_000.0 && hi.1 < 407_000.0);
}

/// Moonrise/moonset at Goldstone above a 10° mask from the table (vector geometry: station
/// on the WGS-84 ellipsoid, topocentric elevation, bisected edges) against the textbook
/// hour-angle formula on the Moon's apparent RA/Dec: sin h = sin φ sin δ + cos φ cos δ cos H,
/// H = GMST + λ − α, corrected for the Moon's horizontal parallax (h_topo ≈ h − π cos h,
/// π = asin(R⊕/Δ)). The two share only the lunar series. The table's target is the surface
/// point at selenographic 0°/0°, which the libration moves up to ~240 km off the line to the
/// Moon's centre (~0.04° seen from the Earth: up to ~10 s at a rise or set).
#[test]
fn goldstone_moon_windows_match_the_hour_angle_formula() {
    let epoch = JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap();
    let (lat, lon, mask) = (35.4267_f64, -116.89_f64, 10.0_f64);
    let station = GroundStation::new("goldstone", lat, lon, 1.0, mask).unwrap();
    let moon = LunarSite::new("sub-earth", 0.0, 0.0, 0.0, 0.0).unwrap();
    let link = LinkGeometry::new(Endpoint::Station(station), Endpoint::LunarSite(moon));
    let horizon = 7.0 * 86_400.0;
    let table =
        GeometryTable::build(horizon, 10.0, 1.0, |s| link.sample(epoch.plus_seconds(s))).unwrap();

    let h_topo = |s: f64| {
        let jd = epoch.plus_seconds(s);
        let m = moon_position(jd);
        let (phi, dec) = (lat.to_radians(), m.declination_deg.to_radians());
        let ha = jd.gmst_rad() + lon.to_radians() - m.right_ascension_deg.to_radians();
        let h = (phi.sin() * dec.sin() + phi.cos() * dec.cos() * ha.cos()).asin();
        let parallax = (6378.137 / m.distance_km).asin();
        (h - parallax * h.cos()).to_degrees() - mask
    };
    let mut formula_edges = Vec::new();
    let mut prev = h_topo(0.0);
    let mut s = 60.0;
    while s <= horizon {
        let v = h_topo(s);
        if (v >= 0.0) != (prev >= 0.0) {
            let (mut a, mut b) = (s - 60.0, s);
            while b - a > 0.01 {
                let m = 0.5 * (a + b);
                if (h_topo(m) >= 0.0) == (prev >= 0.0) {
                    a = m;
                } else {
                    b = m;
                }
            }
            formula_edges.push(b);
        }
        prev = v;
        s += 60.0;
    }
    let mut table_edges = Vec::new();
    for w in table.outages() {
        for e in [w.start, w.end] {
            let e = e.as_secs_f64();
            if e > 0.0 && e < horizon {
                table_edges.push(e);
            }
        }
    }
    assert_eq!(
        table_edges.len(),
        formula_edges.len(),
        "{table_edges:?} vs {formula_edges:?}"
    );
    let worst = table_edges
        .iter()
        .zip(&formula_edges)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let up: f64 = table_edges.len() as f64;
    println!(
        "goldstone 10° mask, 7 days: {} rise/set edges, worst difference table vs hour-angle formula {worst:.1} s",
        up
    );
    assert!(worst < 90.0, "worst edge difference {worst} s");
}

/// Relay in a 100 km circular orbit of low inclination: occultations seen from the Earth's
/// centre vs the cylinder-shadow formula 2·asin(R/r)/(2π) of the period.
#[test]
fn relay_occultations_match_the_chord_formula() {
    let epoch = JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap();
    let relay = LunarOrbiter::circular("relay", 100.0, 0.0, 0.0, 0.0, epoch).unwrap();
    let period = relay.period_s();
    let link = LinkGeometry::new(Endpoint::EarthCentre, Endpoint::LunarOrbiter(relay));
    let table = GeometryTable::build(2.0 * 86_400.0, 10.0, 1.0, |s| {
        link.sample(epoch.plus_seconds(s))
    })
    .unwrap();
    let full: Vec<_> = table
        .outages()
        .iter()
        .filter(|w| w.start.as_secs_f64() > 0.0 && w.end.as_secs_f64() < 2.0 * 86_400.0)
        .collect();
    let mean = full.iter().map(|w| w.len().as_secs_f64()).sum::<f64>() / full.len() as f64;
    let r = 1737.4 + 100.0;
    let formula = 2.0 * (1737.4_f64 / r).asin() / std::f64::consts::TAU * period;
    println!(
        "relay 100 km, i=0: period {:.1} min, {} occultations, mean {:.1} min, formula (Earth in plane) {:.1} min",
        period / 60.0,
        full.len(),
        mean / 60.0,
        formula / 60.0
    );
    // The shadow seen from the Earth is a cone, not a cylinder (+0.5 % at the Moon's
    // distance), and the Earth is up to 5° off the orbit plane (which shortens it).
    assert!((mean / formula - 1.0).abs() < 0.02, "{mean} vs {formula}");
}

// ---------------------------------------------------------------------------------------
// The Moon's orientation: an independent reference from Meeus, Astronomical Algorithms
// (2nd ed.), chapter 53 — optical libration from Cassini's laws (I = 1.54242°) plus the
// physical librations ρ, σ, τ and the position angle P of the axis — against the IAU WGCCRE
// model the crate uses. Only the Moon's position (Meeus ch. 47) is shared.
// ---------------------------------------------------------------------------------------

mod meeus53 {
    use netem_profiles::orbit::moon::{mean_obliquity_rad, moon_position};
    use netem_profiles::orbit::moon_orientation::Axes;
    use netem_profiles::orbit::{JulianDay, Vec3};

    /// Total libration and position angle: (l, b, P) in degrees, plus the optical and
    /// physical parts (l′, b′, l″, b″).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Libration {
        pub(crate) l: f64,
        pub(crate) b: f64,
        pub(crate) p: f64,
        pub(crate) l_opt: f64,
        pub(crate) b_opt: f64,
        pub(crate) l_phys: f64,
        pub(crate) b_phys: f64,
    }

    fn poly(t: f64, c: &[f64]) -> f64 {
        c.iter().rev().fold(0.0, |acc, &k| acc * t + k)
    }

    pub(crate) fn libration(jd: JulianDay) -> Libration {
        let t = jd.tt_centuries();
        let rad = |c: &[f64]| poly(t, c).rem_euclid(360.0).to_radians();
        let d = rad(&[
            297.850_192_1,
            445_267.111_403_4,
            -0.001_881_9,
            1.0 / 545_868.0,
        ]);
        let m = rad(&[357.529_109_2, 35_999.050_290_9, -0.000_153_6]);
        let mp = rad(&[
            134.963_396_4,
            477_198.867_505_5,
            0.008_741_4,
            1.0 / 69_699.0,
        ]);
        let f = rad(&[
            93.272_095_0,
            483_202.017_523_3,
            -0.003_653_9,
            -1.0 / 3_526_000.0,
        ]);
        let om = rad(&[
            125.044_547_9,
            -1_934.136_289_1,
            0.002_075_4,
            1.0 / 467_441.0,
        ]);
        let e = poly(t, &[1.0, -0.002_516, -0.000_007_4]);
        // Short nutation series (Meeus ch. 22).
        let ls = (280.466_5 + 36_000.769_8 * t).to_radians();
        let lm = (218.316_5 + 481_267.881_3 * t).to_radians();
        let dpsi = (-17.20 * om.sin() - 1.32 * (2.0 * ls).sin() - 0.23 * (2.0 * lm).sin()
            + 0.21 * (2.0 * om).sin())
            / 3600.0;
        let deps = (9.20 * om.cos() + 0.57 * (2.0 * ls).cos() + 0.10 * (2.0 * lm).cos()
            - 0.09 * (2.0 * om).cos())
            / 3600.0;
        let moon = moon_position(jd);
        let lambda = (moon.longitude_deg + dpsi).to_radians();
        let beta = moon.latitude_deg.to_radians();
        let inc = 1.542_42_f64.to_radians();
        // Optical libration (53.1).
        let w = lambda - dpsi.to_radians() - om;
        let a =
            (w.sin() * beta.cos() * inc.cos() - beta.sin() * inc.sin()).atan2(w.cos() * beta.cos());
        let l_opt = (a - f).to_degrees();
        let l_opt = (l_opt + 180.0).rem_euclid(360.0) - 180.0;
        let b_opt = (-w.sin() * beta.cos() * inc.sin() - beta.sin() * inc.cos()).asin();
        // Physical libration (53.2).
        let k1 = (119.75 + 131.849 * t).to_radians();
        let k2 = (72.56 + 20.186 * t).to_radians();
        let rho = -0.027_52 * mp.cos() - 0.022_45 * f.sin() + 0.006_84 * (mp - 2.0 * f).cos()
            - 0.002_93 * (2.0 * f).cos()
            - 0.000_85 * (2.0 * f - 2.0 * d).cos()
            - 0.000_54 * (mp - 2.0 * d).cos()
            - 0.000_20 * (mp + f).sin()
            - 0.000_20 * (mp + 2.0 * f).cos()
            - 0.000_20 * (mp - f).cos()
            + 0.000_14 * (mp + 2.0 * f - 2.0 * d).cos();
        let sigma = -0.028_16 * mp.sin() + 0.022_44 * f.cos()
            - 0.006_82 * (mp - 2.0 * f).sin()
            - 0.002_79 * (2.0 * f).sin()
            - 0.000_83 * (2.0 * f - 2.0 * d).sin()
            + 0.000_69 * (mp - 2.0 * d).sin()
            + 0.000_40 * (mp + f).cos()
            - 0.000_25 * (2.0 * mp).sin()
            - 0.000_23 * (mp + 2.0 * f).sin()
            + 0.000_20 * (mp - f).cos()
            + 0.000_19 * (mp - f).sin()
            + 0.000_13 * (mp + 2.0 * f - 2.0 * d).sin()
            - 0.000_10 * (mp - 3.0 * f).cos();
        let tau = 0.025_20 * e * m.sin() + 0.004_73 * (2.0 * mp - 2.0 * f).sin()
            - 0.004_67 * mp.sin()
            + 0.003_96 * k1.sin()
            + 0.002_76 * (2.0 * mp - 2.0 * d).sin()
            + 0.001_96 * om.sin()
            - 0.001_83 * (mp - f).cos()
            + 0.001_15 * (mp - 2.0 * d).sin()
            - 0.000_96 * (mp - d).sin()
            + 0.000_46 * (2.0 * f - 2.0 * d).sin()
            - 0.000_39 * (mp - f).sin()
            - 0.000_32 * (mp - m - d).sin()
            + 0.000_27 * (2.0 * mp - m - 2.0 * d).sin()
            + 0.000_23 * k2.sin()
            - 0.000_14 * (2.0 * d).sin()
            + 0.000_14 * (2.0 * mp - 2.0 * f).cos()
            - 0.000_12 * (mp - 2.0 * f).sin()
            - 0.000_12 * (2.0 * mp).sin()
            + 0.000_11 * (2.0 * mp - 2.0 * m - 2.0 * d).sin();
        let l_phys = -tau + (rho * a.cos() + sigma * a.sin()) * b_opt.tan();
        let b_phys = sigma * a.cos() - rho * a.sin();
        let b_opt = b_opt.to_degrees();
        // Position angle of the axis (53.3).
        let eps = mean_obliquity_rad(t) + deps.to_radians();
        let v = om + dpsi.to_radians() + (sigma / inc.sin()).to_radians();
        let ir = inc + rho.to_radians();
        let x = ir.sin() * v.sin();
        let y = ir.sin() * v.cos() * eps.cos() - ir.cos() * eps.sin();
        let omega = x.atan2(y);
        let b_tot = (b_opt + b_phys).to_radians();
        let alpha = moon.right_ascension_deg.to_radians();
        let p = ((x * x + y * y).sqrt() * (alpha - omega).cos() / b_tot.cos())
            .asin()
            .to_degrees();
        Libration {
            l: l_opt + l_phys,
            b: b_opt + b_phys,
            p,
            l_opt,
            b_opt,
            l_phys,
            b_phys,
        }
    }

    /// The Moon's body axes (frame of date) rebuilt from the Earth's selenographic position
    /// (l, b) and the position angle P of the axis.
    pub(crate) fn body_axes(jd: JulianDay) -> Axes {
        let lib = libration(jd);
        let u = moon_position(jd).equatorial_km.unit(); // Earth → Moon
        let north = Vec3::new(0.0, 0.0, 1.0);
        let sky_n = (north - u * north.dot(u)).unit();
        let sky_e = sky_n.cross(u); // towards increasing right ascension
        let (sp, cp) = lib.p.to_radians().sin_cos();
        let s = sky_n * cp + sky_e * sp;
        let (sb, cb) = lib.b.to_radians().sin_cos();
        let z = u * -sb + s * cb;
        let d = u * -1.0; // Moon → Earth
        let d_perp = (d - z * sb).unit();
        let (sl, cl) = lib.l.to_radians().sin_cos();
        let x = d_perp * cl - z.cross(d_perp) * sl;
        Axes {
            x,
            y: z.cross(x),
            z,
        }
    }
}

/// The reference reproduces Meeus' example 53.a (1992 April 12, 0h TD): l′ = −1.206°,
/// b′ = +4.194°, l″ = −0.025°, b″ = +0.006°, l = −1.23°, b = +4.20°, P = 15.08°; the IAU
/// model gives the same sub-Earth point to a few hundredths of a degree.
#[test]
fn libration_reference_reproduces_meeus_53a() {
    let jd = JulianDay::from_tt(2_448_724.5);
    let r = meeus53::libration(jd);
    println!(
        "Meeus 53.a reference: l' {:.3} b' {:.3} l'' {:.3} b'' {:.3} l {:.3} b {:.3} P {:.3}",
        r.l_opt, r.b_opt, r.l_phys, r.b_phys, r.l, r.b, r.p
    );
    assert!((r.l_opt - -1.206).abs() < 0.002, "{r:?}");
    assert!((r.b_opt - 4.194).abs() < 0.002, "{r:?}");
    assert!((r.l_phys - -0.025).abs() < 0.002, "{r:?}");
    assert!((r.b_phys - 0.006).abs() < 0.002, "{r:?}");
    assert!(
        (r.l - -1.23).abs() < 0.006 && (r.b - 4.20).abs() < 0.006,
        "{r:?}"
    );
    assert!((r.p - 15.08).abs() < 0.01, "{r:?}");
    let f = MoonFrame::at(jd);
    let (l, b) = f.sub_earth_deg();
    println!("Meeus 53.a, IAU model: l {l:.3} b {b:.3}");
    // The reference axes rebuilt from (l, b, P) give back the reference's own (l, b).
    let axes = meeus53::body_axes(jd);
    let (rl, rb) = selenographic_deg(&axes, -moon_position(jd).equatorial_km);
    assert!(
        (rl - r.l).abs() < 1e-9 && (rb - r.b).abs() < 1e-9,
        "{rl} {rb}"
    );
}

use netem_profiles::orbit::lunar::{MoonFrame, OrbiterFrame};
use netem_profiles::orbit::moon_orientation::{Axes, selenographic_deg};

/// The previous model's body frame: x towards the Earth, z along the orbit normal.
fn mean_face_axes(jd: JulianDay) -> Axes {
    let c = moon_position(jd).equatorial_km;
    let later = moon_position(jd.plus_seconds(60.0)).equatorial_km;
    let x = (c * -1.0).unit();
    let z = c.cross(later - c).unit();
    Axes {
        x,
        y: z.cross(x),
        z,
    }
}

/// Station-to-base range over 2026–2030 (every 3 h, 14,600 samples): Goldstone to a base at
/// the Apollo 11 site (0.674°N 23.473°E), with the Moon oriented by (a) the IAU model (what
/// the crate uses), (b) the previous mean-face model, (c) the Meeus ch. 53 reference. Goal:
/// (a) within 0.01 % (~38 km) of (c) everywhere.
#[test]
fn station_to_base_range_against_the_libration_reference() {
    let goldstone = GroundStation::new("goldstone", 35.4267, -116.89, 1.0, 10.0).unwrap();
    let base = LunarSite::new("base", 0.674, 23.473, 0.0, 5.0).unwrap();
    let start = JulianDay::from_civil(2026, 1, 1, 0, 0, 0.0).unwrap();
    let (mut worst_new, mut worst_old, mut worst_rel) = (0.0_f64, 0.0_f64, 0.0_f64);
    let (mut ss_new, mut ss_old) = (0.0, 0.0);
    let (mut worst_l, mut worst_b) = (0.0_f64, 0.0_f64);
    let n = 5 * 365 * 8;
    for k in 0..n {
        let jd = start.plus_seconds(f64::from(k) * 10_800.0);
        let centre = moon_position(jd).equatorial_km;
        let st = goldstone.position(jd);
        let range = |axes: Axes| {
            let f = MoonFrame::from_parts(centre, axes);
            (base.position(&f) - st).norm()
        };
        let iau = MoonFrame::at(jd);
        let r_new = (base.position(&iau) - st).norm();
        let r_old = range(mean_face_axes(jd));
        let r_ref = range(meeus53::body_axes(jd));
        let (dn, dold) = (r_new - r_ref, r_old - r_ref);
        worst_new = worst_new.max(dn.abs());
        worst_old = worst_old.max(dold.abs());
        worst_rel = worst_rel.max(dn.abs() / r_ref);
        ss_new += dn * dn;
        ss_old += dold * dold;
        let (l, b) = iau.sub_earth_deg();
        let r = meeus53::libration(jd);
        worst_l = worst_l.max((l - r.l).abs());
        worst_b = worst_b.max((b - r.b).abs());
    }
    let rms = |ss: f64| (ss / f64::from(n)).sqrt();
    println!(
        "Goldstone-base range 2026-2030 vs Meeus-53 orientation: IAU model worst {worst_new:.2} km ({:.5} %), RMS {:.2} km; previous mean-face model worst {worst_old:.1} km, RMS {:.1} km",
        worst_rel * 100.0,
        rms(ss_new),
        rms(ss_old)
    );
    println!(
        "sub-Earth point IAU vs Meeus-53 (geometric vs apparent): worst |dl| {worst_l:.3}°, |db| {worst_b:.3}°"
    );
    assert!(worst_rel < 1e-4, "{worst_new} km");
    assert!(worst_new < 38.0, "{worst_new} km");
    assert!(
        worst_old > 60.0,
        "the libration test lost its power: {worst_old} km"
    );
}

/// Occultation and visibility edges of lunar-farside-relay's path (DSN → relay → Von
/// Kármán) over 30 days: the shipped profile (IAU Moon, relay elements on the lunar equator)
/// against the same path with the base placed by the Meeus-53 reference orientation (goal:
/// every edge within 2 min), and against the previous model (mean-face Moon, relay
/// elements on the ecliptic: the numbers the old docs quoted).
#[test]
fn relay_edges_against_the_reference_and_the_previous_model() {
    use netem_profiles::orbit::earth::StationNetwork;
    use netem_profiles::orbit::endpoint::Sky;
    let epoch = JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap();
    let base = LunarSite::new("base", -45.4, 177.6, 0.0, 5.0).unwrap();
    let relay = |frame| {
        LunarOrbiter::new(
            "relay",
            1737.4 + (300.0 + 16_000.0) / 2.0,
            (16_000.0 - 300.0) / (2.0 * 1737.4 + 300.0 + 16_000.0),
            90.0,
            0.0,
            90.0,
            180.0,
            epoch,
        )
        .unwrap()
        .in_frame(frame)
    };
    let legs = |frame| {
        (
            LinkGeometry::new(
                Endpoint::Network(StationNetwork::dsn(10.0).unwrap()),
                Endpoint::LunarOrbiter(relay(frame)),
            ),
            LinkGeometry::new(
                Endpoint::LunarOrbiter(relay(frame)),
                Endpoint::LunarSite(base.clone()),
            ),
        )
    };
    let (new_up, new_down) = legs(OrbiterFrame::MoonEquator);
    let (old_up, old_down) = legs(OrbiterFrame::Ecliptic);
    let path_up = |up: &LinkGeometry, down: &LinkGeometry, sky: &Sky| {
        up.sample_in(sky).unwrap().up && down.sample_in(sky).unwrap().up
    };
    let horizon = 30.0 * 86_400.0;
    let edges = |model: &dyn Fn(JulianDay) -> bool| {
        let t = GeometryTable::build(horizon, 20.0, 1.0, |s| {
            Ok(netem_profiles::orbit::GeometrySample {
                range_km: 0.0,
                up: model(epoch.plus_seconds(s)),
            })
        })
        .unwrap();
        t.outages()
            .iter()
            .flat_map(|w| [w.start.as_secs_f64(), w.end.as_secs_f64()])
            .filter(|&e| e > 0.0 && e < horizon)
            .collect::<Vec<f64>>()
    };
    let e_new = edges(&|jd| path_up(&new_up, &new_down, &Sky::new(jd)));
    let e_ref = edges(&|jd| {
        let f = MoonFrame::from_parts(moon_position(jd).equatorial_km, meeus53::body_axes(jd));
        path_up(&new_up, &new_down, &Sky::with_moon(jd, f))
    });
    let e_old = edges(&|jd| {
        let f = MoonFrame::from_parts(moon_position(jd).equatorial_km, mean_face_axes(jd));
        path_up(&old_up, &old_down, &Sky::with_moon(jd, f))
    });
    let worst = |a: &[f64], b: &[f64]| {
        a.iter()
            .map(|x| b.iter().map(|y| (x - y).abs()).fold(f64::MAX, f64::min))
            .fold(0.0, f64::max)
    };
    let w_ref = worst(&e_new, &e_ref).max(worst(&e_ref, &e_new));
    let w_old = worst(&e_new, &e_old).max(worst(&e_old, &e_new));
    println!(
        "lunar-farside-relay 30 d: {} edges (IAU), {} (Meeus-53 base), {} (previous model); worst edge IAU vs reference {:.1} s; IAU vs previous model {:.1} min",
        e_new.len(),
        e_ref.len(),
        e_old.len(),
        w_ref,
        w_old / 60.0
    );
    for (name, a, b) in [("IAU", &e_new, &e_ref), ("reference", &e_ref, &e_new)] {
        for x in a.iter() {
            let d = b.iter().map(|y| (x - y).abs()).fold(f64::MAX, f64::min);
            if d > 60.0 {
                println!(
                    "  {name} edge at {:.4} h unmatched (nearest {:.1} s)",
                    x / 3600.0,
                    d
                );
            }
        }
    }
    assert_eq!(e_new.len(), e_ref.len());
    assert!(w_ref < 120.0, "{w_ref} s");
}
