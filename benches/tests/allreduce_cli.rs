//! `spacefabric-bench allreduce` end to end on the in-memory fabric: the nccl-tests table,
//! the footer, the files, and a wrong element turning the run into FAILED with exit code 1.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spacefabric-bench"))
}

#[test]
fn a_clean_sweep_prints_the_table_and_ok() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let svg = dir.path().join("r.svg");
    let out = bench()
        .args([
            "allreduce",
            "--fabric",
            "memory",
            "--profile",
            "earth-moon",
            "--nodes",
            "5",
        ])
        .args([
            "--algo",
            "ring,hier,auto",
            "-b",
            "1K",
            "-e",
            "64K",
            "-f",
            "8",
            "-n",
            "2",
            "-w",
            "0",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 3 * 3, "{stdout}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[2..5], ["float", "sum", "-1"], "{row}");
        assert_eq!(cols[8], "0", "#wrong in {row}");
    }
    assert!(stdout.contains("# Out of bounds values : 0 OK"), "{stdout}");
    assert!(stdout.contains("# Avg bus bandwidth    : "), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 9);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

#[test]
fn a_wrong_element_fails_the_run() {
    let out = bench()
        .args([
            "allreduce",
            "--fabric",
            "memory",
            "--profile",
            "lan",
            "--nodes",
            "4",
        ])
        .args([
            "--algo", "ring", "-b", "4K", "-e", "4K", "-n", "1", "-w", "0",
        ])
        // messages 0 -> 1: the barrier's (0), the timed iteration's 6 (3 reduce-scatter + 3
        // all-gather), the next barrier's (7); the 9th is the first of the checked iteration
        .args(["--corrupt", "0:1:8", "--lanes", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("# Out of bounds values : 1 FAILED"),
        "{stdout}"
    );
}

#[test]
fn bad_flags_are_clear_errors() {
    let out = bench()
        .args(["allreduce", "--algo", "ring,bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    let out = bench()
        .args([
            "allreduce",
            "--fabric",
            "memory",
            "--profile",
            "no-such-profile",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-profile"));
}

/// A 64 GiB sweep is refused by the controller's own cost check, cleanly (no abort), and an
/// unwritable --json is refused before the sweep runs.
#[test]
fn a_64_gib_sweep_and_an_unwritable_json_are_refused_before_the_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_spacefabric-bench"))
        .args(["allreduce", "--fabric", "memory", "--nodes", "2"])
        .args(["-b", "64G", "-e", "64G"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("spec.all_reduce.max_bytes"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_spacefabric-bench"))
        .args(["allreduce", "--fabric", "memory", "--nodes", "2"])
        .args(["--json", "/nonexistent-dir/a.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("--json"), "{stderr}");
    assert!(!stderr.contains("# size"), "the sweep ran first: {stderr}");
}
