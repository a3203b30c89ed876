//! A real controller (tonic on 127.0.0.1) with real node agents in the same process:
//! registration and plan, failure detection and re-plan, restart from the state dir with a
//! job that finishes, authentication, invalid requests, TLS.
//!
//! Every wait is on a stream or a watched condition with a generous timeout; nothing sleeps
//! to synchronise.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use spacefabric_controller::core::CoreConfig;
use spacefabric_controller::server::{
    DEFAULT_MAX_MESSAGE_BYTES, ServerConfig, ServerHandle, spawn_server,
};
use spacefabric_controller::topology::Topology;
use spacefabric_node::agent::{Agent, AgentConfig, AgentError, AgentStatus};
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    AllReduceJob, GetJobRequest, Job, JobSpec, JobState, ListNodesRequest, ListNodesResponse,
    NodeState, PingJob, RegisterRequest, SubmitJobRequest, WatchJobRequest, job_spec,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const TOKEN: &str = "test-token";
const WAIT: Duration = Duration::from_secs(60);

/// Two sites, 20 ms apart one way (a scaled-down Earth–Moon), 1 ms inside a site.
fn topology() -> Topology {
    Topology::new(
        "test-earth-moon",
        "name = \"test-earth-moon\"\n",
        42,
        vec!["earth".into(), "moon".into()],
        |a, b| {
            if a == b {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(20)
            }
        },
    )
}

fn config(state_dir: Option<&Path>) -> ServerConfig {
    ServerConfig {
        topology: topology(),
        core: CoreConfig {
            controller_site: "earth".into(),
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_misses: 5,
            ..CoreConfig::default()
        },
        join_token: TOKEN.into(),
        state_dir: state_dir.map(Path::to_path_buf),
        light_delay: true,
        tls_names: None,
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
    }
}

async fn start(config: ServerConfig, addr: Option<SocketAddr>) -> ServerHandle {
    let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    spawn_server(config, listener).await.unwrap()
}

struct Node {
    status: watch::Receiver<AgentStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Node {
    /// Stops the agent cleanly (it deregisters).
    async fn leave(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }

    /// Kills the agent: heartbeats stop without a goodbye.
    fn kill(self) {
        self.task.abort();
    }
}

fn spawn_node(url: &str, name: &str, site: &str, port: u16) -> Node {
    let agent = Agent::new(AgentConfig {
        controller: url.into(),
        join_token: TOKEN.into(),
        name: name.into(),
        site: Some(site.into()),
        advertise: format!("127.0.0.1:{port}").parse().unwrap(),
        metrics_addr: None,
        controller_ca_pem: None,
        retry_interval: Duration::from_millis(50),
        state_dir: std::env::temp_dir().join("spacefabric-cluster-test"),
    });
    let status = agent.status();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        agent
            .run(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Node {
        status,
        stop: Some(stop),
        task,
    }
}

fn spawn_four(url: &str) -> Vec<Node> {
    (0..4)
        .map(|i| {
            let site = if i < 2 { "earth" } else { "moon" };
            spawn_node(url, &format!("node-{i}"), site, 17500 + i)
        })
        .collect()
}

async fn wait_status(node: &mut Node, what: &str, f: impl Fn(&AgentStatus) -> bool) -> AgentStatus {
    let waited = tokio::time::timeout(WAIT, async {
        node.status.wait_for(|s| f(s)).await.map(|s| s.clone())
    })
    .await;
    match waited {
        Ok(status) => status.unwrap(),
        Err(_) => panic!(
            "timed out waiting for {what}; last {:?}",
            *node.status.borrow()
        ),
    }
}

/// A controller without a state dir on a free port, and its URL.
async fn start_plain() -> (ServerHandle, String) {
    let server = start(config(None), None).await;
    let url = format!("http://{}", server.addr);
    (server, url)
}

/// Four nodes ([`spawn_four`]) once each has the plan of 4.
async fn four_with_a_plan(url: &str) -> Vec<Node> {
    let mut nodes = spawn_four(url);
    for node in &mut nodes {
        wait_status(node, "a plan of 4", |s| s.world_size == 4).await;
    }
    nodes
}

/// Every node leaves, then the controller shuts down.
async fn leave_and_shut_down(nodes: Vec<Node>, server: ServerHandle) {
    for node in nodes {
        node.leave().await;
    }
    server.shutdown().await.unwrap();
}

async fn client(url: &str) -> ControllerClient<Channel> {
    ControllerClient::new(
        Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

async fn list_nodes(c: &mut ControllerClient<Channel>) -> ListNodesResponse {
    c.list_nodes(ListNodesRequest {
        join_token: TOKEN.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

fn ping_spec(iterations: u32) -> JobSpec {
    JobSpec {
        deadline_ms: 0,
        name: "ping".into(),
        kind: Some(job_spec::Kind::Ping(PingJob { iterations })),
    }
}

/// Follows a job until `f` holds (the stream yields the whole job after every change).
/// Submits a ping job of 40 round trips on `min_nodes` nodes.
async fn submit_ping(c: &mut ControllerClient<Channel>, min_nodes: u32) -> Job {
    c.submit_job(SubmitJobRequest {
        join_token: TOKEN.into(),
        spec: Some(ping_spec(40)),
        min_nodes,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn watch_job_until(
    c: &mut ControllerClient<Channel>,
    job_id: &str,
    f: impl Fn(&Job) -> bool,
) -> Job {
    let mut stream = c
        .watch_job(WatchJobRequest {
            join_token: TOKEN.into(),
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(WAIT, async {
        loop {
            let event = stream
                .message()
                .await
                .unwrap()
                .expect("job stream ended early");
            let job = event.job.unwrap();
            if f(&job) {
                return job;
            }
        }
    })
    .await
    .expect("timed out watching the job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_register_and_get_a_plan_grouped_by_site() {
    let (server, url) = start_plain().await;
    let mut nodes = spawn_four(&url);
    let mut ranks = Vec::new();
    for node in &mut nodes {
        let s = wait_status(node, "a plan of 4", |s| {
            s.world_size == 4 && s.rank.is_some()
        })
        .await;
        ranks.push((s.rank.unwrap(), s.site.clone()));
    }
    let mut sorted: Vec<u32> = ranks.iter().map(|r| r.0).collect();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3], "every rank exactly once");
    for (rank, site) in &ranks {
        assert_eq!(
            site,
            if *rank < 2 { "earth" } else { "moon" },
            "earth ranks first"
        );
    }
    let mut c = client(&url).await;
    let listed = list_nodes(&mut c).await;
    assert_eq!(listed.nodes.len(), 4);
    assert!(
        listed
            .nodes
            .iter()
            .all(|n| n.state == NodeState::Alive as i32)
    );
    // The moon's deadline carries its 20 ms light delay on top of 5 × 100 ms.
    let moon = listed.nodes.iter().find(|n| n.site == "moon").unwrap();
    assert_eq!(moon.heartbeat_deadline_ms, 520);

    // Registering a live node's name without its key (a join-token holder taking it over
    // from another address) is refused; nothing changes. The node itself re-attaches with its
    // own key (core::tests, bench_reattach).
    let takeover = c
        .register(RegisterRequest {
            join_token: TOKEN.into(),
            node_name: "node-0".into(),
            preferred_site: "earth".into(),
            advertise_addr: "127.0.0.1:17599".into(),
            csr_pem: String::new(),
            metrics_addr: String::new(),
            time_dilation: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(takeover.code(), Code::AlreadyExists, "{takeover:?}");
    let listed = list_nodes(&mut c).await;
    assert_eq!(listed.nodes.len(), 4);
    assert!(
        listed
            .nodes
            .iter()
            .all(|n| n.advertise_addr != "127.0.0.1:17599"),
        "the name was taken over"
    );

    // A clean leave takes the node out of the plan at once.
    let leaving = nodes.pop().unwrap();
    leaving.leave().await;
    for node in &mut nodes {
        wait_status(node, "a plan of 3 after a leave", |s| s.world_size == 3).await;
    }
    let listed = list_nodes(&mut c).await;
    assert_eq!(
        listed
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Left as i32)
            .count(),
        1
    );
    leave_and_shut_down(nodes, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_heartbeats_stop_is_declared_dead_and_the_plan_is_announced() {
    let (server, url) = start_plain().await;
    let mut nodes = four_with_a_plan(&url).await;
    let before = nodes[0].status.borrow().plan_version;
    let victim = nodes.pop().unwrap();
    let victim_id = victim.status.borrow().node_id.clone().unwrap();
    victim.kill();
    for node in &mut nodes {
        let s = wait_status(node, "the re-plan without the dead node", |s| {
            s.world_size == 3
        })
        .await;
        assert!(s.plan_version > before);
        assert!(s.rank.unwrap() < 3);
    }
    let mut c = client(&url).await;
    let listed = list_nodes(&mut c).await;
    let dead = listed
        .nodes
        .iter()
        .find(|n| n.node_id == victim_id)
        .unwrap();
    assert_eq!(dead.state, NodeState::Dead as i32);
    assert_eq!(dead.rank, None);
    leave_and_shut_down(nodes, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_from_its_state_dir_and_the_job_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(Some(dir.path())), None).await;
    let addr = server.addr;
    let url = format!("http://{addr}");
    let mut nodes = four_with_a_plan(&url).await;
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| n.status.borrow().node_id.clone().unwrap())
        .collect();
    let mut c = client(&url).await;
    let job = submit_ping(&mut c, 4).await;
    // Wait until the job made progress, then take the controller down mid-job.
    watch_job_until(&mut c, &job.job_id, |j| {
        j.progress.iter().any(|p| p.committed_step >= 2)
    })
    .await;
    server.shutdown().await.unwrap();

    let server = start(config(Some(dir.path())), Some(addr)).await;
    for node in &mut nodes {
        wait_status(node, "re-attached", |s| s.registrations >= 2).await;
    }
    let ids_after: Vec<String> = nodes
        .iter()
        .map(|n| n.status.borrow().node_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ids_after, "same identities after the restart");
    let mut c = client(&url).await;
    let done = watch_job_until(&mut c, &job.job_id, |j| {
        j.state != JobState::Running as i32 && j.state != JobState::Pending as i32
    })
    .await;
    assert_eq!(
        done.state,
        JobState::Succeeded as i32,
        "job error: {}",
        done.error
    );
    assert_eq!(done.results.len(), 4);
    assert!(done.results.iter().all(|r| r.ok));
    let listed = list_nodes(&mut c).await;
    assert_eq!(listed.nodes.len(), 4, "re-attached, not duplicated");
    // Moon nodes measured the light delay: RTT ≥ 2 × 20 ms.
    let moon_rank = listed
        .nodes
        .iter()
        .find(|n| n.site == "moon")
        .unwrap()
        .rank
        .unwrap();
    let moon = done.results.iter().find(|r| r.rank == moon_rank).unwrap();
    assert!(moon.metrics["rtt_p50_ms"] >= 40.0, "{:?}", moon.metrics);
    leave_and_shut_down(nodes, server).await;
}

/// Copies every file directly in `from` into `to` (created if needed).
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A controller restarted from a state older than a job's results (a crash between the
/// nodes' reports and their persistence) starts the finished attempt again. The nodes must
/// answer with the result they already delivered, not run the attempt twice: the restarted
/// job's results are exactly the first ones (a second ping run would measure new RTTs), and
/// no node finished a second job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_before_it_saved_the_results_gets_them_again_not_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let before_results = dir.path().join("before-results");
    let server = start(config(Some(&state)), None).await;
    let addr = server.addr;
    let url = format!("http://{addr}");
    let mut nodes: Vec<Node> = (0..2)
        .map(|i| spawn_node(&url, &format!("again-{i}"), "earth", 17510 + i))
        .collect();
    for node in &mut nodes {
        wait_status(node, "a plan of 2", |s| s.world_size == 2).await;
    }
    let mut c = client(&url).await;
    let job = submit_ping(&mut c, 2).await;
    // The state as of a running attempt, saved aside...
    let running = watch_job_until(&mut c, &job.job_id, |j| {
        j.state == JobState::Running as i32 && j.progress.iter().any(|p| p.committed_step >= 2)
    })
    .await;
    copy_files(&state, &before_results);
    // ... then the attempt finishes and its results are persisted.
    let first = watch_job_until(&mut c, &job.job_id, |j| j.state != JobState::Running as i32).await;
    assert_eq!(first.state, JobState::Succeeded as i32, "{}", first.error);
    for node in &mut nodes {
        wait_status(node, "the job finished", |s| s.jobs_finished == 1).await;
    }
    // The controller comes back from the state saved before the results.
    server.shutdown().await.unwrap();
    std::fs::remove_dir_all(&state).unwrap();
    copy_files(&before_results, &state);
    let server = start(config(Some(&state)), Some(addr)).await;
    let mut c = client(&url).await;
    let again = c
        .get_job(GetJobRequest {
            join_token: TOKEN.into(),
            job_id: job.job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.state,
        JobState::Running as i32,
        "the restored state predates the results"
    );
    let done = watch_job_until(&mut c, &job.job_id, |j| j.state != JobState::Running as i32).await;
    assert_eq!(done.state, JobState::Succeeded as i32, "{}", done.error);
    assert_eq!(done.attempt, running.attempt, "the same attempt ended");
    let by_rank = |job: &Job| {
        let mut results = job.results.clone();
        results.sort_by_key(|r| r.rank);
        results
    };
    assert_eq!(
        by_rank(&done),
        by_rank(&first),
        "the nodes re-sent the results they had delivered"
    );
    for node in &nodes {
        assert_eq!(
            node.status.borrow().jobs_finished,
            1,
            "no node ran the attempt twice"
        );
    }
    leave_and_shut_down(nodes, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_is_unauthenticated() {
    let (server, url) = start_plain().await;
    let mut c = client(&url).await;
    for token in ["wrong", "", "test-token-but-longer"] {
        let err = c
            .register(RegisterRequest {
                join_token: token.into(),
                node_name: "intruder".into(),
                advertise_addr: "127.0.0.1:7500".into(),
                ..RegisterRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        let err = c
            .list_nodes(ListNodesRequest {
                join_token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    // An agent with a wrong token stops with an error instead of retrying forever.
    let agent = Agent::new(AgentConfig {
        controller: url.clone(),
        join_token: "wrong".into(),
        name: "intruder".into(),
        site: None,
        advertise: "127.0.0.1:17599".parse().unwrap(),
        metrics_addr: None,
        controller_ca_pem: None,
        retry_interval: Duration::from_millis(50),
        state_dir: std::env::temp_dir().join("spacefabric-cluster-test"),
    });
    let result = tokio::time::timeout(WAIT, agent.run(std::future::pending()))
        .await
        .unwrap();
    assert!(
        matches!(&result, Err(AgentError::Refused(s)) if s.code() == Code::Unauthenticated),
        "{result:?}"
    );
    assert!(list_nodes(&mut c).await.nodes.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_errors_naming_the_field_and_the_server_survives() {
    let (server, url) = start_plain().await;
    let mut c = client(&url).await;
    let bad = JobSpec {
        deadline_ms: 0,
        name: "bad".into(),
        kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
            min_bytes: 1024,
            max_bytes: 1 << 20,
            factor: 1,
            iterations: 5,
            warmup: 1,
            collective_algorithms: vec![spacefabric_proto::v1::Algorithm::Ring as i32],
            check: true,
            ..AllReduceJob::default()
        })),
    };
    let err = c
        .submit_job(SubmitJobRequest {
            join_token: TOKEN.into(),
            spec: Some(bad),
            min_nodes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("spec.all_reduce.factor"),
        "{}",
        err.message()
    );
    let err = c
        .submit_job(SubmitJobRequest {
            join_token: TOKEN.into(),
            spec: None,
            min_nodes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("spec"), "{}", err.message());

    let err = c
        .get_job(GetJobRequest {
            join_token: TOKEN.into(),
            job_id: "job-404".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    for (field, request) in [
        (
            "advertise_addr",
            RegisterRequest {
                advertise_addr: "0.0.0.0:7500".into(),
                node_name: "n".into(),
                ..RegisterRequest::default()
            },
        ),
        (
            "node_name",
            RegisterRequest {
                advertise_addr: "127.0.0.1:7500".into(),
                node_name: "bad name".into(),
                ..RegisterRequest::default()
            },
        ),
        (
            "preferred_site",
            RegisterRequest {
                advertise_addr: "127.0.0.1:7500".into(),
                node_name: "n".into(),
                preferred_site: "mars".into(),
                ..RegisterRequest::default()
            },
        ),
        (
            "csr_pem",
            RegisterRequest {
                advertise_addr: "127.0.0.1:7500".into(),
                node_name: "n".into(),
                csr_pem: "garbage".into(),
                ..RegisterRequest::default()
            },
        ),
    ] {
        let err = c
            .register(RegisterRequest {
                join_token: TOKEN.into(),
                ..request
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }

    // Oversized: refused by the decoder, not a crash.
    let huge = RegisterRequest {
        join_token: TOKEN.into(),
        node_name: "x".repeat(2 * DEFAULT_MAX_MESSAGE_BYTES),
        advertise_addr: "127.0.0.1:7500".into(),
        ..RegisterRequest::default()
    };
    let err = c.register(huge).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);

    // Garbage bytes on a gRPC method: an error status, and the server keeps serving.
    let raw = reqwest_like_garbage(server.addr).await;
    assert_eq!(raw, Some(Code::InvalidArgument));
    assert!(list_nodes(&mut c).await.nodes.is_empty());
    server.shutdown().await.unwrap();
}

/// Sends a gRPC frame whose payload is not a protobuf message; returns the grpc-status.
async fn reqwest_like_garbage(addr: SocketAddr) -> Option<Code> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/spacefabric.v1.Controller/ListNodes");
    let codec = RawCodec;
    let result: Result<tonic::Response<Vec<u8>>, tonic::Status> = grpc
        .unary(
            tonic::Request::new(vec![0xff, 0xff, 0xff, 0x0f, 0x01]),
            path,
            codec,
        )
        .await;
    match result {
        Ok(_) => None,
        Err(status) => Some(status.code()),
    }
}

/// A codec that sends and receives raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;
    fn encoder(&mut self) -> Self::Encoder {
        Self
    }
    fn decoder(&mut self) -> Self::Decoder {
        Self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_with_a_certificate_from_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(dir.path()));
    cfg.tls_names = Some(vec!["localhost".into(), "127.0.0.1".into()]);
    let server = start(cfg, None).await;
    let ca = std::fs::read_to_string(dir.path().join("ca.cert.pem")).unwrap();
    assert_eq!(ca, server.ca_cert_pem);
    let url = format!("https://localhost:{}", server.addr.port());
    let channel = Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = ControllerClient::new(channel);
    assert!(list_nodes(&mut c).await.nodes.is_empty());
    // A CSR made by the fabric's TLS code is signed into an identity the fabric accepts.
    let request = spacefabric_fabric::transport::tls::NodeIdentity::csr("fabric-node").unwrap();
    let reg = c
        .register(RegisterRequest {
            join_token: TOKEN.into(),
            node_name: "fabric-node".into(),
            advertise_addr: "127.0.0.1:17601".into(),
            csr_pem: request.csr_pem().to_string(),
            ..RegisterRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let identity = request
        .into_identity(&reg.certificate_pem, &reg.ca_certificate_pem)
        .unwrap();
    assert_eq!(identity.name(), "fabric-node");
    // An agent over TLS registers and gets a node certificate from the same CA.
    let mut agent_cfg = AgentConfig {
        controller: url,
        join_token: TOKEN.into(),
        name: "tls-node".into(),
        site: Some("moon".into()),
        advertise: "127.0.0.1:17600".parse().unwrap(),
        metrics_addr: None,
        controller_ca_pem: Some(ca),
        retry_interval: Duration::from_millis(50),
        state_dir: std::env::temp_dir().join("spacefabric-cluster-test"),
    };
    agent_cfg.site = Some("moon".into());
    let agent = Agent::new(agent_cfg);
    let mut status = agent.status();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(WAIT, status.wait_for(|s| s.world_size == 2))
        .await
        .unwrap()
        .unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    server.shutdown().await.unwrap();
}
