//! `spacefabric-bench train` end to end on the in-memory fabric (the strategies' arithmetic
//! without a network): one table row per strategy, the files, and bad flags refused with a
//! message naming the flag.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{bench, read_json, rows, run_json, succeed};

#[test]
fn every_strategy_gets_a_row_and_the_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("t.svg");
    let (stdout, v) = run_json(
        bench()
            .args(["train", "--fabric", "memory", "--profile", "earth-moon"])
            .args(["--model", "mlp"])
            .args(["--nodes", "4", "--steps", "40", "--sync-steps", "20"])
            .args([
                "--inner-steps",
                "10",
                "--target-loss",
                "5",
                "--samples",
                "4096",
            ])
            .arg("--plot")
            .arg(&svg),
    );
    let rows = rows(&stdout);
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, ["sync", "sharded", "diloco", "hier"], "{stdout}");
    // steps and syncs: per-step strategies sync every step, the outer ones every H.
    assert_eq!(rows[0][1..3], ["20", "20"], "{stdout}");
    assert_eq!(rows[2][1..3], ["40", "4"], "{stdout}");
    // The initial loss is far below 5, so the target is met at once by everyone.
    assert!(rows.iter().all(|r| r[4] != "not"), "{stdout}");
    let strategies = v["strategies"].as_array().unwrap();
    assert_eq!(strategies.len(), 4);
    let sync_curve = strategies[0]["curve"].as_array().unwrap();
    assert_eq!(
        sync_curve.len(),
        1 + 20 / 5,
        "one point per eval interval plus the start"
    );
    assert!(strategies[0]["bytes"]["earth-moon"].as_u64().unwrap() > 0);
    assert!(
        strategies[2]["bytes"]["earth-moon"].as_u64().unwrap()
            < strategies[0]["bytes"]["earth-moon"].as_u64().unwrap()
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg"), "{svg_text}");
    // plotters draws one polyline per strategy and panel in the strategy's colour, the
    // dashed target as #555555 dash pieces (the axes are pure black).
    let strokes = |c: &str| svg_text.matches(&format!(r#"stroke="{c}""#)).count();
    for colour in ["#1F77B4", "#D62728", "#2CA02C", "#9467BD"] {
        assert_eq!(strokes(colour), 2, "one {colour} line per panel");
    }
    assert!(
        strokes("#555555") >= 2,
        "the target is drawn in both panels"
    );
    assert!(svg_text.contains("target 5"));
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    for (args, needle) in [
        (vec!["--strategy", "sync,bogus"], "--strategy bogus"),
        (vec!["--step-time=-1"], "--step-time"),
        (
            vec!["--profile", "no-such-profile"],
            "--profile no-such-profile",
        ),
        (
            vec!["--model", "mlp", "--activation", "gelu"],
            "--activation gelu",
        ),
        (vec!["--model", "gpt-5"], "--model gpt-5"),
        // MLP-only flags are refused with a transformer, not silently ignored.
        (vec!["--width", "16"], "--width applies to --model mlp only"),
        (vec!["--strategy", "sync+c"], "--strategy sync+c"),
        (
            vec!["--strategy", "streaming", "--overlap", "50"],
            "spec.train.overlap_steps",
        ),
        (vec!["--accelerator", "tpu9"], "spec.train.accelerator"),
    ] {
        let out = bench()
            .args(["train", "--fabric", "memory", "--steps", "2"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// What the controller refuses, the in-process bench refuses too, before running anything: a
/// NaN learning rate, zero steps, a poison teacher, an output file that cannot be written.
#[test]
fn the_controllers_admission_refuses_before_the_run() {
    let run = |extra: &[&str]| {
        let out = bench()
            .args(["train", "--fabric", "memory", "--profile", "earth-moon"])
            .args(["--nodes", "2", "--samples", "512"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (flags, says) in [
        (
            &["--inner-lr", "NaN", "--strategy", "diloco"][..],
            "spec.train.lr",
        ),
        (
            &["--steps", "0", "--strategy", "diloco"],
            "spec.train.steps",
        ),
        (
            &[
                "--model",
                "mlp",
                "--teacher-width",
                "65536",
                "--teacher-depth",
                "64",
                "--strategy",
                "sync",
            ],
            "teacher_width",
        ),
        (
            &["--steps", "20", "--json", "/nonexistent-dir/t.json"],
            "--json",
        ),
    ] {
        let (code, stderr) = run(flags);
        assert_ne!(code, Some(0), "{flags:?} ran: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
    }
}

#[test]
fn the_transformer_comparison_runs_every_strategy_and_compression_cuts_bytes() {
    // lm-tiny on 4 in-memory nodes (2 sites): every strategy of the default list, the same
    // token budget, a row each and the goals' lines.
    let (stdout, v) = run_json(
        bench()
            .args(["train", "--fabric", "memory", "--profile", "earth-moon"])
            .args(["--model", "lm-tiny", "--nodes", "4", "--steps", "40"])
            .args(["--inner-steps", "10", "--fragments", "2", "--overlap", "2"])
            .args([
                "--eval-samples",
                "16",
                "--eval-every",
                "10",
                "--target-loss",
                "4.0",
            ])
            .args(["--samples", "200000", "--compress-density", "0.02"]),
    );
    let rows = rows(&stdout);
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        names,
        ["sync", "diloco", "diloco+c", "streaming", "delayed", "hier"],
        "{stdout}"
    );
    // Same token budget: every strategy ran 40 steps.
    assert!(rows.iter().all(|r| r[1] == "40"), "{stdout}");
    assert!(stdout.contains("transformer LM lm-tiny"), "{stdout}");
    assert!(stdout.contains("# goal: diloco+c sends"), "{stdout}");
    let s = v["strategies"].as_array().unwrap();
    let cross = |i: usize| s[i]["bytes"]["earth-moon"].as_u64().unwrap();
    // 2 % density at 2 bits: far fewer bytes than plain DiLoCo's f32 deltas.
    assert!(cross(2) * 8 < cross(1), "{} vs {}", cross(2), cross(1));
    for st in s {
        let first = st["curve"][0]["loss"].as_f64().unwrap();
        let last = st["final_loss"].as_f64().unwrap();
        assert!(last < first, "{}: {first} -> {last}", st["strategy"]);
    }
}

#[test]
fn streaming_delayed_and_compressed_exchanges_over_quic_match_the_memory_fabric() {
    // The same lm-tiny job twice: over real QUIC through the emulated earth-moon links (on the
    // virtual clock, so the 1.28 s light delay costs no wall time), and over in-process
    // mailboxes. The exchanges of streaming (fragments), delayed (one step late) and compressed
    // outer gradients (all-gathered payload words) must carry the same numbers over QUIC: the
    // curves agree, and compression cuts the bytes the QUIC fabric's meters counted.
    let run = |fabric: &str, dir: &std::path::Path| -> serde_json::Value {
        let json = dir.join(format!("{fabric}.json"));
        let mut cmd = bench();
        cmd.args(["train", "--fabric", fabric, "--clock", "virtual"])
            .args([
                "--profile",
                "earth-moon",
                "--model",
                "lm-tiny",
                "--nodes",
                "4",
            ])
            .args(["--strategy", "diloco,diloco+c,streaming,delayed"])
            .args(["--steps", "20", "--inner-steps", "5", "--fragments", "2"])
            .args(["--overlap", "1", "--eval-samples", "8", "--eval-every", "5"])
            .args(["--samples", "100000", "--compress-density", "0.02"])
            .args(["--step-time", "0.01", "--target-loss", "4.0"])
            .arg("--json")
            .arg(&json);
        succeed(&mut cmd, fabric);
        read_json(&json)
    };
    let dir = tempfile::tempdir().unwrap();
    let quic = run("quic", dir.path());
    let memory = run("memory", dir.path());
    let (q, m) = (
        quic["strategies"].as_array().unwrap(),
        memory["strategies"].as_array().unwrap(),
    );
    assert_eq!(q.len(), 4);
    for (q, m) in q.iter().zip(m) {
        let name = q["strategy"].as_str().unwrap();
        let (qc, mc) = (
            q["curve"].as_array().unwrap(),
            m["curve"].as_array().unwrap(),
        );
        assert_eq!(qc.len(), mc.len(), "{name}: evaluation points");
        for (a, b) in qc.iter().zip(mc) {
            let (a, b) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
            // Sums may associate differently per fabric: float tolerance, not bits.
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{name}: quic {a} vs memory {b}"
            );
        }
    }
    let cross = |i: usize| q[i]["bytes"]["earth-moon"].as_u64().unwrap();
    assert!(cross(1) > 0, "no cross-site bytes counted: {}", q[1]);
    assert!(
        cross(1) * 8 < cross(0),
        "diloco+c {} B vs diloco {} B across sites over QUIC",
        cross(1),
        cross(0)
    );
}
