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

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{JobState, ListJobsRequest};
use support::procs::{Proc, free_tcp, node_args, spawn_captured, wait_bounded};
use support::{workspace_bin, workspace_root};

const TOKEN: &str = "bench-reattach-token";
/// Bound for the whole run on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(300);

fn controller(bin: &Path, port: u16, dir: &Path, logs: &Path, name: &str) -> Proc {
    let profile = workspace_root().join("netem-profiles/profiles/lan.toml");
    Proc::spawn(
        name,
        bin,
        &[
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", free_tcp()),
            "--profile".into(),
            profile.display().to_string(),
            "--state-dir".into(),
            dir.join("controller").display().to_string(),
            "--join-token".into(),
            TOKEN.into(),
        ],
        logs,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_reattaches_to_its_job_after_a_controller_restart() {
    let controller_bin = workspace_bin("spacefabric-controller", "spacefabric-controller");
    let node_bin = workspace_bin("spacefabric-node", "spacefabric-node");
    let bench_bin = workspace_bin("spacefabric-bench", "spacefabric-bench");
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_tcp();
    let url = format!("http://127.0.0.1:{port}");
    let mut procs = vec![controller(
        &controller_bin,
        port,
        dir.path(),
        &logs,
        "controller",
    )];
    for i in 0..2 {
        let name = format!("node-{i}");
        procs.push(Proc::spawn(
            &name,
            &node_bin,
            &node_args(&url, TOKEN, &name),
            &logs,
        ));
    }
    let mut bench = Command::new(&bench_bin);
    bench.env_clear().args([
        "allreduce",
        "--controller",
        &url,
        "--join-token",
        TOKEN,
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
    ]);
    let (bench_pid, bench_out) = spawn_captured(bench);
    let started = Instant::now();
    let context = |procs: &[Proc]| -> String { procs.iter().map(|p| p.log_tail(20)).collect() };

    // Wait for the job to make progress.
    loop {
        assert!(
            started.elapsed() < WAIT,
            "the job never made progress\n{}",
            context(&procs)
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
    procs[0].kill_hard();
    procs.push(controller(
        &controller_bin,
        port,
        dir.path(),
        &logs,
        "controller-2",
    ));

    let out = tokio::task::spawn_blocking(move || wait_bounded(bench_pid, &bench_out, WAIT))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed\n{stdout}\n{stderr}\n{}",
        context(&procs)
    );
    assert!(stderr.contains("re-attaching"), "{stderr}");
    assert!(stdout.contains("65536"), "the table: {stdout}");
}
