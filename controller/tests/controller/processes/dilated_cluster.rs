//! A process cluster at time dilation K = 4: the built `spacefabric-controller` started with
//! `--time-dilation 4` on a one-site profile with a slow link (20 ms one way, 100 Mbit/s,
//! so the network, not the host, sets the time), three `spacefabric-node` agents that take
//! the controller's K, and a fourth started with `--time-dilation 1`, which must exit naming
//! both values. Then `spacefabric-bench allreduce --controller` runs a 4 KiB ring all-reduce and
//! its reported times must be emulated: at least the cost model and well below K times it (and
//! the wall time of the run at least K times the model's, or the clock was not dilated at all).
//!
//! Opt-in (`#[ignore]`): `cargo test -p spacefabric-controller --test controller processes::dilated_cluster --
//! --ignored`. Nothing sleeps to synchronise: the job waits for three live nodes (`--min-nodes`), the
//! refused node's exit and the bench's are awaited with bounded timeouts.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use spacefabric_testkit::procs::{LocalCluster, node_args, run_bounded};
use spacefabric_testkit::profiles::{Rate, one_site};

const TOKEN: &str = "dilated-cluster-token";
/// Bound for the whole job on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(240);
const K: u32 = 4;

#[test]
#[ignore = "slow: 5 processes at K = 4, and it rebuilds the node and bench binaries when stale; run with `cargo test -p spacefabric-controller --test controller processes::dilated_cluster -- --ignored`"]
fn a_dilated_cluster_reports_emulated_times_and_refuses_a_node_with_another_k() {
    let profiles = tempfile::tempdir().unwrap();
    // One site whose link is slow enough that the network sets every time.
    let profile = one_site("slow-hall", "hall", 20.0, Some(Rate::Mbps(100.0)))
        .seeded(7)
        .write(profiles.path());
    let mut cluster =
        LocalCluster::start(&profile, TOKEN, &["--time-dilation".into(), K.to_string()]);
    for i in 0..3 {
        cluster.add_node(&format!("node-{i}"), &[]);
    }
    // A node started with another K is refused and exits, naming both.
    let mut wrong = Command::new(&cluster.node_bin);
    wrong
        .env_clear()
        .env("RUST_LOG", "info")
        .args(node_args(&cluster.url, TOKEN, "node-wrong-k"))
        .args(["--time-dilation", "1"]);
    let refused = run_bounded(wrong, WAIT);
    let log = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{log}");
    assert!(
        log.contains("FAILED_PRECONDITION") || log.contains("FailedPrecondition"),
        "{log}"
    );
    assert!(
        log.contains("--time-dilation 1") && log.contains("--time-dilation 4"),
        "{log}"
    );

    let json_path = cluster.dir().join("result.json");
    let started = Instant::now();
    let (stdout, context) = cluster.run_bench(
        "allreduce",
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--min-nodes",
            "3",
            "--algo",
            "ring",
            "-b",
            "4K",
            "-e",
            "4K",
            "-n",
            "2",
            "-w",
            "1",
            "--check",
            "0",
            "--json",
            json_path.to_str().unwrap(),
        ],
        WAIT,
    );
    let wall = started.elapsed();
    assert!(
        stdout.contains("# Time dilation K = 4"),
        "no dilation in the header: {context}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["clock_dilation"], K, "{json}");
    let result = &json["results"][0];
    let model_us = result["model_us"].as_f64().unwrap();
    let time_us = result["out_of_place"]["time_us"].as_f64().unwrap();
    // Ring on 3 ranks: 4 steps, each one 20 ms light delay (and a 1.4 KB chunk, one datagram,
    // so no congestion window is in play): about 80 ms of model.
    assert!(model_us > 75_000.0, "model {model_us} µs: {json}");
    // Emulated: at least the model, and well below K × model, which wall-time reporting
    // would read. (Not tighter: a manual run of this scenario gave 1.35x the model at K = 1
    // and 2.14x at K = 4 — sporadic extra emulated delay at K = 4, see docs/BENCHMARKS.md
    // "Time dilation".)
    assert!(
        time_us >= 0.9 * model_us && time_us <= 0.75 * f64::from(K) * model_us,
        "reported {time_us} µs against a model of {model_us} µs (K = {K}): {context}"
    );
    // The run itself took K times longer than the model on the wall clock (3 timed and
    // warm-up iterations plus the out-of-place and in-place placements).
    assert!(
        wall.as_secs_f64() * 1e6 >= f64::from(K) * model_us,
        "wall {wall:?} is not dilated against a model of {model_us} µs"
    );
}
