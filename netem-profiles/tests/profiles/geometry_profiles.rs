//! Geometry-derived profiles: the `[geometry]` section and `geometry = [...]` links, end to
//! end through `Profile::parse` and the link model; errors with line and key.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netem_profiles::{DropCause, Profile, Verdict, shipped_profiles_dir};

use crate::fixtures::sites_and_own_links;

/// Earth and a lunar orbiter, the link between them from the geometry; `time_scale = SCALE`
/// for the caller to replace.
fn relay_text() -> String {
    sites_and_own_links("relay-test", GEOMETRY, &["earth", "relay"], 0.05) + GEOMETRY_LINK
}

/// The header of [`relay_text`]: the time scale and the geometry section.
const GEOMETRY: &str = r#"time_scale = SCALE

[geometry]
epoch = "2026-12-01T00:00:00Z"
horizon_hours = 6
step_s = 10

[geometry.endpoints.earth]
kind = "earth-centre"

[geometry.endpoints.relay]
kind = "lunar-orbiter"
altitude_km = 100
inclination_deg = 0

"#;

/// The earth -> relay link of [`relay_text`].
const GEOMETRY_LINK: &str = r#"
[[links]]
from = "earth"
to = "relay"
geometry = ["earth", "relay"]
delay_ms = 2
rate_mbps = 100
"#;

fn relay(scale: f64) -> Profile {
    Profile::parse(
        &relay_text().replace("SCALE", &scale.to_string()),
        "relay.toml",
    )
    .unwrap()
}

#[test]
fn geometry_link_drops_in_occultation_and_delays_by_light_time() {
    let p = relay(1.0);
    let (e, r) = (p.site_id("earth").unwrap(), p.site_id("relay").unwrap());
    let spec = p.link(e, r);
    let g = spec.geometry.as_ref().unwrap();
    let outages = spec
        .outages
        .outages_between(Duration::ZERO, g.table.horizon());
    // 6 h of a 118-minute orbit: three occultations of ~46 min.
    assert!(outages.len() >= 3, "{outages:?}");
    for w in &outages[1..outages.len() - 1] {
        let min = w.len().as_secs_f64() / 60.0;
        assert!((44.0..49.0).contains(&min), "{min} min");
    }
    // `delay` bounds every instant's delay; delay_at = 2 ms + light time.
    for k in 0..360 {
        let t = Duration::from_secs(k * 60);
        let d = spec.delay_at(t);
        assert!(d <= spec.delay);
        assert!(
            d > Duration::from_millis(1150) && d < Duration::from_millis(1400),
            "{d:?}"
        );
        assert_eq!(d, Duration::from_millis(2) + g.table.delay_at(t));
    }
    let mut model = p.link_model(e, r);
    let inside = outages[1].start + Duration::from_secs(60);
    assert_eq!(
        model.on_packet(inside, 1000),
        Verdict::Drop(DropCause::Outage)
    );
    let before = outages[1].start - Duration::from_secs(60);
    match model.on_packet(before, 1000) {
        Verdict::Deliver { at, .. } => {
            let serialise = Duration::from_nanos(1028 * 8 * 10); // 1028 B at 100 Mbit/s
            assert_eq!(at, before + serialise + spec.delay_at(before));
        }
        v => panic!("{v:?}"),
    }
    // Both directions share one table.
    let back = p.link(r, e).geometry.as_ref().unwrap();
    assert!(std::sync::Arc::ptr_eq(&g.table, &back.table));
}

#[test]
fn time_scale_60_compresses_the_windows_60_times() {
    let (p1, p60) = (relay(1.0), relay(60.0));
    let (e, r) = (p1.site_id("earth").unwrap(), p1.site_id("relay").unwrap());
    let w1 = p1.link(e, r).outages.windows.clone();
    let w60 = p60.link(e, r).outages.windows.clone();
    assert_eq!(w1.len(), w60.len());
    for (a, b) in w1.iter().zip(&w60) {
        assert!((a.start.as_secs_f64() / 60.0 - b.start.as_secs_f64()).abs() < 1e-6);
        assert!((a.end.as_secs_f64() / 60.0 - b.end.as_secs_f64()).abs() < 1e-6);
    }
    // The same scenario instant has the same light delay.
    let t = Duration::from_secs(3000);
    assert_eq!(p1.link(e, r).delay_at(t), p60.link(e, r).delay_at(t / 60));
}

/// (what, edited [`relay_text`], text on the expected line, expected key, a word of the message)
fn broken() -> Vec<(
    &'static str,
    String,
    &'static str,
    &'static str,
    &'static str,
)> {
    let base = relay_text().replace("SCALE", "1");
    vec![
        (
            "missing epoch",
            base.replace("epoch = \"2026-12-01T00:00:00Z\"\n", ""),
            "[geometry]",
            "geometry.epoch",
            "missing",
        ),
        (
            "bad epoch",
            base.replace("2026-12-01T00:00:00Z", "2026-13-01T00:00:00Z"),
            "epoch =",
            "geometry.epoch",
            "month",
        ),
        (
            "unknown kind",
            base.replace("kind = \"earth-centre\"", "kind = \"mars\""),
            "kind = \"mars\"",
            "geometry.endpoints.earth.kind",
            "unknown kind",
        ),
        (
            "unknown endpoint in a path",
            base.replace("geometry = [\"earth\", \"relay\"]", "geometry = [\"earth\", \"phobos\"]"),
            "phobos",
            "links[2].geometry",
            "phobos",
        ),
        (
            "geometry and distance_km",
            base.replace("delay_ms = 2\n", "distance_km = 384400\n"),
            "geometry = [",
            "links[2].geometry",
            "not both",
        ),
        (
            "eccentricity out of range",
            base.replace("inclination_deg = 0", "inclination_deg = 0\neccentricity = 1.5"),
            "eccentricity =",
            "geometry.endpoints.relay.eccentricity",
            "between",
        ),
        (
            "orbit through the Moon",
            base.replace("altitude_km = 100", "altitude_km = 5"),
            "[geometry.endpoints.relay]",
            "geometry.endpoints.relay",
            "periapsis",
        ),
        (
            "horizon too long for the step",
            base.replace("horizon_hours = 6", "horizon_hours = 8000"),
            "horizon_hours",
            "geometry.horizon_hours",
            "samples",
        ),
        (
            "bad TLE checksum",
            base.replace(
                "kind = \"earth-centre\"",
                "kind = \"tle\"\nline1 = \"1 90001U 26001A   26335.00000000  .00000000  00000-0  00000-0 0  9997\"\nline2 = \"2 90001  53.0000   0.0000 0001000   0.0000   0.0000 15.05490646    12\"",
            ),
            "[geometry.endpoints.earth]",
            "geometry.endpoints.earth",
            "TLE",
        ),
        (
            "stale TLE",
            base.replace(
                "kind = \"earth-centre\"",
                "kind = \"tle\"\nline1 = \"1 90001U 26001A   26200.00000000  .00000000  00000-0  00000-0 0  9999\"\nline2 = \"2 90001  53.0000   0.0000 0001000   0.0000   0.0000 15.05490646    12\"",
            ),
            "[geometry.endpoints.earth]",
            "geometry.endpoints.earth",
            "days from the scenario epoch",
        ),
        (
            "geometry without a section",
            {
                let start = base.find("[geometry]").unwrap();
                let end = base.find("[sites.earth]").unwrap();
                format!("{}{}", &base[..start], &base[end..])
            },
            "geometry = [",
            "links[2].geometry",
            "[geometry] section",
        ),
    ]
}

#[test]
fn broken_geometry_yields_the_expected_error_with_line_and_key() {
    for (what, text, needle, key, word) in broken() {
        let line = 1 + text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{what}: `{needle}` not in the text"));
        let errs = Profile::parse(&text, "bad.toml").expect_err(what);
        let hit = errs
            .0
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{what}: no error on `{key}` in:\n{errs}"));
        assert_eq!(hit.line, line, "{what}: {hit}");
        assert!(hit.message.contains(word), "{what}: {hit}");
        assert!(hit.to_string().starts_with("bad.toml:"), "{what}: {hit}");
    }
}

#[test]
fn far_side_without_relay_is_refused() {
    let text = relay_text().replace("SCALE", "1").replace(
        "kind = \"lunar-orbiter\"\naltitude_km = 100\ninclination_deg = 0",
        "kind = \"lunar-site\"\nlat_deg = 0\nlon_deg = 180",
    );
    let errs = Profile::parse(&text, "far.toml").unwrap_err();
    assert!(errs.to_string().contains("never in view"), "{errs}");
}

#[test]
fn shipped_geometry_profiles_behave() {
    let dir = shipped_profiles_dir();
    let leo = Profile::from_file(&dir.join("leo-shell.toml")).unwrap();
    let (a, b) = (leo.site_id("leo-a").unwrap(), leo.site_id("leo-b").unwrap());
    // Same plane, 20° apart at 550 km: chord 2·6928·sin 10° = 2,406 km → 8.02 ms, always up.
    for k in 0..100 {
        let t = Duration::from_secs(k * 600);
        assert!(leo.link(a, b).outages.is_up(t));
        let d = leo.link(a, b).delay_at(t).as_secs_f64() * 1e3;
        assert!((d - 8.02).abs() < 0.05, "{d}");
    }

    let swarm = Profile::from_file(&dir.join("mass-driver-swarm.toml")).unwrap();
    let (e, s3) = (
        swarm.site_id("earth").unwrap(),
        swarm.site_id("sat-3").unwrap(),
    );
    let day = |d: u64| swarm.link(e, s3).delay_at(Duration::from_secs(d * 86_400));
    assert!(
        day(1) < day(5) && day(5) < day(9),
        "{:?} {:?} {:?}",
        day(1),
        day(5),
        day(9)
    );
    assert!(day(9) > Duration::from_secs(3));
}
