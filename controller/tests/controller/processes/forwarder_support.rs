//! What the forwarder process tests share: the forwarder's command line, the two-site
//! all-reduce sweep they run through it, and reading its /metrics.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use spacefabric_testkit::procs::LocalCluster;

/// Bound for the whole job on a loaded 2-core machine.
pub(super) const WAIT: Duration = Duration::from_secs(240);

/// `spacefabric-node forwarder` arguments: `profile`, listening on `listen` (UDP), /metrics
/// on `metrics_port`, registered with `url`; `--shard` when given.
pub(super) fn forwarder_args(
    profile: &Path,
    shard: Option<&str>,
    listen: &str,
    metrics_port: u16,
    url: &str,
    token: &str,
) -> Vec<String> {
    let mut args = vec![
        "forwarder".into(),
        "--profile".into(),
        profile.display().to_string(),
    ];
    if let Some(shard) = shard {
        args.extend(["--shard".into(), shard.to_string()]);
    }
    args.extend([
        "--listen".into(),
        listen.to_string(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
        "--controller".into(),
        url.to_string(),
        "--join-token".into(),
        token.to_string(),
    ]);
    args
}

/// Two nodes per site (earth, moon), then a small ring and hierarchical all-reduce sweep
/// through the controller; asserts every result exact and returns the cluster's
/// context (its logs) for failure messages.
pub(super) fn sweep_on_two_sites(cluster: &mut LocalCluster) -> String {
    for (i, site) in ["earth", "earth", "moon", "moon"].into_iter().enumerate() {
        cluster.add_node(&format!("node-{i}"), &["--site", site]);
    }
    let (stdout, context) = cluster.run_bench(
        "allreduce",
        &[
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
        ],
        WAIT,
    );
    assert!(
        stdout.contains("# Out of bounds values : 0 OK"),
        "missing OK footer: {context}"
    );
    context
}

/// GET /metrics from `port` on 127.0.0.1 (the exporter answers any path).
pub(super) fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The value of the sample `name{labels}` in a Prometheus exposition.
pub(super) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
