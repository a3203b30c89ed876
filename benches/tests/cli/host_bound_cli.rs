//! `train`, `fidelity` and `transfer` mark the rows the host, not the link model, bounded:
//! a delay line held back by the test hook (`--starve-delay-line-us`, as a host that cannot
//! give the driver a core) is reported host-bound in the table, the JSON and the closing
//! line, with what would avoid it; the virtual clock marks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{assert_starved, assert_table_marks, bench, run_json};

/// Runs the bench with `args` plus `--json`; returns stdout and the JSON.
fn run(args: &[&str]) -> (String, serde_json::Value) {
    run_json(bench().args(args))
}

#[test]
fn transfer_marks_a_starved_goodput_row_and_nothing_on_the_virtual_clock() {
    let flags = [
        "transfer",
        "--profile",
        "lan",
        "--size",
        "1M",
        "--cc",
        "link-aware",
    ];
    let mut starved = flags.to_vec();
    starved.extend(["--starve-delay-line-us", "3000"]);
    let (stdout, v) = run(&starved);
    assert_starved(&v["goodput"][0]["host"], "transfer");
    assert_eq!(v["host_bound_rows"]["count"], 1, "{v}");
    assert_table_marks(&stdout, "link-aware");

    let mut virt = flags.to_vec();
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
