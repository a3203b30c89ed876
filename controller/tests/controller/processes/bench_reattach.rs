//! A controller restart during `spacefabric-bench allreduce --controller`, on real processes:
//! the built `spacefabric-controller` (shipped `lan` profile, a state dir), two
//! `spacefabric-node` agents and the bench. Once the job reports progress the test kills the
//! controller (SIGKILL: a crash) and starts it again on the same port and state dir. The
//! agents re-register and keep running the job; the bench must re-attach to its job by id and
//! still print the table, exit 0.
//!
//! Nothing sleeps to synchronise: the test polls the job within a bound and acts on what it
//! sees.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{JobState, ListJobsRequest};
use spacefabric_testkit::bins::{self, workspace_root};
use spacefabric_testkit::procs::{
    LocalCluster, Proc, controller_args, spawn_captured, wait_bounded,
};

const TOKEN: &str = "bench-reattach-token";
/// Bound for the whole run on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_reattaches_to_its_job_after_a_controller_restart() {
    let profile = workspace_root().join("netem-profiles/profiles/lan.toml");
    let mut cluster = LocalCluster::start(&profile, TOKEN, &[]);
    let url = cluster.url.clone();
    for i in 0..2 {
        cluster.add_node(&format!("node-{i}"), &[]);
    }
    let bench = cluster.bench(
        "allreduce",
        &[
            "--min-nodes",
            "2",
            "--algo",
            "ring",
            "-b",
            "4K",
            "-e",
            "64K",
            "-f",
            "4",
            "-n",
            "400",
        ],
    );
    let (bench_pid, bench_out) = spawn_captured(bench);
    let started = Instant::now();
    let context = |procs: &[Proc]| -> String { procs.iter().map(|p| p.log_tail(20)).collect() };

    // Wait for the job to make progress.
    loop {
        assert!(
            started.elapsed() < WAIT,
            "the job never made progress\n{}",
            context(&cluster.procs)
        );
        if let Ok(mut client) = ControllerClient::connect(url.clone()).await {
            let jobs = client
                .list_jobs(ListJobsRequest {
                    join_token: TOKEN.into(),
                    ..ListJobsRequest::default()
                })
                .await;
            if let Ok(jobs) = jobs
                && jobs
                    .get_ref()
                    .jobs
                    .iter()
                    .any(|j| j.state == JobState::Running as i32 && !j.progress.is_empty())
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Crash the controller and start it again on the same port and state dir.
    cluster.procs[0].kill_hard();
    let listen = url.trim_start_matches("http://").to_string();
    let args = controller_args(&listen, &profile, cluster.dir(), TOKEN);
    cluster.add("controller-2", &bins::controller(), &args);

    let out = tokio::task::spawn_blocking(move || wait_bounded(bench_pid, &bench_out, WAIT))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed\n{stdout}\n{stderr}\n{}",
        context(&cluster.procs)
    );
    assert!(stderr.contains("re-attaching"), "{stderr}");
    assert!(stdout.contains("65536"), "the table: {stdout}");
}
