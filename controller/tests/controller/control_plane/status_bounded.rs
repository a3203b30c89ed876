//! `status` after 1,000 jobs: a real controller (in process, tonic over 127.0.0.1) loads a
//! state dir holding 1,000 finished all-reduce jobs on 4 nodes (spec, plan), each with 4 rank
//! results of about 20 KB of state JSON each (170 sweep points; 80 MB of history), and answers what `spacefabric-controller status` asks for: ListNodes and the
//! newest 20 jobs without results. The test checks both answers stay small however long the
//! history, and prints their sizes and round trips next to the unbounded ListJobs the issue's
//! `status` used to send:
//!
//! `cargo test -p spacefabric-controller --test controller control_plane::status_bounded -- --nocapture`
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use prost::Message;
use spacefabric_controller::core::{JobRecord, Now, PersistedState};
use spacefabric_controller::state_log::StateLog;
use spacefabric_controller::store::StateDir;
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    AllReduceJob, Job, JobPlan, JobSpec, JobState, ListJobsRequest, ListNodesRequest, NodeResult,
    Peer, job_spec,
};
use spacefabric_testkit::controller::{lan_config, serve};
use spacefabric_testkit::results::sweep_result;
use tonic::transport::Endpoint;

const TOKEN: &str = "status-token";
const JOBS: u64 = 1000;

fn history(jobs: u64) -> PersistedState {
    let mut state = PersistedState::new(
        "lan",
        Now {
            mono: Duration::ZERO,
            unix_ms: 1,
        },
    );
    for n in 1..=jobs {
        state.jobs.push(JobRecord {
            job: Job {
                job_id: format!("job-{n}"),
                state: JobState::Succeeded as i32,
                attempt: 1,
                spec: Some(JobSpec {
                    name: format!("sweep-{n}"),
                    kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
                        min_bytes: 4 << 10,
                        max_bytes: 64 << 20,
                        factor: 2,
                        iterations: 20,
                        warmup: 5,
                        collective_algorithms: vec![spacefabric_proto::v1::Algorithm::Ring as i32],
                        check: true,
                        ..AllReduceJob::default()
                    })),
                    deadline_ms: 0,
                }),
                plan: Some(JobPlan {
                    plan_version: 3,
                    world_size: 4,
                    peers: (0..4)
                        .map(|rank| Peer {
                            rank,
                            name: format!("node-{rank}"),
                            site: "lan".into(),
                            addr: format!("127.0.0.1:{}", 7500 + rank),
                            node_id: format!("n{rank}"),
                        })
                        .collect(),
                    collective_algorithms: vec![spacefabric_proto::v1::Algorithm::Ring as i32],
                    ..JobPlan::default()
                }),
                submitted_unix_ms: 1_700_000_000_000 + n,
                finished_unix_ms: 1_700_000_001_000 + n,
                deadline_ms: 180_000,
                results: (0..4)
                    .map(|rank| NodeResult {
                        rank,
                        ok: true,
                        result: Some(sweep_result(rank, 170)),
                        ..NodeResult::default()
                    })
                    .collect(),
                ..Job::default()
            },
            min_nodes: 1,
            participants: Vec::new(),
        });
    }
    state.next_job = jobs + 1;
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_stays_bounded_after_1000_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = StateLog::open(StateDir::open(dir.path()).unwrap()).unwrap();
    log.compact(&history(JOBS)).unwrap();
    drop(log);
    let config = {
        let mut config = lan_config(TOKEN);
        config.state_dir = Some(dir.path().to_path_buf());
        config
    };
    let server = serve(config).await;
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ControllerClient::new(channel).max_decoding_message_size(usize::MAX);

    // What `status` sends (cli::status): ListNodes, then the newest 20 jobs without results.
    let mut rounds = Vec::new();
    let (mut nodes_bytes, mut jobs_bytes) = (0, 0);
    for _ in 0..20 {
        let t = Instant::now();
        let nodes = client
            .list_nodes(ListNodesRequest {
                join_token: TOKEN.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let jobs = client
            .list_jobs(ListJobsRequest {
                join_token: TOKEN.into(),
                page_size: 20,
                page_token: String::new(),
                omit_results: true,
                newest_first: true,
            })
            .await
            .unwrap()
            .into_inner();
        rounds.push(t.elapsed());
        nodes_bytes = nodes.encoded_len();
        jobs_bytes = jobs.encoded_len();
        assert_eq!(jobs.jobs.len(), 20);
        assert_eq!(jobs.jobs[0].job_id, format!("job-{JOBS}"));
        assert!(jobs.jobs.iter().all(|j| j.results.is_empty()));
    }
    rounds.sort();
    // The answer does not grow with the history: far below the 4 MiB default decode limit.
    assert!(
        jobs_bytes < 16 << 10,
        "status's ListJobs answer is {jobs_bytes} bytes"
    );

    // The unbounded question the old `status` asked: every job with its results.
    let t = Instant::now();
    let mut all_bytes = 0usize;
    let mut token = String::new();
    loop {
        let page = client
            .list_jobs(ListJobsRequest {
                join_token: TOKEN.into(),
                page_size: 1000,
                page_token: token,
                omit_results: false,
                newest_first: false,
            })
            .await
            .unwrap()
            .into_inner();
        all_bytes += page.encoded_len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let all_time = t.elapsed();
    println!("status after {JOBS} jobs (80 KB of results each), 20 rounds:");
    println!(
        "  ListNodes {nodes_bytes} B + ListJobs(20 newest, no results) {jobs_bytes} B; round trip of both p50 {:.2} ms, max {:.2} ms",
        rounds[rounds.len() / 2].as_secs_f64() * 1e3,
        rounds[rounds.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "  for comparison, every job with results (what status asked before paging): {:.1} MB in {:.0} ms",
        all_bytes as f64 / 1e6,
        all_time.as_secs_f64() * 1e3
    );
    server.shutdown().await.unwrap();
}
