//! `spacefabric-controller profile ...` run as a real process: exit codes and output lines.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn controller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spacefabric-controller"))
        .args(args)
        .env_remove("SPACEFABRIC_PROFILE")
        .output()
        .unwrap()
}

fn shipped(name: &str) -> String {
    netem_profiles::shipped_profiles_dir()
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

fn all_shipped() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(netem_profiles::shipped_profiles_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p: &PathBuf| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_every_shipped_profile() {
    let files = all_shipped();
    assert!(files.len() >= 6);
    let args: Vec<&str> = std::iter::once("profile")
        .chain(std::iter::once("check"))
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = controller(&args);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    for f in &files {
        assert!(stdout.lines().any(|l| l == format!("ok {f}")), "{stdout}");
    }
}

#[test]
fn check_rejects_a_broken_profile_with_exit_2_and_line_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(shipped("earth-moon"))
        .unwrap()
        .replace("rate_mbps = 200", "rate_mbps = -200\nbogus = 1");
    std::fs::write(&bad, &text).unwrap();
    let rate_line = text.lines().position(|l| l == "rate_mbps = -200").unwrap() + 1;
    let good = shipped("lan");
    let out = controller(&["profile", "check", &good, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let bad_s = bad.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{bad_s}:{rate_line}: key `links[2].rate_mbps`: must be greater than 0"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{bad_s}:{}: key `links[2].bogus`", rate_line + 1)),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains(&format!("ok {good}"))
    );
}

#[test]
fn check_reports_a_missing_file() {
    let out = controller(&["profile", "check", "/nonexistent/profile.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("cannot read the file")
    );
}

#[test]
fn show_prints_delay_rtt_rate_and_bdp() {
    let out = controller(&["profile", "show", &shipped("earth-moon")]);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8(out.stdout).unwrap();
    let row = s
        .lines()
        .find(|l| l.trim_start().starts_with("earth -> moon"))
        .unwrap();
    for want in [
        "1.282 s",
        "2.564 s",
        "200 Mbit/s",
        "64.1 MB",
        "2.5 MB",
        "shared",
    ] {
        assert!(row.contains(want), "{want} not in {row}");
    }
    let inside = s
        .lines()
        .find(|l| l.trim_start().starts_with("earth -> earth"))
        .unwrap();
    assert!(inside.contains("per pair"), "{inside}");
    // The last column: what the link does while down.
    assert!(inside.trim_end().ends_with("drop"), "{inside}");
    assert!(s.contains("every link is always up"));
}

#[test]
fn timeline_lists_the_dsn_windows() {
    // Geometry-derived (docs/ORBITS.md): from the epoch (2026-12-01 08:30 UTC) the Moon sets
    // below Goldstone's 10° mask after 10h58m12.3s and rises again 14h02m56.3s later (the
    // base moves with the libration since issue 17).
    let out = controller(&[
        "profile",
        "timeline",
        &shipped("earth-moon-dsn"),
        "--hours",
        "48",
        "--step",
        "3600",
    ]);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        s.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == [
                "down",
                "10h58m12.309s",
                "1d",
                "1h01m08.583s",
                "14h02m56.274s"
            ]),
        "{s}"
    );
    let out = controller(&["profile", "timeline", &shipped("lan"), "--hours", "-1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn contact_plan_and_timeline_plot() {
    let out = controller(&[
        "profile",
        "contact-plan",
        &shipped("lunar-farside-relay"),
        "--hours",
        "48",
    ]);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("# node 2 = farside"));
    assert!(
        s.lines()
            .any(|l| l.starts_with("a contact +2444 +31879 1 2 12500000")),
        "{s}"
    );
    assert!(
        s.lines()
            .any(|l| l.starts_with("a range +2444 +31879 1 2 1")),
        "{s}"
    );

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("t.svg");
    let out = controller(&[
        "profile",
        "timeline",
        &shipped("earth-moon-dsn"),
        "--hours",
        "48",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("earth → moon"));
    // Two outages over 48 h per direction, each a red rect.
    assert_eq!(text.matches(r##"fill="#E34A33""##).count(), 4);

    let out = controller(&["profile", "contact-plan", &shipped("lan"), "--hours", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
