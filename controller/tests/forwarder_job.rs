//! The forwarder in a process cluster: the built controller (`--forwarder ADDR`), one
//! `spacefabric-node forwarder` and four node processes, two per site of a small two-site
//! profile, run an all-reduce sweep through the controller. Asserts #wrong = 0, that the nodes
//! sent their cross-site traffic through the forwarder (its per-trunk counters on /metrics,
//! both directions, nothing refused) and that no node fell back to a private trunk copy.
//!
//! Nothing sleeps to synchronise: the job waits for four live nodes (`--min-nodes`), and the
//! bench's exit is awaited with a bounded timeout.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use support::procs::{Proc, free_tcp, free_udp, node_args, run_bounded};
use support::workspace_bin;

const TOKEN: &str = "forwarder-test-token";
/// Bound for the whole job on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(240);

/// Two sites 10 ms apart over one shared 40 Mbit/s trunk per direction.
const PROFILE: &str = r#"
name = "fwd-two-sites"
description = "forwarder process test"
[sites.earth]
[sites.moon]
[[links]]
from = "earth"
to = "earth"
delay_ms = 0.05
[[links]]
from = "moon"
to = "moon"
delay_ms = 0.05
[[links]]
from = "earth"
to = "moon"
delay_ms = 10
rate_mbps = 40
"#;

/// GET /metrics from `port` on 127.0.0.1 (the exporter answers any path).
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The value of the sample `name{labels}` in a Prometheus exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn an_all_reduce_job_crosses_the_forwarder_process() {
    let controller_bin = workspace_bin("spacefabric-controller", "spacefabric-controller");
    let node_bin = workspace_bin("spacefabric-node", "spacefabric-node");
    let bench_bin = workspace_bin("spacefabric-bench", "spacefabric-bench");
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let profile = dir.path().join("fwd-two-sites.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let profile = profile.display().to_string();

    let port = free_tcp();
    let url = format!("http://127.0.0.1:{port}");
    let forwarder_addr = format!("127.0.0.1:{}", free_udp());
    let forwarder_metrics = free_tcp();
    let controller = Proc::spawn(
        "controller",
        &controller_bin,
        &[
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", free_tcp()),
            "--profile".into(),
            profile.clone(),
            "--state-dir".into(),
            dir.path().join("controller").display().to_string(),
            "--join-token".into(),
            TOKEN.into(),
            "--forwarder".into(),
            forwarder_addr.clone(),
        ],
        &logs,
    );
    let forwarder = Proc::spawn(
        "forwarder",
        &node_bin,
        &[
            "forwarder".into(),
            "--profile".into(),
            profile,
            "--listen".into(),
            forwarder_addr,
            "--metrics-listen".into(),
            format!("127.0.0.1:{forwarder_metrics}"),
            "--controller".into(),
            url.clone(),
            "--join-token".into(),
            TOKEN.into(),
        ],
        &logs,
    );
    let mut procs = vec![controller, forwarder];
    for (i, site) in ["earth", "earth", "moon", "moon"].into_iter().enumerate() {
        let name = format!("node-{i}");
        let mut args = node_args(&url, TOKEN, &name);
        args.extend(["--site".to_string(), site.to_string()]);
        procs.push(Proc::spawn(&name, &node_bin, &args, &logs));
    }

    let mut bench = Command::new(&bench_bin);
    bench.env_clear().args([
        "allreduce",
        "--controller",
        &url,
        "--join-token",
        TOKEN,
        "--min-nodes",
        "4",
        "--algo",
        "ring,hier",
        "-b",
        "4K",
        "-e",
        "256K",
        "-f",
        "8",
        "-n",
        "1",
        "-w",
        "0",
    ]);
    let out = run_bounded(bench, WAIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs_text: String = procs.iter().map(|p| p.log_tail(15)).collect();
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\n{logs_text}");
    assert!(out.status.success(), "bench failed: {context}");
    assert!(
        stdout.contains("# Out of bounds values : 0 OK"),
        "missing OK footer: {context}"
    );

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
    for p in &procs[2..] {
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
