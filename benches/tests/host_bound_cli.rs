//! `train`, `fidelity` and `transfer` mark the rows the host, not the link model, bounded:
//! a delay line held back by the test hook (`--starve-delay-line-us`, as a host that cannot
//! give the driver a core) is reported host-bound in the table, the JSON and the closing
//! line, with what would avoid it; the virtual clock marks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spacefabric-bench"))
}

/// Runs the bench with `args` plus `--json`; returns stdout and the JSON.
fn run(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = bench()
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, v)
}

/// A row's `host` object says host-bound because the delay line was late, and how to avoid it.
fn assert_starved(host: &serde_json::Value, what: &str) {
    assert_eq!(host["host_bound"], true, "{what}: {host}");
    assert!(
        host["causes"].as_array().unwrap().contains(&"late".into()),
        "{what}: {host}"
    );
    assert_eq!(host["avoid_with"], "--clock virtual", "{what}: {host}");
    assert!(
        host["share"]["delay_line_mean_late_us"].as_f64().unwrap() > 100.0,
        "{what}: {host}"
    );
}

/// The table row (not a `#` line) carries `HOST:` and the cause; the closing line counts it.
fn assert_table_marks(stdout: &str, row_starts: &str) {
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(row_starts))
        .unwrap_or_else(|| panic!("no row {row_starts:?}: {stdout}"));
    assert!(row.contains("HOST:") && row.contains("late"), "{row}");
    assert!(
        stdout.contains("EVERY row was bounded by this host"),
        "{stdout}"
    );
}

#[test]
fn transfer_marks_a_starved_goodput_row_and_nothing_on_the_virtual_clock() {
    let common = [
        "transfer",
        "--profile",
        "lan",
        "--size",
        "1M",
        "--cc",
        "link-aware",
    ];
    let mut starved = common.to_vec();
    starved.extend(["--starve-delay-line-us", "3000"]);
    let (stdout, v) = run(&starved);
    assert_starved(&v["goodput"][0]["host"], "transfer");
    assert_eq!(v["host_bound_rows"]["count"], 1, "{v}");
    assert_table_marks(&stdout, "link-aware");

    let mut virt = common.to_vec();
    virt.extend(["--clock", "virtual"]);
    let (stdout, v) = run(&virt);
    assert_eq!(v["goodput"][0]["host"]["host_bound"], false, "{v}");
    assert!(
        stdout.contains("# Host-bound rows: 0 of 1 (clock virtual)"),
        "{stdout}"
    );
}

#[test]
fn fidelity_marks_a_starved_link_class() {
    let (stdout, v) = run(&[
        "fidelity",
        "--profile",
        "lan",
        "--nodes",
        "2",
        "--duration",
        "1",
        "--starve-delay-line-us",
        "3000",
    ]);
    assert_starved(&v["classes"][0]["host"], "fidelity");
    assert_eq!(v["host_bound_rows"]["count"], 1, "{v}");
    assert_table_marks(&stdout, "lan->lan");
}

#[test]
fn train_marks_a_starved_strategy() {
    let (stdout, v) = run(&[
        "train",
        "--profile",
        "lan",
        "--model",
        "mlp",
        "--nodes",
        "2",
        "--strategy",
        "sync",
        "--steps",
        "3",
        "--sync-steps",
        "3",
        "--samples",
        "512",
        "--clock",
        "real",
        "--starve-delay-line-us",
        "500",
    ]);
    assert_starved(&v["strategies"][0]["host"], "train");
    assert_eq!(v["host_bound_rows"]["count"], 1, "{v}");
    assert_table_marks(&stdout, "sync");
}
