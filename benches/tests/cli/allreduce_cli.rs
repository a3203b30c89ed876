//! `spacefabric-bench allreduce` end to end on the in-memory fabric: the nccl-tests table,
//! the footer, the files, every datatype and op of `-d all -o all` exact and named in the
//! `type`/`redop` columns, and a wrong element (of any type) turning the run into FAILED
//! with exit code 3.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{
    assert_starved, assert_table_marks, bench, corrupted_sweep, first_row, read_json, rows,
    run_json, succeed, tiny_sweep,
};

#[test]
fn a_clean_sweep_prints_the_table_and_ok() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let svg = dir.path().join("r.svg");
    let mut cmd = bench();
    cmd.args([
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
    .arg(&svg);
    let (_, stdout) = succeed(&mut cmd, "a clean sweep");
    let rows = rows(&stdout);
    assert_eq!(rows.len(), 3 * 3, "{stdout}");
    for cols in rows {
        assert_eq!(cols[2..5], ["float", "sum", "-1"], "{cols:?}");
        // nccl-tests' fields: 9 = out-of-place #wrong, 13 = in-place #wrong.
        assert_eq!(cols[8], "0", "#wrong in {cols:?}");
        assert_eq!(cols[12], "0", "in-place #wrong in {cols:?}");
    }
    // One table, one footer per algorithm.
    assert_eq!(
        stdout.matches("# Out of bounds values : 0 OK").count(),
        3,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("# Avg bus bandwidth    : ").count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("# Result: every result exact"), "{stdout}");
    let v = read_json(&json);
    assert_eq!(v["results"].as_array().unwrap().len(), 9);
    assert_eq!(v["schema_version"], 3);
    assert_eq!(v["results"][0]["in_place"]["nwrong"], 0);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

#[test]
fn a_wrong_element_fails_the_run() {
    let out = corrupted_sweep(&mut bench()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 3: wrong results (docs/CLI.md, exit codes)
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("# Out of bounds values : 1 FAILED"),
        "{stdout}"
    );
    // The corrupted message belongs to the out-of-place run: field 9, not field 13.
    let row = first_row(&stdout);
    assert_ne!(row[8], "0", "{stdout}");
    assert_eq!(row[12], "0", "{stdout}");
}

#[test]
fn every_datatype_and_op_is_exact_and_named_in_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("r.svg");
    let mut cmd = bench();
    cmd.args(["allreduce", "--fabric", "memory", "--profile", "earth-moon"])
        .arg("--plot")
        .arg(&svg)
        .args([
            "--nodes",
            "5",
            "--algo",
            "ring,hier",
            "-b",
            "8",
            "-e",
            "1K",
            "-f",
            "128",
        ])
        .args(["-n", "1", "-w", "0", "-d", "all", "-o", "all"]);
    let (out, stdout) = succeed(&mut cmd, "-d all -o all");
    let rows = rows(&stdout);
    // 2 algorithms × 10 datatypes × 5 ops × 2 sizes.
    assert_eq!(rows.len(), 2 * 10 * 5 * 2, "{stdout}");
    let size = |t: &str| match t {
        "int8" | "uint8" => 1,
        "half" | "bfloat16" => 2,
        "int32" | "uint32" | "float" => 4,
        "int64" | "uint64" | "double" => 8,
        other => panic!("unknown type column '{other}'"),
    };
    let mut seen = std::collections::BTreeSet::new();
    for row in &rows {
        // count = bytes / sizeof(type), as nccl-tests prints it.
        let (bytes, count): (u64, u64) = (row[0].parse().unwrap(), row[1].parse().unwrap());
        assert_eq!(count * size(row[2]), bytes, "{row:?}");
        assert!(
            ["sum", "prod", "max", "min", "avg"].contains(&row[3]),
            "{row:?}"
        );
        assert_eq!((row[8], row[12]), ("0", "0"), "#wrong in {row:?}");
        seen.insert((row[2], row[3]));
    }
    assert_eq!(seen.len(), 50, "every datatype × op has rows");
    // The plot draws the first (datatype, op) only: per panel one line per algorithm and
    // the bound, one marker per algorithm and size.
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("all-reduce int8 sum on earth-moon"), "{plot}");
    // plotters draws each algorithm's line as one polyline in its colour and the dashed
    // bound as #222222 dash pieces (the axes are pure black).
    let strokes = |c: &str| {
        plot.matches(&format!(r#"stroke="{c}" stroke-width="2""#))
            .count()
    };
    assert_eq!(
        (strokes("#1F77B4"), strokes("#D62728")),
        (2, 2),
        "one line per algorithm and panel"
    );
    assert!(strokes("#222222") >= 2, "the bound is drawn in both panels");
    assert_eq!(plot.matches("<circle").count(), 2 * 2 * 2);
    assert!(
        plot.contains("µs") || plot.contains("ms"),
        "time ticks carry a unit"
    );
    assert!(plot.contains("bit/s"), "bandwidth ticks carry a unit");
    // stderr is a pipe here, not a terminal: no progress bar, no ANSI escapes.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains("ETA"),
        "{stderr}"
    );
    assert_eq!(
        stdout.matches("# Out of bounds values : 0 OK").count(),
        2,
        "{stdout}"
    );
}

#[test]
fn a_wrong_element_of_any_datatype_fails_the_run() {
    for (datatype, op) in [("int8", "sum"), ("double", "prod"), ("bfloat16", "avg")] {
        let out = corrupted_sweep(&mut bench())
            .args(["-d", datatype, "-o", op])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{datatype} {op}: {stdout}");
        let row = first_row(&stdout);
        assert_eq!(row[2..4], [datatype, op], "{stdout}");
        assert_ne!(row[8], "0", "{datatype} {op}: {stdout}");
    }
}

#[test]
fn without_checks_wrong_is_not_applicable() {
    let out = tiny_sweep(&mut bench(), 3)
        .args(["-c", "0", "-z", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let row = first_row(&stdout);
    assert_eq!((row[8], row[12]), ("N/A", "N/A"), "{stdout}");
    assert!(stdout.contains("validation: 0"), "{stdout}");
}

#[test]
fn bad_flags_are_clear_errors() {
    let out = bench()
        .args(["allreduce", "--algo", "ring,bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    // An unknown profile: cli_convention.rs (exit 2, naming it).
    for (flag, bad) in [("-d", "float8"), ("-o", "xor")] {
        let out = bench()
            .args(["allreduce", "--fabric", "memory", flag, bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(bad),
            "{flag} {bad}"
        );
    }
}

/// Runs a QUIC sweep on `profile` and returns (stdout, the JSON report).
fn quic_sweep(extra: &[&str]) -> (String, serde_json::Value) {
    run_json(
        bench()
            .args(["allreduce", "--fabric", "quic", "--lanes", "2"])
            .args(extra),
    )
}

fn times(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            [
                r["out_of_place"]["times_us"].clone(),
                r["in_place"]["times_us"].clone(),
            ]
        })
        .inspect(|t| assert!(t.is_array(), "no times_us in {v}"))
        .collect()
}

#[test]
fn a_virtual_clock_sweep_repeats_bit_for_bit_and_meets_its_model() {
    let args = [
        "--clock",
        "virtual",
        "--profile",
        "lan",
        "--nodes",
        "4",
        "--algo",
        "ring,hd",
        "-b",
        "1K",
        "-e",
        "64K",
        "-f",
        "8",
        "-n",
        "2",
        "-w",
        "1",
    ];
    let (stdout, a) = quic_sweep(&args);
    let (_, b) = quic_sweep(&args);
    assert!(stdout.contains("# Clock: virtual"), "{stdout}");
    assert_eq!(a["clock"], "virtual");
    assert_eq!(times(&a), times(&b), "two runs with the same seed differ");
    for r in a["results"].as_array().unwrap() {
        let (t, model) = (
            r["out_of_place"]["time_us"].as_f64().unwrap(),
            r["model_us"].as_f64().unwrap(),
        );
        // Never faster than the links allow, and within 5 % of the cost model.
        assert!(t >= model * 0.999 && t <= model * 1.05, "{r}");
        assert_eq!(r["host"]["host_bound"], false, "{r}");
    }
    assert!(
        stdout.contains("# Host-bound rows: 0 of 6 (clock virtual)"),
        "{stdout}"
    );
}

#[test]
fn datatypes_over_quic_are_exact_and_cost_their_bytes() {
    // Real QUIC on the virtual clock: half and double, prod and avg. A row's time follows
    // its bytes, not its element type: at one size every type meets the same model.
    let (stdout, v) = quic_sweep(&[
        "--clock",
        "virtual",
        "--profile",
        "lan",
        "--nodes",
        "4",
        "--algo",
        "ring",
        "-b",
        "1K",
        "-e",
        "64K",
        "-f",
        "64",
        "-n",
        "1",
        "-w",
        "0",
        "-d",
        "half,double",
        "-o",
        "prod,avg",
    ]);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2 * 2 * 2, "{stdout}");
    for r in results {
        assert_eq!(r["out_of_place"]["nwrong"], 0, "{r}");
        assert_eq!(r["in_place"]["nwrong"], 0, "{r}");
        let (t, model) = (
            r["out_of_place"]["time_us"].as_f64().unwrap(),
            r["model_us"].as_f64().unwrap(),
        );
        assert!(t >= model * 0.999 && t <= model * 1.05, "{r}");
        let size = if r["datatype"] == "half" { 2 } else { 8 };
        assert_eq!(
            r["count"].as_u64().unwrap() * size,
            r["size_bytes"].as_u64().unwrap(),
            "{r}"
        );
    }
    let model_of = |dt: &str, bytes: u64| {
        results
            .iter()
            .find(|r| r["datatype"] == dt && r["size_bytes"] == bytes)
            .map(|r| r["model_us"].as_f64().unwrap())
    };
    assert_eq!(model_of("half", 65536), model_of("double", 65536));
    assert!(model_of("half", 65536) > model_of("half", 1024));
}

#[test]
fn a_starved_delay_line_is_reported_host_bound() {
    let (stdout, v) = quic_sweep(&[
        "--profile",
        "lan",
        "--nodes",
        "2",
        "--algo",
        "ring",
        "-b",
        "1K",
        "-e",
        "1K",
        "-n",
        "2",
        "-w",
        "0",
        "--starve-delay-line-us",
        "3000",
    ]);
    assert_starved(&v["results"][0]["host"], &stdout);
    assert_table_marks(&stdout, "");
}

/// A 64 GiB sweep is refused by the controller's own cost check, cleanly (no abort), and an
/// unwritable --json is refused before the sweep runs.
#[test]
fn a_64_gib_sweep_and_an_unwritable_json_are_refused_before_the_run() {
    let out = bench()
        .args(["allreduce", "--fabric", "memory", "--nodes", "2"])
        .args(["-b", "64G", "-e", "64G"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("spec.all_reduce.max_bytes"), "{stderr}");
    let out = bench()
        .args(["allreduce", "--fabric", "memory", "--nodes", "2"])
        .args(["--json", "/nonexistent-dir/a.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("--json"), "{stderr}");
    assert!(!stderr.contains("# size"), "the sweep ran first: {stderr}");
}
