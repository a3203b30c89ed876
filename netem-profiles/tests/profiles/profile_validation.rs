//! The TOML front end: every shipped profile validates; broken profiles are rejected with the
//! expected line and key; and no input, however mangled, makes the parser panic.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netem_profiles::{LossModel, Profile, shipped_profiles_dir};
use proptest::prelude::*;

use crate::fixtures::sites_and_own_links;

fn shipped() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(shipped_profiles_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_profile_validates() {
    let profiles = shipped();
    let names: Vec<String> = profiles
        .iter()
        .map(|(_, t)| Profile::parse(t, "x").unwrap().name)
        .collect();
    for expected in [
        "lan",
        "leo-isl",
        "earth-moon",
        "earth-moon-llcd",
        "earth-moon-dsn",
        "lunar-farside-relay",
        "leo-shell",
        "mass-driver-swarm",
        "lan-100g",
        "formation-flying",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for (path, _) in &profiles {
        let p = Profile::from_file(std::path::Path::new(path)).unwrap();
        // the file name is the profile's name
        assert!(path.ends_with(&format!("{}.toml", p.name)), "{path}");
    }
}

#[test]
fn shipped_numbers_are_the_documented_ones() {
    let dir = shipped_profiles_dir();
    let em = Profile::from_file(&dir.join("earth-moon.toml")).unwrap();
    let (e, m) = (em.site_id("earth").unwrap(), em.site_id("moon").unwrap());
    // 384,400 km / c = 1.282215 s
    assert_eq!(em.link(e, m).delay.as_millis(), 1282);
    assert_eq!(em.rtt(e, m, Duration::ZERO).as_millis(), 2564);
    assert_eq!(em.link(e, e).delay, Duration::from_micros(50));

    let llcd = Profile::from_file(&dir.join("earth-moon-llcd.toml")).unwrap();
    let (e, m) = (
        llcd.site_id("earth").unwrap(),
        llcd.site_id("moon").unwrap(),
    );
    assert_eq!(llcd.link(m, e).rate_bps, Some(622_000_000));
    assert_eq!(llcd.link(e, m).rate_bps, Some(20_000_000));

    // Geometry-derived (docs/ORBITS.md): Goldstone <-> a near-side base from 2026-12-01 08:30.
    let dsn = Profile::from_file(&dir.join("earth-moon-dsn.toml")).unwrap();
    let (e, m) = (dsn.site_id("earth").unwrap(), dsn.site_id("moon").unwrap());
    let sched = &dsn.link(e, m).outages;
    assert!(
        sched.is_up(Duration::ZERO),
        "the scenario starts just after moonrise"
    );
    let set = sched.next_change(Duration::ZERO).unwrap();
    assert!(set > Duration::from_secs(10 * 3600) && set < Duration::from_secs(11 * 3600));
    assert_eq!(dsn.link(m, e).outages, *sched, "outages apply both ways");
    for h in 0..48 {
        let d = dsn.link(e, m).delay_at(Duration::from_secs(h * 3600));
        assert!(
            d > Duration::from_millis(1240) && d < Duration::from_millis(1310),
            "{d:?}"
        );
    }
    let longest = dsn.longest_outage();
    assert!(longest > Duration::from_secs(13 * 3600) && longest < Duration::from_secs(15 * 3600));

    let relay = Profile::from_file(&dir.join("lunar-farside-relay.toml")).unwrap();
    let longest = relay.longest_outage();
    assert!(longest > Duration::from_secs(4 * 3600) && longest < Duration::from_secs(5 * 3600));
}

/// Sites a and b, 10 ms and 100 Mbit/s apart: the text the broken cases edit (their expected
/// lines count from it).
fn base() -> String {
    sites_and_own_links("t", "", &["a", "b"], 0.05)
        + "\n[[links]]\nfrom = \"a\"\nto = \"b\"\ndelay_ms = 10\nrate_mbps = 100\n"
}

#[test]
fn base_profile_parses() {
    let p = Profile::parse(&base(), "base.toml").unwrap();
    assert_eq!(p.sites.len(), 2);
    assert_eq!(p.seed, 0);
    assert_eq!(p.time_scale, 1.0);
}

/// (what, profile text, expected line, expected key, a word the message must contain)
fn broken_cases() -> Vec<(&'static str, String, usize, &'static str, &'static str)> {
    let base_with = |extra: &str| format!("{}{extra}", base());
    vec![
        (
            "unknown top-level key",
            base().replace("name = \"t\"", "name = \"t\"\ncolour = 1"),
            2,
            "colour",
            "unknown key",
        ),
        (
            "typo in a link key",
            base_with("jiter = 3\n"),
            20,
            "links[2].jiter",
            "did you mean `jitter`",
        ),
        (
            "negative delay",
            base().replace("delay_ms = 10", "delay_ms = -10"),
            18,
            "links[2].delay_ms",
            "negative",
        ),
        (
            "NaN rate",
            base().replace("rate_mbps = 100", "rate_mbps = nan"),
            19,
            "links[2].rate_mbps",
            "finite",
        ),
        (
            "infinite distance",
            base().replace("delay_ms = 10", "distance_km = inf"),
            18,
            "links[2].distance_km",
            "finite",
        ),
        (
            "probability above 1",
            base_with("[links.loss]\nmodel = \"bernoulli\"\np = 1.5\n"),
            22,
            "links[2].loss.p",
            "probability",
        ),
        (
            "negative duplicate probability",
            base_with("duplicate = -0.1\n"),
            20,
            "links[2].duplicate",
            "probability",
        ),
        (
            "Gilbert-Elliott without r",
            base_with("[links.loss]\nmodel = \"gilbert-elliott\"\np = 0.1\n"),
            20,
            "links[2].loss.r",
            "missing",
        ),
        (
            "unknown loss model",
            base_with("[links.loss]\nmodel = \"random\"\np = 0.1\n"),
            21,
            "links[2].loss.model",
            "bernoulli or gilbert-elliott",
        ),
        (
            "outage longer than its period",
            base_with("[[links.outages.periodic]]\nperiod_s = 10\nduration_s = 11\n"),
            22,
            "links[2].outages.periodic[0].duration_s",
            "longer than its period",
        ),
        (
            "phase not below the period",
            base_with("[[links.outages.periodic]]\nperiod_s = 10\nduration_s = 1\nphase_s = 10\n"),
            23,
            "links[2].outages.periodic[0].phase_s",
            "less than the period",
        ),
        (
            "window ending before it starts",
            base_with("[[links.outages.windows]]\nstart_s = 10\nend_s = 5\n"),
            22,
            "links[2].outages.windows[0].end_s",
            "after start_s",
        ),
        (
            "link to an unknown site",
            base().replace("to = \"b\"\ndelay_ms = 10", "to = \"c\"\ndelay_ms = 10"),
            17,
            "links[2].to",
            "unknown site `c`",
        ),
        (
            "duplicated link (reversed)",
            base_with("\n[[links]]\nfrom = \"b\"\nto = \"a\"\ndelay_ms = 1\n"),
            22,
            "links[3].from",
            "duplicate link",
        ),
        (
            "site pair with no link",
            base().replace("[sites.b]", "[sites.b]\n[sites.c]"),
            2,
            "links",
            "no link between sites `a` and `c`",
        ),
        (
            "site with no link inside",
            base().replace("from = \"b\"\nto = \"b\"", "from = \"b\"\nto = \"a\""),
            3,
            "links",
            "no link inside site `b`",
        ),
        (
            "no sites",
            "name = \"t\"\nsites = {}\nlinks = []\n".to_string(),
            2,
            "sites",
            "no sites",
        ),
        (
            "both delay forms",
            base().replace("delay_ms = 10", "delay_ms = 10\ndistance_km = 1000"),
            19,
            "links[2].distance_km",
            "not both",
        ),
        (
            "reverse on a link inside a site",
            base().replace(
                "from = \"b\"\nto = \"b\"\ndelay_ms = 0.05\n",
                "from = \"b\"\nto = \"b\"\ndelay_ms = 0.05\nreverse = { rate_mbps = 1 }\n",
            ),
            14,
            "links[1].reverse",
            "one direction",
        ),
        (
            "wrong type",
            base().replace("rate_mbps = 100", "rate_mbps = \"fast\""),
            19,
            "links[2].rate_mbps",
            "expected a number",
        ),
        (
            "zero time scale",
            base().replace("name = \"t\"", "name = \"t\"\ntime_scale = 0"),
            2,
            "time_scale",
            "greater than 0",
        ),
        (
            "jitter distribution unknown",
            base_with("[links.jitter]\ndist = \"gauss\"\nms = 1\n"),
            21,
            "links[2].jitter.dist",
            "uniform, normal or pareto",
        ),
        (
            "syntax error",
            base().replace("[sites.b]", "[sites.b"),
            3,
            "",
            "TOML syntax",
        ),
    ]
}

#[test]
fn broken_profiles_yield_the_expected_error_with_line_and_key() {
    for (what, text, line, key, word) in broken_cases() {
        let errors = match Profile::parse(&text, "broken.toml") {
            Ok(_) => panic!("{what}: accepted\n{text}"),
            Err(e) => e.0,
        };
        let hit = errors
            .iter()
            .find(|e| e.key == key && e.line == line && e.message.contains(word));
        assert!(
            hit.is_some(),
            "{what}: wanted line {line} key `{key}` containing {word:?}, got:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(errors.iter().all(|e| e.origin == "broken.toml"));
    }
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let text = base()
        .replace("delay_ms = 10", "delay_ms = -10")
        .replace("name = \"t\"", "name = \"t\"\nseed = -3\nbogus = true");
    let errors = Profile::parse(&text, "x").unwrap_err().0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["seed", "bogus", "links[2].delay_ms"], "{errors:?}");
}

#[test]
fn reverse_overrides_only_the_keys_it_sets() {
    let text = base().replace(
        "rate_mbps = 100\n",
        "rate_mbps = 100\n[links.loss]\nmodel = \"bernoulli\"\np = 0.01\n[links.reverse]\nrate_bps = 20000000\n",
    );
    let p = Profile::parse(&text, "x").unwrap();
    assert_eq!(p.link(0, 1).rate_bps, Some(100_000_000));
    assert_eq!(p.link(1, 0).rate_bps, Some(20_000_000));
    assert_eq!(p.link(1, 0).loss, LossModel::Bernoulli { p: 0.01 });
    assert_eq!(p.link(1, 0).delay, Duration::from_millis(10));
    // default queues: 100 ms at each direction's own rate (RTT 20 ms caps it at 20 ms)
    assert_eq!(p.link(0, 1).queue_limit_bytes, 250_000);
    assert_eq!(p.link(1, 0).queue_limit_bytes, 65_536);
}

#[test]
fn scenario_time_is_divided_by_the_time_scale_but_light_delay_is_not() {
    let text = base().replace("name = \"t\"", "name = \"t\"\ntime_scale = 60")
        + "[[links.outages.periodic]]\nperiod_s = 6000\nduration_s = 600\nphase_s = 60\n"
        + "[[links.outages.windows]]\nstart_s = 120\nend_s = 180\n";
    let p = Profile::parse(&text, "x").unwrap();
    let l = p.link(0, 1);
    assert_eq!(l.delay, Duration::from_millis(10));
    assert_eq!(l.outages.periodic[0].period, Duration::from_secs(100));
    assert_eq!(l.outages.periodic[0].duration, Duration::from_secs(10));
    assert_eq!(l.outages.periodic[0].phase, Duration::from_secs(1));
    assert_eq!(l.outages.windows[0].start, Duration::from_secs(2));
    assert_eq!(l.outages.windows[0].end, Duration::from_secs(3));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        let _ = Profile::parse(&text, "fuzz");
    }

    #[test]
    fn toml_like_text_never_panics(text in "[\\[\\]a-z_.=\"0-9 \\n{},+-]{0,200}") {
        let _ = Profile::parse(&text, "fuzz");
    }

    #[test]
    fn mutated_shipped_profiles_never_panic(
        which in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>()), 1..8),
    ) {
        let profiles = shipped();
        let mut chars: Vec<char> = profiles[which % profiles.len()].1.chars().collect();
        for (at, op, c) in edits {
            if chars.is_empty() {
                chars.push(c);
                continue;
            }
            let i = at.index(chars.len());
            match op {
                0 => { chars.remove(i); }
                1 => chars.insert(i, c),
                2 => chars[i] = c,
                _ => {
                    // duplicate a random line span: stresses duplicate keys and tables
                    let j = (i + 40).min(chars.len());
                    let piece: Vec<char> = chars[i..j].to_vec();
                    chars.splice(i..i, piece);
                }
            }
        }
        let text: String = chars.into_iter().collect();
        let _ = Profile::parse(&text, "fuzz");
    }

    #[test]
    fn numeric_values_of_any_kind_never_panic(
        v in prop_oneof![
            any::<f64>().prop_map(|x| format!("{x:e}")),
            any::<i64>().prop_map(|x| x.to_string()),
            Just("nan".to_string()), Just("-inf".to_string()), Just("1e308".to_string()),
        ],
        key in prop::sample::select(vec![
            "delay_ms", "distance_km", "rate_mbps", "rate_bps", "queue_bytes", "duplicate",
        ]),
    ) {
        let text = base().replace("rate_mbps = 100", &format!("{key} = {v}"));
        let _ = Profile::parse(&text, "fuzz");
        let text = base().replace("name = \"t\"", &format!("name = \"t\"\ntime_scale = {v}\nseed = {v}"))
            + &format!("[[links.outages.periodic]]\nperiod_s = {v}\nduration_s = {v}\nphase_s = 0\n")
            + &format!("[links.jitter]\ndist = \"pareto\"\nms = {v}\n");
        if let Ok(p) = Profile::parse(&text, "fuzz") {
            let mut m = p.link_model(0, 1);
            for i in 0..50u64 {
                let _ = m.on_packet(Duration::from_millis(i), 1200);
            }
            let _ = p.longest_outage();
        }
    }
}

/// Every profile file is embedded in the crate (so binaries need no source tree), with the
/// same text, and each loads by name.
#[test]
fn every_shipped_profile_is_embedded_and_loads_by_name() {
    let files = shipped();
    assert_eq!(
        netem_profiles::SHIPPED_PROFILES.len(),
        files.len(),
        "{:?}",
        netem_profiles::shipped_profile_names()
    );
    for (name, text) in &files {
        let stem = std::path::Path::new(name)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            netem_profiles::shipped_profile_text(stem),
            Some(text.as_str()),
            "{name}"
        );
        netem_profiles::load_profile(stem).unwrap();
    }
    let err = netem_profiles::load_profile("no-such-profile")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-profile") && err.contains("lan"),
        "{err}"
    );
}
