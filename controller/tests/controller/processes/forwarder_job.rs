//! The forwarder in a process cluster: the built controller (`--forwarder ADDR`), one
//! `spacefabric-node forwarder` and four node processes, two per site of a small two-site
//! profile, run an all-reduce sweep through the controller. Asserts #wrong = 0, that the nodes
//! sent their cross-site traffic through the forwarder (its per-trunk counters on /metrics,
//! both directions, nothing refused) and that no node fell back to a private trunk copy.
//!
//! Nothing sleeps to synchronise: the job waits for four live nodes (`--min-nodes`), and the
//! bench's exit is awaited with a bounded timeout.
#![allow(clippy::unwrap_used)]

use super::forwarder_support::{forwarder_args, sample, scrape, sweep_on_two_sites};
use spacefabric_testkit::procs::{LocalCluster, free_tcp, free_udp};
use spacefabric_testkit::profiles::{Rate, two_sites};

const TOKEN: &str = "forwarder-test-token";

#[test]
fn an_all_reduce_job_crosses_the_forwarder_process() {
    let profiles = tempfile::tempdir().unwrap();
    // Two sites 10 ms apart over one shared 40 Mbit/s trunk per direction.
    let profile = two_sites(
        "fwd-two-sites",
        "earth",
        "moon",
        10.0,
        Some(Rate::Mbps(40.0)),
    )
    .described("forwarder process test")
    .write(profiles.path());

    let forwarder_addr = format!("127.0.0.1:{}", free_udp());
    let forwarder_metrics = free_tcp();
    let mut cluster = LocalCluster::start(
        &profile,
        TOKEN,
        &["--forwarder".into(), forwarder_addr.clone()],
    );
    let url = cluster.url.clone();
    let node_bin = cluster.node_bin.clone();
    cluster.add(
        "forwarder",
        &node_bin,
        &forwarder_args(
            &profile,
            None,
            &forwarder_addr,
            forwarder_metrics,
            &url,
            TOKEN,
        ),
    );
    let context = sweep_on_two_sites(&mut cluster);

    // Both directions of the one trunk carried the nodes' cross-site datagrams, and the
    // forwarder refused nothing.
    let metrics = scrape(forwarder_metrics);
    for link in ["earth->moon#0", "moon->earth#0"] {
        let sent = sample(
            &metrics,
            &format!("spacefabric_emu_datagrams_sent_total{{link=\"{link}\"}}"),
        )
        .unwrap_or(0.0);
        assert!(
            sent > 100.0,
            "trunk {link} carried {sent} datagrams: {metrics}\n{context}"
        );
    }
    let received = sample(&metrics, "spacefabric_forwarder_datagrams_received_total").unwrap();
    assert!(received > 200.0, "{metrics}");
    for reason in [
        "short",
        "magic",
        "version",
        "reserved",
        "trunk",
        "destination",
    ] {
        let series =
            format!("spacefabric_forwarder_datagrams_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&metrics, &series), Some(0.0), "{series}: {metrics}");
    }
    // Every node used the forwarder; none fell back to a private copy of the trunk.
    for p in &cluster.procs[2..] {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(
            log.contains("shared trunks go through the forwarder"),
            "{}: {log}",
            p.name
        );
        assert!(
            !log.contains("no forwarder configured"),
            "{}: {log}",
            p.name
        );
    }
}
