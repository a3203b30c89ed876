//! An all-reduce sweep through the controller on real node processes: the built
//! `spacefabric-controller` (lan profile) and four `spacefabric-node` agents on 127.0.0.1,
//! then `spacefabric-bench allreduce --controller URL --join-token T --min-nodes 4` submits a
//! small sweep (1 KiB..64 KiB, ring and hierarchical, one iteration) and prints the
//! nccl-tests table from the ranks' results. Asserts the exit code, one row per size and
//! algorithm, that no element was wrong, and that every row was judged on the nodes' own
//! hosts (each node measures what its host did to it around every point).
//!
//! Nothing sleeps to synchronise: the job waits for four live nodes (`--min-nodes`), and the
//! bench's exit is awaited with a bounded timeout.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use spacefabric_testkit::bins::workspace_root;
use spacefabric_testkit::procs::LocalCluster;

const TOKEN: &str = "allreduce-test-token";
/// Bound for the whole job on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(240);

#[test]
fn an_all_reduce_job_runs_on_four_node_processes_and_prints_the_table() {
    let profile = workspace_root().join("netem-profiles/profiles/lan.toml");
    assert!(profile.is_file(), "{} missing", profile.display());
    let mut cluster = LocalCluster::start(&profile, TOKEN, &[]);
    for i in 0..4 {
        cluster.add_node(&format!("node-{i}"), &[]);
    }

    let json_path = cluster.dir().join("result.json");
    let (stdout, context) = cluster.run_bench(
        "allreduce",
        &[
            "--min-nodes",
            "4",
            "--algo",
            "ring,hier",
            "-b",
            "1K",
            "-e",
            "64K",
            "-f",
            "4",
            "-n",
            "1",
            "-w",
            "0",
            "--json",
            json_path.to_str().unwrap(),
        ],
        WAIT,
    );
    // One row per (algorithm, size): 1K, 4K, 16K, 64K for ring and hier.
    for algo in ["ring", "hier"] {
        for bytes in [1024, 4096, 16384, 65536] {
            let row = stdout.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                !l.starts_with('#')
                    && cols.first() == Some(&bytes.to_string().as_str())
                    && l.contains(algo)
            });
            assert!(row, "no {algo} row for {bytes} B: {context}");
        }
    }
    assert!(
        stdout.contains("# Out of bounds values : 0 OK"),
        "missing OK footer: {context}"
    );
    assert!(
        stdout.contains("4 node processes"),
        "not run on the node processes: {context}"
    );
    // The JSON names every rank's transport settings: socket, datagram size, quinn tuning
    // towards each of its 3 peers.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let per_rank = json["transport"]["per_rank"].as_array().unwrap();
    assert_eq!(per_rank.len(), 4, "{json}");
    for r in per_rank {
        let settings = &r["settings"];
        assert_eq!(settings["socket"], "emulated", "{json}");
        assert_eq!(settings["udp_payload_bytes"], 1452, "{json}");
        assert_eq!(settings["per_link"].as_array().unwrap().len(), 3, "{json}");
    }
    // Every row carries the worst node's host share over the point: the nodes' delay lines
    // released the point's datagrams. Whether a row is host-bound depends on this machine's
    // load, so only that it was judged is asserted.
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 8, "{json}");
    for r in results {
        let share = &r["host"]["share"];
        assert!(share["wall_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(share["delay_line_datagrams"].as_u64().unwrap() > 0, "{r}");
        assert!(r["host"]["host_bound"].is_boolean(), "{r}");
    }
    assert!(
        stdout.contains("# Host-bound rows: ") && stdout.contains(" of 8 (clock real)"),
        "no host-bound footer: {context}"
    );
}
