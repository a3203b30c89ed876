//! The controller and four nodes as real processes, configured ONLY through the environment
//! the Kubernetes manifests set (the earth-moon overlay as `kubectl kustomize` renders it: the
//! controller Deployment and the per-site node StatefulSets), with nothing inherited from the
//! test's own environment. Each variable is resolved the way the kubelet would: `value`,
//! `secretKeyRef` (from the rendered Secret), Downward API `metadata.name` (the pod name
//! `spacefabric-node-<site>-<ordinal>`), `metadata.labels['...']` (the pod template's labels)
//! and `status.podIP` (127.0.0.1 here), then `$(VAR)` references.
//!
//! What one host cannot give every process and a pod network can is adapted, and only that:
//! - each pod has its own IP, so the contract ports (7400, 9400, 7500, 9500) map to free ports
//!   on 127.0.0.1, and `0.0.0.0` / `[::]` binds become 127.0.0.1 binds;
//! - the Service name `spacefabric-controller` resolves to 127.0.0.1;
//! - paths under a volume mount point map to the volume's content: the profiles ConfigMap
//!   (deploy/k8s/base/profiles) and the state PersistentVolumeClaim (a temporary directory).
//!
//! Then: the controller's gRPC health answers SERVING (its probes), the nodes register under
//! their pod names on the site of their StatefulSet — ordinals 0 and 3 of earth and moon, and
//! ordinals 4 and 9 that only a `kubectl scale` beyond the rendered 4 replicas creates —
//! advertise the pod IP with their QUIC port, answer `GET /readyz` 200 once registered and
//! `/livez` and `/metrics` (their probes and scrape), and SIGTERM makes each leave cleanly
//! within the pod's grace period.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_norway::Value;
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{ListNodesRequest, ListNodesResponse, NodeState};
use spacefabric_testkit::procs::{ClusterSlot, Proc, free_tcp, free_udp};
use support::kustomize::render;
use support::{at, containers, find, seq_at, str_at, workspace_bin, workspace_root};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Generous bound for anything to happen on a loaded 2-core machine (registration crosses
/// the emulated Earth-Moon light delay twice).
const WAIT: Duration = Duration::from_secs(90);
const POD_IP: &str = "127.0.0.1";
/// (site, ordinal) of the node pods started: the rendered replicas are 4 per site, so
/// ordinals 4 and 9 are pods that `kubectl scale --replicas=5` / `=10` would add.
const PODS: [(&str, u32); 4] = [("earth", 0), ("earth", 9), ("moon", 3), ("moon", 4)];

/// What the test does with a pod's process (`spacefabric_testkit::procs::Proc`, killed if the
/// test fails before it is stopped): its whole log, whether it still runs, and the kubelet's
/// stop.
trait PodProcess {
    fn log_text(&self) -> String;
    fn assert_running(&mut self);
    fn terminate(&mut self, grace: Duration);
}

impl PodProcess for Proc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails (with its log) if the process has already exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// SIGTERM, as the kubelet sends it, then wait up to `grace` for a clean exit.
    fn terminate(&mut self, grace: Duration) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", self.name);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM:\n{}",
                    self.name,
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {grace:?} after SIGTERM (the pod's grace period):\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Where one pod's world differs from this host's: ports, the Service name, mounted paths.
struct PodWorld<'a> {
    pod_name: &'a str,
    pod_labels: Option<&'a Value>,
    ports: BTreeMap<u16, u16>,
    controller_service: &'a str,
    mounts: BTreeMap<String, PathBuf>,
    secrets: &'a [Value],
}

impl PodWorld<'_> {
    /// The environment of a container, as the kubelet would build it, adapted to this host.
    fn env_of(&self, container: &Value) -> BTreeMap<String, String> {
        let mut env: Vec<(String, String)> = Vec::new();
        for entry in seq_at(container, &["env"]) {
            let name = str_at(entry, &["name"]).unwrap().to_string();
            let raw = if let Some(v) = str_at(entry, &["value"]) {
                expand(v, &env)
            } else if let Some(field) = str_at(entry, &["valueFrom", "fieldRef", "fieldPath"]) {
                match field {
                    "metadata.name" => self.pod_name.to_string(),
                    "status.podIP" => POD_IP.to_string(),
                    other => match other
                        .strip_prefix("metadata.labels['")
                        .and_then(|l| l.strip_suffix("']"))
                    {
                        Some(label) => self
                            .pod_labels
                            .and_then(|l| str_at(l, &[label]))
                            .unwrap_or_else(|| panic!("{name}: the pod has no label {label}"))
                            .to_string(),
                        None => panic!("{name}: Downward API field {other} not emulated here"),
                    },
                }
            } else if let Some(secret) = at(entry, &["valueFrom", "secretKeyRef"]) {
                let secret_name = str_at(secret, &["name"]).unwrap();
                let key = str_at(secret, &["key"]).unwrap();
                let secret = find(self.secrets, "Secret", secret_name);
                str_at(secret, &["stringData", key]).unwrap().to_string()
            } else {
                panic!("{name}: unsupported env source");
            };
            env.push((name, self.adapt(&raw)));
        }
        env.into_iter().collect()
    }

    fn adapt(&self, value: &str) -> String {
        for (mount, local) in &self.mounts {
            if let Some(rest) = value.strip_prefix(mount.as_str()) {
                return format!("{}{rest}", local.display());
            }
        }
        let (prefix, host_port) = match value.split_once("://") {
            Some((scheme, rest)) => (format!("{scheme}://"), rest),
            None => (String::new(), value),
        };
        if let Some((host, port)) = host_port.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
        {
            let host = if host == "0.0.0.0" || host == "[::]" || host == self.controller_service {
                POD_IP
            } else {
                host
            };
            let port = self.ports.get(&port).copied().unwrap_or(port);
            return format!("{prefix}{host}:{port}");
        }
        value.to_string()
    }
}

/// Kubernetes' `$(VAR)` expansion from the variables defined before this one.
fn expand(value: &str, defined: &[(String, String)]) -> String {
    let mut out = value.to_string();
    for (name, v) in defined {
        out = out.replace(&format!("$({name})"), v);
    }
    assert!(!out.contains("$("), "{value}: unresolved reference");
    out
}

fn command_args(container: &Value) -> Vec<String> {
    seq_at(container, &["command"])
        .iter()
        .chain(seq_at(container, &["args"]))
        .skip(1)
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn grace_period(workload: &Value) -> Duration {
    let secs = at(
        workload,
        &["spec", "template", "spec", "terminationGracePeriodSeconds"],
    )
    .and_then(Value::as_u64)
    .unwrap_or(30); // Kubernetes' default
    Duration::from_secs(secs)
}

/// `GET path` over plain HTTP/1.1, as the kubelet's httpGet probe does: status and body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(status, _)| status)
}

async fn channel(url: &str) -> Option<Channel> {
    Endpoint::from_shared(url.to_string())
        .ok()?
        .connect()
        .await
        .ok()
}

async fn health_serving(url: &str) -> bool {
    let Some(channel) = channel(url).await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

async fn list_nodes(url: &str, token: &str) -> Option<ListNodesResponse> {
    ControllerClient::new(channel(url).await?)
        .list_nodes(ListNodesRequest {
            join_token: token.to_string(),
        })
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

/// Polls `f` (a watched condition, not a sleep standing in for one) until it holds or WAIT.
async fn wait_until<T>(
    what: &str,
    procs: &mut [&mut Proc],
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_and_nodes_run_from_the_manifests_environment_alone() {
    // A controller and four nodes: one process cluster of this test binary at a time.
    let _slot = ClusterSlot::take();
    let base_dir = workspace_root().join("deploy/k8s/base");
    let docs = render(&workspace_root().join("deploy/k8s/overlays/earth-moon"));
    let deployment = find(&docs, "Deployment", "spacefabric-controller");
    let ctl_container = &containers(deployment)[0];
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();

    // --- the controller pod
    let grpc = free_tcp();
    let ctl_world = PodWorld {
        pod_name: "spacefabric-controller-0",
        pod_labels: at(deployment, &["spec", "template", "metadata", "labels"]),
        ports: BTreeMap::from([(7400, grpc), (9400, free_tcp())]),
        controller_service: "spacefabric-controller",
        mounts: BTreeMap::from([
            (
                "/etc/spacefabric/profiles".to_string(),
                base_dir.join("profiles"),
            ),
            ("/var/lib/spacefabric".to_string(), state_dir.clone()),
        ]),
        secrets: &docs,
    };
    let ctl_env = ctl_world.env_of(ctl_container);
    let token = ctl_env["SPACEFABRIC_JOIN_TOKEN"].clone();
    let mut controller = Proc::spawn_with_env(
        "controller",
        Path::new(env!("CARGO_BIN_EXE_spacefabric-controller")),
        &command_args(ctl_container),
        &ctl_env,
        tmp.path(),
    );
    let url = format!("http://{POD_IP}:{grpc}");
    // readiness: the gRPC health service answers SERVING
    wait_until(
        "the controller's gRPC health SERVING",
        &mut [&mut controller],
        async || health_serving(&url).await.then_some(()),
    )
    .await;
    let ctl_metrics: SocketAddr = ctl_env["SPACEFABRIC_METRICS_LISTEN"].parse().unwrap();
    assert!(
        http_get(ctl_metrics, "/metrics")
            .is_some_and(|(_, body)| body.contains("# TYPE process_cpu_seconds_total counter")),
        "controller /metrics carries the process metrics"
    );
    assert_eq!(
        http_get_status(ctl_metrics, "/metrics"),
        Some(200),
        "controller /metrics"
    );

    // --- the node pods
    let node_bin = workspace_bin("spacefabric-node", "spacefabric-node");
    let mut nodes = Vec::new();
    let mut expected = BTreeMap::new();
    let mut statefulset = None;
    for (site, ordinal) in PODS {
        let sts = find(&docs, "StatefulSet", &format!("spacefabric-node-{site}"));
        let replicas = at(sts, &["spec", "replicas"])
            .and_then(Value::as_u64)
            .unwrap();
        assert_eq!(replicas, 4, "PODS assume 4 rendered replicas per site");
        statefulset = Some(sts);
        let node_container = &containers(sts)[0];
        let pod_name = format!("spacefabric-node-{site}-{ordinal}");
        let quic = free_udp();
        let world = PodWorld {
            pod_name: &pod_name,
            pod_labels: at(sts, &["spec", "template", "metadata", "labels"]),
            ports: BTreeMap::from([(7400, grpc), (7500, quic), (9500, free_tcp())]),
            controller_service: "spacefabric-controller",
            mounts: BTreeMap::new(),
            secrets: &docs,
        };
        let env = world.env_of(node_container);
        assert_eq!(env["SPACEFABRIC_NODE_NAME"], pod_name);
        assert_eq!(env["SPACEFABRIC_SITE"], site);
        assert!(!env["SPACEFABRIC_ADVERTISE"].starts_with("0.0.0.0"));
        expected.insert(
            pod_name.clone(),
            (
                site,
                // the bare pod IP and the port of SPACEFABRIC_LISTEN
                format!("{}:{quic}", env["SPACEFABRIC_ADVERTISE"]),
                env["SPACEFABRIC_METRICS_LISTEN"].clone(),
            ),
        );
        nodes.push(Proc::spawn_with_env(
            &pod_name,
            &node_bin,
            &command_args(node_container),
            &env,
            tmp.path(),
        ));
    }
    let statefulset = statefulset.unwrap();

    // every node registered under its pod name, on the site its ordinal picks, with its pod IP
    let listing = {
        let mut procs: Vec<&mut Proc> = nodes.iter_mut().collect();
        procs.push(&mut controller);
        wait_until("4 nodes alive and in the plan", &mut procs, async || {
            let listing = list_nodes(&url, &token).await?;
            let alive = listing
                .nodes
                .iter()
                .filter(|n| n.state == NodeState::Alive as i32 && n.rank.is_some())
                .count();
            (alive == PODS.len()).then_some(listing)
        })
        .await
    };
    for node in &listing.nodes {
        let (site, advertise, _) = expected.get(&node.name).unwrap_or_else(|| {
            panic!(
                "unexpected node name {:?}; expected the pod names",
                node.name
            )
        });
        assert_eq!(
            node.site, *site,
            "{}: site from its StatefulSet's label",
            node.name
        );
        assert_eq!(
            &node.advertise_addr, advertise,
            "{}: advertises its pod IP",
            node.name
        );
    }
    let mut ranks: Vec<u32> = listing.nodes.iter().filter_map(|n| n.rank).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, [0, 1, 2, 3]);

    // the probes the StatefulSet declares (readiness /readyz: registered; liveness /livez)
    // and the scrape (/metrics), on the metrics port
    // and the scrape (/metrics), on the metrics port. The controller lists a node as soon as
    // it admits it; the node itself is ready once the answer has crossed the light delay back.
    for (name, (_, _, metrics)) in &expected {
        let addr: SocketAddr = metrics.parse().unwrap();
        let mut procs: Vec<&mut Proc> = nodes.iter_mut().collect();
        wait_until(&format!("{name} /readyz 200"), &mut procs, async || {
            (http_get_status(addr, "/readyz") == Some(200)).then_some(())
        })
        .await;
        for path in ["/livez", "/metrics"] {
            assert_eq!(http_get_status(addr, path), Some(200), "{name} {path}");
        }
    }

    // Each node has its registration answer (which takes the light delay back to the Moon)
    // once it has timed a heartbeat round trip: only then is it a member that can leave.
    for (name, (_, _, metrics)) in &expected {
        let addr: SocketAddr = metrics.parse().unwrap();
        let mut procs: Vec<&mut Proc> = nodes.iter_mut().collect();
        wait_until(
            &format!("{name}'s first heartbeat round trip"),
            &mut procs,
            async || {
                http_get(addr, "/metrics")
                    .filter(|(_, body)| body.contains("spacefabric_node_heartbeat_rtt_seconds"))
            },
        )
        .await;
    }

    // SIGTERM (a pod deleted or scaled away): each node leaves cleanly within the grace period
    let grace = grace_period(statefulset);
    for node in &mut nodes {
        node.terminate(grace);
    }
    let listing = list_nodes(&url, &token).await.unwrap();
    for node in &listing.nodes {
        let log = nodes
            .iter()
            .find(|p| p.name == node.name)
            .map(PodProcess::log_text)
            .unwrap_or_default();
        assert_eq!(
            node.state,
            NodeState::Left as i32,
            "{} after SIGTERM; its log:\n{log}\ncontroller log:\n{}",
            node.name,
            controller.log_text()
        );
    }
    controller.terminate(grace_period(deployment));
}
