//! Two forwarder processes share a profile's trunks: the built controller
//! (`--forwarder A,B`), `spacefabric-node forwarder --shard 0/2` and `--shard 1/2`, and four
//! node processes, two per site of a two-site profile with two terminals per direction (four
//! directed trunks), run an all-reduce sweep. Asserts #wrong = 0, that each forwarder carried
//! exactly the trunks netem_profiles::TrunkCarriers gives it (its per-trunk counters on
//! /metrics: its own > 0, the other's absent) and that neither refused anything (no node sent
//! a trunk's datagrams to the wrong forwarder).
//!
//! Nothing sleeps to synchronise: the job waits for four live nodes (`--min-nodes`), and the
//! bench's exit is awaited with a bounded timeout.
#![allow(clippy::unwrap_used)]

use super::forwarder_support::{forwarder_args, sample, scrape, sweep_on_two_sites};
use spacefabric_testkit::procs::{LocalCluster, free_tcp, free_udp};
use spacefabric_testkit::profiles::{Rate, two_sites};

const TOKEN: &str = "forwarder-shards-token";

#[test]
fn two_forwarders_each_carry_only_their_trunks() {
    let profiles = tempfile::tempdir().unwrap();
    // Two sites 10 ms apart, two 40 Mbit/s terminals per direction.
    let profile = two_sites("fwd-shards", "earth", "moon", 10.0, Some(Rate::Mbps(40.0)))
        .last_link_extra("terminals = 2")
        .described("two forwarders process test")
        .write(profiles.path());

    let addrs = [
        format!("127.0.0.1:{}", free_udp()),
        format!("127.0.0.1:{}", free_udp()),
    ];
    let metrics_ports = [free_tcp(), free_tcp()];
    let mut cluster =
        LocalCluster::start(&profile, TOKEN, &["--forwarder".into(), addrs.join(",")]);
    let url = cluster.url.clone();
    let node_bin = cluster.node_bin.clone();
    for (i, addr) in addrs.iter().enumerate() {
        cluster.add(
            &format!("forwarder-{i}"),
            &node_bin,
            &forwarder_args(
                &profile,
                Some(&format!("{i}/2")),
                addr,
                metrics_ports[i],
                &url,
                TOKEN,
            ),
        );
    }
    let context = sweep_on_two_sites(&mut cluster);

    // Four equal trunks, heaviest first to the least loaded, ties in trunk order
    // (TrunkCarriers): earth->moon#0 and moon->earth#0 on forwarder 0, the #1s on 1. Two
    // earth and two moon nodes put two node pairs on each terminal of each direction.
    let mine = [
        ["earth->moon#0", "moon->earth#0"],
        ["earth->moon#1", "moon->earth#1"],
    ];
    for (i, port) in metrics_ports.into_iter().enumerate() {
        let metrics = scrape(port);
        let sent = |link: &str| {
            sample(
                &metrics,
                &format!("spacefabric_emu_datagrams_sent_total{{link=\"{link}\"}}"),
            )
        };
        for link in mine[i] {
            let n = sent(link).unwrap_or(0.0);
            assert!(
                n > 20.0,
                "forwarder {i} carried {n} datagrams on its trunk {link}: {metrics}\n{context}"
            );
        }
        for link in mine[1 - i] {
            assert_eq!(
                sent(link).unwrap_or(0.0),
                0.0,
                "forwarder {i} carried {link}, another forwarder's trunk: {metrics}"
            );
        }
        for reason in ["trunk", "other_shard"] {
            let series =
                format!("spacefabric_forwarder_datagrams_rejected_total{{reason=\"{reason}\"}}");
            assert_eq!(
                sample(&metrics, &series),
                Some(0.0),
                "forwarder {i} {series}: {metrics}"
            );
        }
        let log = std::fs::read_to_string(&cluster.procs[1 + i].log).unwrap();
        assert!(
            log.contains(&format!("carries={},{}", mine[i][0], mine[i][1])),
            "forwarder {i} names the trunks it carries: {log}"
        );
    }
    for p in &cluster.procs[3..] {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(
            log.contains("shared trunks go through the forwarders"),
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
