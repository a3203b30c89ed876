//! Recovery of a train job from a killed node, on real processes: the built
//! `spacefabric-controller` (a two-site profile, `north` and `south`, 5 ms apart), four
//! `spacefabric-node` agents (two per site) and `spacefabric-bench train --controller`
//! submitting a sync job that commits every 10 steps.
//!
//! Once every rank has committed step 20 the test kills node-3 (SIGKILL: no goodbye). The
//! controller must notice from the missing heartbeats, re-plan the three survivors and restart
//! the job from the last committed step; the test then starts a replacement, node-4, on the
//! same site: the job must grow to four ranks again and the replacement must fetch the
//! committed state from its site peer. The job must complete with its final loss reported,
//! and the bench must report no committed step lost.
//!
//! Nothing sleeps to synchronise: the test follows the job with `WatchJob` and acts on what
//! it sees; every wait has a bound. The times it measures (kill → restart → training again)
//! are printed, not asserted.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    Job, JobState, ListJobsRequest, StateSourceKind, TrainResult, WatchJobRequest, job_result,
};
use spacefabric_testkit::bins::workspace_bin;
use spacefabric_testkit::procs::{
    ClusterSlot, Proc, spawn_captured, spawn_controller, wait_bounded,
};

const TOKEN: &str = "train-recovery-token";
/// Bound for the whole job on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(300);

const PROFILE: &str = r#"
name = "two-halls"
description = "Two machine halls 5 ms apart (test profile)"
seed = 1

[sites.north]
description = "Hall north"

[sites.south]
description = "Hall south"

[[links]]
from = "north"
to = "north"
delay_ms = 0.05
rate_mbps = 10000

[[links]]
from = "south"
to = "south"
delay_ms = 0.05
rate_mbps = 10000

[[links]]
from = "north"
to = "south"
delay_ms = 5
rate_mbps = 1000
"#;

fn node_args(url: &str, name: &str, site: &str, state: &std::path::Path) -> Vec<String> {
    let mut args = spacefabric_testkit::procs::node_args(url, TOKEN, name);
    args.extend([
        "--site".into(),
        site.into(),
        "--state-dir".into(),
        state.join(name).display().to_string(),
    ]);
    args
}

fn min_committed(job: &Job) -> u64 {
    job.progress
        .iter()
        .map(|p| p.committed_step)
        .min()
        .unwrap_or(0)
}

fn world(job: &Job) -> usize {
    job.plan.as_ref().map_or(0, |p| p.world_size as usize)
}

fn running(job: &Job) -> bool {
    job.state == JobState::Running as i32
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Attempt 1 on four ranks, until every rank committed step 20.
    BeforeKill,
    /// node-3 killed; waiting for attempt 2 on three ranks.
    AwaitRestart,
    /// Attempt 2 running; waiting until every rank is past the resumed step.
    AwaitResumed,
    /// node-4 started; waiting for attempt 3 on four ranks.
    AwaitGrow,
    /// Waiting for the end.
    AwaitEnd,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_replanned_around_and_a_replacement_fetches_state_from_its_site() {
    // MLP 32→16×2→8: 32·16+16 + 16·16+16 + 16·8+8 parameters.
    recover_from_a_killed_node(
        &[
            "--model",
            "mlp",
            "--width",
            "16",
            "--samples",
            "8192",
            "--target-loss",
            "0.5",
        ],
        936,
    )
    .await;
}

/// The same recovery with the transformer language model (`lm-tiny` on the committed
/// Shakespeare text): the resume path carries the transformer's parameters and AdamW state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformer_job_recovers_from_a_killed_node_like_the_mlp() {
    // lm-tiny, 74-character vocabulary: embeddings 74·16 + 8·16, one block (two norms 2·16,
    // attention 16·48 + 16·16, MLP 2·16·64), final norm 16; the head is tied.
    recover_from_a_killed_node(
        &[
            "--model",
            "lm-tiny",
            "--eval-samples",
            "8",
            "--target-loss",
            "1.0",
        ],
        4432,
    )
    .await;
}

/// Runs a 600-step sync job on four node processes with `model_args`, kills node-3 after
/// step 20 is committed everywhere, adds a replacement once the survivors train again, and
/// checks that nothing committed was lost and that every rank trained the model of
/// `parameters` parameters.
async fn recover_from_a_killed_node(model_args: &[&str], parameters: u64) {
    // One cluster of five processes at a time (also against the other process tests of this
    // binary): two at once on a 2-core machine double every step's time against the same bound.
    let _slot = ClusterSlot::take();
    let controller_bin = workspace_bin("spacefabric-controller", "spacefabric-controller");
    let node_bin = workspace_bin("spacefabric-node", "spacefabric-node");
    let bench_bin = workspace_bin("spacefabric-bench", "spacefabric-bench");
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let profile = dir.path().join("two-halls.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let state = dir.path().join("nodes");

    let (controller, url) = spawn_controller(&controller_bin, &profile, dir.path(), TOKEN, &logs);
    let mut procs = vec![controller];
    for (i, site) in ["north", "north", "south", "south"].iter().enumerate() {
        let name = format!("node-{i}");
        procs.push(Proc::spawn(
            &name,
            &node_bin,
            &node_args(&url, &name, site, &state),
            &logs,
        ));
    }

    let mut bench = Command::new(&bench_bin);
    bench.env_clear().args([
        "train",
        "--controller",
        &url,
        "--join-token",
        TOKEN,
        "--min-nodes",
        "4",
        "--strategy",
        "sync",
        "--sync-steps",
        "600",
        "--step-time",
        "0.02",
        "--commit-every",
        "10",
        "--eval-every",
        "20",
    ]);
    bench.args(model_args);
    let (bench_pid, bench_out) = spawn_captured(bench);
    let started = Instant::now();
    let context = |procs: &[Proc]| -> String { procs.iter().map(|p| p.log_tail(25)).collect() };

    // The controller may not listen yet: retry within the bound.
    let mut client = loop {
        match ControllerClient::connect(url.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    started.elapsed() < WAIT,
                    "controller unreachable: {e}\n{}",
                    context(&procs)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // The bench submits the job once it reaches the controller: poll for it within the bound.
    let job_id = loop {
        let jobs = client
            .list_jobs(ListJobsRequest {
                join_token: TOKEN.into(),
                ..ListJobsRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .jobs;
        if let Some(j) = jobs.first() {
            break j.job_id.clone();
        }
        assert!(
            started.elapsed() < WAIT,
            "no job submitted\n{}",
            context(&procs)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stream = client
        .watch_job(WatchJobRequest {
            join_token: TOKEN.into(),
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    let mut phase = Phase::BeforeKill;
    let (mut t_kill, mut t_restart, mut t_resumed) = (None, None, None);
    let (mut committed_at_kill, mut resume_2, mut resume_3) = (0, 0, 0);
    let mut last = None;
    loop {
        let next = tokio::time::timeout(WAIT.saturating_sub(started.elapsed()), stream.message())
            .await
            .unwrap_or_else(|_| panic!("job stuck in {phase:?}\n{}", context(&procs)))
            .unwrap();
        let Some(event) = next else { break };
        let Some(job) = event.job else { continue };
        match phase {
            Phase::BeforeKill
                if job.attempt == 1
                    && running(&job)
                    && job.progress.len() == 4
                    && min_committed(&job) >= 20 =>
            {
                committed_at_kill = min_committed(&job);
                procs[4].kill_hard();
                t_kill = Some(Instant::now());
                phase = Phase::AwaitRestart;
            }
            Phase::AwaitRestart if job.attempt == 2 && running(&job) => {
                assert_eq!(world(&job), 3, "attempt 2 runs on the survivors");
                resume_2 = job.resume_from_step;
                t_restart = Some(Instant::now());
                phase = Phase::AwaitResumed;
            }
            Phase::AwaitResumed
                if job.attempt == 2
                    && job.progress.len() == 3
                    && job.progress.iter().all(|p| p.step > resume_2) =>
            {
                t_resumed = Some(Instant::now());
                procs.push(Proc::spawn(
                    "node-4",
                    &node_bin,
                    &node_args(&url, "node-4", "south", &state),
                    &logs,
                ));
                phase = Phase::AwaitGrow;
            }
            Phase::AwaitGrow if job.attempt == 3 && running(&job) => {
                assert_eq!(world(&job), 4, "attempt 3 takes the replacement in");
                resume_3 = job.resume_from_step;
                phase = Phase::AwaitEnd;
            }
            _ => {}
        }
        let done = !matches!(
            JobState::try_from(job.state),
            Ok(JobState::Pending | JobState::Running)
        );
        last = Some(job);
        if done {
            break;
        }
    }
    let job = last.unwrap();
    let out = tokio::task::spawn_blocking(move || {
        wait_bounded(
            bench_pid,
            &bench_out,
            WAIT.saturating_sub(started.elapsed()),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\n{}", context(&procs));
    assert_eq!(
        phase,
        Phase::AwaitEnd,
        "the job ended in {phase:?}: {context}"
    );
    assert_eq!(
        job.state,
        JobState::Succeeded as i32,
        "job {}: {context}",
        job.error
    );
    assert!(out.status.success(), "bench failed: {context}");

    // Nothing committed was lost: attempt 2 resumed from at least the commit every rank had
    // when node-3 died, attempt 3 from at least attempt 2's start.
    assert!(
        resume_2 >= committed_at_kill && resume_2 > 0,
        "attempt 2 resumed from {resume_2}, {committed_at_kill} was committed: {context}"
    );
    assert!(resume_3 >= resume_2, "{context}");
    for n in [2, 3] {
        assert!(
            stdout.contains(&format!("# restart of sync: attempt {n}")),
            "no restart {n} reported: {context}"
        );
    }
    assert_eq!(
        stdout.matches(" 0 committed steps lost").count(),
        2,
        "committed steps were lost: {context}"
    );
    assert!(
        stdout.contains("heartbeats stopped: node-3"),
        "the restart's reason is not reported: {context}"
    );

    // Four results; the replacement (rank 3, on south) fetched the commit from rank 2, its
    // site peer; every rank ran all 600 steps; rank 0 reports a real final loss.
    assert_eq!(job.results.len(), 4, "{context}");
    let results: Vec<&TrainResult> = job
        .results
        .iter()
        .map(|r| {
            assert!(r.ok, "rank {}: {}", r.rank, r.error);
            match r.result.as_ref().and_then(|r| r.kind.as_ref()) {
                Some(job_result::Kind::Train(t)) => t,
                other => panic!("rank {}: not a train result: {other:?}", r.rank),
            }
        })
        .collect();
    for r in &results {
        assert_eq!(r.steps, 600, "{r:?}");
        assert_eq!(r.attempt, 3, "{r:?}");
        assert_eq!(
            r.parameters, parameters,
            "the job trained another model: {r:?}"
        );
    }
    let replacement = results
        .iter()
        .find(|r| r.state_source.as_ref().map(|s| s.kind) == Some(StateSourceKind::Peer as i32))
        .unwrap_or_else(|| panic!("nobody fetched state from a peer: {context}"));
    assert_eq!(replacement.site, "south", "{replacement:?}");
    let source = replacement.state_source.as_ref().unwrap();
    assert_eq!(source.peer_site, "south");
    assert_eq!(source.peer_rank, 2);
    let rank0 = results.iter().find(|r| r.rank == 0).unwrap();
    let final_loss = rank0.final_loss.unwrap();
    let first_loss = rank0.curve[0].loss;
    assert!(
        final_loss.is_finite() && final_loss < first_loss,
        "final loss {final_loss}, first point of the attempt {first_loss}"
    );
    let secs = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2} s", b.duration_since(a).as_secs_f64()),
        _ => "-".into(),
    };
    eprintln!(
        "recovery: committed at kill {committed_at_kill}, attempt 2 resumed from {resume_2}, attempt 3 from {resume_3}; \
         kill → restart {}, restart → training again {}; final loss {final_loss:.4}",
        secs(t_kill, t_restart),
        secs(t_restart, t_resumed)
    );
    eprintln!("{stdout}");
}
