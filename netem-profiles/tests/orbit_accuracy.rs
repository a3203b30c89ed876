//! Accuracy of the orbit module against published values and independent calculations.
//! Every check prints its numbers; `cargo test -p netem-profiles --test orbit_accuracy --
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
/// π = asin(R⊕/Δ)). The two share only the lunar series.
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
