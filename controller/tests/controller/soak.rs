//! The soak of issue 18, on real processes (opt-in: `SPACEFABRIC_SOAK=1` and `--ignored`):
//! the built controller (shipped `lan` profile, a state dir) and four `spacefabric-node`
//! agents run back-to-back small jobs (a ping, then a small checked ring all-reduce, in turn,
//! each needing all four nodes) for `SPACEFABRIC_SOAK_SECS` (default 1800 s). Every
//! `SPACEFABRIC_SOAK_KILL_EVERY_SECS` (default 300 s) one node (not node-0) gets SIGKILL and a
//! replacement starts under its name; once, at 40 % of the run, the controller gets SIGKILL
//! and starts again on its port and state dir.
//!
//! Asserts: every job ends (succeeded, or failed with a reason) within
//! [`JOB_BOUND`]; the RSS of every process that lived through at least 4 samples of its
//! steady state grows by at most 10 % over it. The steady state is the second half of the
//! samples after warm-up: a leak grows through a process's whole life, while memory that
//! settles over the first few compactions after the history is full (the allocator's
//! working set for a compaction's copy of the state) stops growing. Growth from the first
//! sample after warm-up is printed too. A
//! controller's warm-up also lasts until its job history is full and it has compacted its
//! state once since (a compaction holds a copy of the state and its encoding): the retained
//! history (`--job-history`, here `SPACEFABRIC_SOAK_JOB_HISTORY`, default
//! [`SOAK_JOB_HISTORY`]) and one compaction's buffers are bounded memory that grows by design
//! up to its bound, and the soak looks for leaks, not for that. Prints a summary (jobs by outcome, failure reasons, RSS per process, the memory the
//! full history took, load average).
//!
//! `SPACEFABRIC_SOAK=1 cargo test -p spacefabric-controller --test controller soak -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    AllReduceJob, GetJobRequest, JobSpec, JobState, PingJob, SubmitJobRequest, job_spec,
};
use spacefabric_testkit::bins::{workspace_bin, workspace_root};
use spacefabric_testkit::procs::{ClusterSlot, Proc, controller_args, free_tcp, node_args};
use tonic::transport::Channel;

const TOKEN: &str = "soak-token";
const NODES: usize = 4;
/// Longest a job may take from its submission to its end, restarts included.
const JOB_BOUND: Duration = Duration::from_secs(600);
/// How often RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// RSS samples taken before this much of a process's life are warm-up.
const WARM_UP: Duration = Duration::from_secs(60);
/// Jobs the soak's controller retains (its `--job-history`): small enough that the history
/// is full within the first minutes of a 30-minute soak (the controller's default, 1,000, is
/// reached only after ~13 minutes of back-to-back small jobs, past the controller restart).
const SOAK_JOB_HISTORY: u64 = 200;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn controller(bin: &Path, port: u16, dir: &Path, logs: &Path, name: &str) -> Proc {
    let profile = workspace_root().join("netem-profiles/profiles/lan.toml");
    let history = vec!["--job-history".to_string(), job_history().to_string()];
    Proc::spawn(
        name,
        bin,
        &[
            controller_args(&format!("127.0.0.1:{port}"), &profile, dir, TOKEN),
            history,
        ]
        .concat(),
        logs,
    )
}

/// The soak controller's `--job-history` (`SPACEFABRIC_SOAK_JOB_HISTORY`).
fn job_history() -> u64 {
    std::env::var("SPACEFABRIC_SOAK_JOB_HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SOAK_JOB_HISTORY)
}

/// RSS of a live process in KiB (None once it is gone).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One process instance's RSS over its life.
struct Trace {
    name: String,
    pid: u32,
    started: Instant,
    /// (age of the process, when, RSS KiB).
    samples: Vec<(Duration, Instant, u64)>,
}

impl Trace {
    fn new(p: &Proc) -> Self {
        Self {
            name: p.name.clone(),
            pid: p.child.id(),
            started: Instant::now(),
            samples: Vec::new(),
        }
    }

    fn sample(&mut self) {
        if let Some(kib) = rss_kib(self.pid) {
            self.samples
                .push((self.started.elapsed(), Instant::now(), kib));
        }
    }

    /// (first, last, samples) of the steady state: the second half of the samples after
    /// warm-up (samples before `not_before` are warm-up too), and the first sample after
    /// warm-up. A leak grows through the whole life; memory that settles in the first
    /// compactions after the history is full does not grow in the second half.
    fn growth(&self, not_before: Option<Instant>) -> Option<Growth> {
        let after: Vec<u64> = self
            .samples
            .iter()
            .filter(|(age, at, _)| *age >= WARM_UP && not_before.is_none_or(|nb| *at >= nb))
            .map(|(_, _, k)| *k)
            .collect();
        let steady = after.get(after.len() / 2..)?;
        Some(Growth {
            after_warm_up: *after.first()?,
            first: *steady.first()?,
            last: *steady.last()?,
            samples: steady.len(),
        })
    }
}

/// A process's RSS in its steady state (KiB), see [`Trace::growth`].
struct Growth {
    /// The first sample after warm-up.
    after_warm_up: u64,
    /// The first and last samples of the steady state.
    first: u64,
    last: u64,
    samples: usize,
}

async fn client(url: &str) -> Option<ControllerClient<Channel>> {
    ControllerClient::connect(url.to_string()).await.ok()
}

fn spec(n: u64) -> JobSpec {
    let kind = if n.is_multiple_of(2) {
        job_spec::Kind::Ping(PingJob { iterations: 5 })
    } else {
        job_spec::Kind::AllReduce(AllReduceJob {
            min_bytes: 4 << 10,
            max_bytes: 64 << 10,
            factor: 4,
            iterations: 5,
            warmup: 1,
            collective_algorithms: vec![spacefabric_proto::v1::Algorithm::Ring as i32],
            check: true,
            ..AllReduceJob::default()
        })
    };
    JobSpec {
        name: format!("soak-{n}"),
        kind: Some(kind),
        deadline_ms: 0,
    }
}

fn status_name(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelled) => "cancelled",
        Ok(JobState::Succeeded) => "succeeded",
        _ => "?",
    }
}

#[derive(Default)]
struct Outcomes {
    succeeded: u64,
    failed: BTreeMap<String, u64>,
    longest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 30 minutes; SPACEFABRIC_SOAK=1 to run"]
async fn soak_back_to_back_jobs_with_kills_and_a_controller_restart() {
    if std::env::var("SPACEFABRIC_SOAK").as_deref() != Ok("1") {
        eprintln!("SPACEFABRIC_SOAK is not 1: soak skipped");
        return;
    }
    let total = env_secs("SPACEFABRIC_SOAK_SECS", 1800);
    let kill_every = env_secs("SPACEFABRIC_SOAK_KILL_EVERY_SECS", 300);
    // The only process cluster of this test binary while it runs.
    let _slot = ClusterSlot::take();
    let controller_bin = workspace_bin("spacefabric-controller", "spacefabric-controller");
    let node_bin = workspace_bin("spacefabric-node", "spacefabric-node");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("spacefabric-soak-{}", std::process::id()));
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    println!(
        "soak: {total:?}, a node killed every {kill_every:?}, logs in {}",
        logs.display()
    );
    println!("load average at start: {}", load_average());
    let port = free_tcp();
    let url = format!("http://127.0.0.1:{port}");

    let mut ctl = controller(&controller_bin, port, &dir, &logs, "controller-1");
    let mut traces = vec![Trace::new(&ctl)];
    let mut nodes: Vec<Proc> = (0..NODES)
        .map(|i| {
            let name = format!("node-{i}");
            Proc::spawn(&name, &node_bin, &node_args(&url, TOKEN, &name), &logs)
        })
        .collect();
    traces.extend(nodes.iter().map(Trace::new));

    let started = Instant::now();
    let restart_at = total.mul_f64(0.4);
    let mut restarted = false;
    let mut next_kill = kill_every;
    let mut kills = 0usize;
    let mut next_sample = Duration::ZERO;
    let mut outcomes = Outcomes::default();
    let mut submitted = 0u64;
    let mut stuck = Vec::new();
    let history = job_history();
    // When the controller's retained history reached its bound (controllers warm up until then).
    let mut history_full_at: Option<Instant> = None;
    // When the controller rewrote its snapshot (a compaction): a controller's working set
    // includes one compaction's buffers (a copy of the state and its encoding), so its warm-up
    // ends at its first compaction with a full history.
    let snapshot = dir.join("controller").join("state.json");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last_snapshot = mtime(&snapshot);
    let mut snapshots: Vec<Instant> = Vec::new();

    while started.elapsed() < total {
        // Submit the next job (retrying while the controller restarts).
        let spec = spec(submitted);
        let submit_started = Instant::now();
        let job_id = loop {
            assert!(
                submit_started.elapsed() < JOB_BOUND,
                "cannot submit for {JOB_BOUND:?}\n{}",
                ctl.log_tail(30)
            );
            if let Some(mut c) = client(&url).await {
                let r = c
                    .submit_job(SubmitJobRequest {
                        join_token: TOKEN.into(),
                        spec: Some(spec.clone()),
                        min_nodes: NODES as u32,
                    })
                    .await;
                if let Ok(r) = r {
                    break r.into_inner().job_id;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        submitted += 1;
        // Follow it to its end, doing the chores (samples, kills, the restart) meanwhile.
        let job_started = Instant::now();
        loop {
            let now = started.elapsed();
            if now >= next_sample {
                traces.iter_mut().for_each(Trace::sample);
                next_sample = now + SAMPLE_EVERY;
                let m = mtime(&snapshot);
                if m != last_snapshot {
                    last_snapshot = m;
                    snapshots.push(Instant::now());
                }
            }
            if !restarted && now >= restart_at {
                println!("+{:>5.0}s controller SIGKILL + restart", now.as_secs_f64());
                ctl.kill_hard();
                ctl = controller(&controller_bin, port, &dir, &logs, "controller-2");
                traces.push(Trace::new(&ctl));
                restarted = true;
            }
            if now >= next_kill && now + Duration::from_secs(30) < total {
                let victim = 1 + kills % (NODES - 1);
                kills += 1;
                let name = format!("node-{victim}");
                println!(
                    "+{:>5.0}s SIGKILL {name}, replacement started",
                    now.as_secs_f64()
                );
                nodes[victim].kill_hard();
                // Its own log file (`node-1#2.log`), the killed one's log stays.
                let replacement = Proc::spawn(
                    &format!("{name}#{}", kills + 1),
                    &node_bin,
                    &node_args(&url, TOKEN, &name),
                    &logs,
                );
                traces.push(Trace::new(&replacement));
                nodes[victim] = replacement;
                next_kill += kill_every;
            }
            if job_started.elapsed() > JOB_BOUND {
                stuck.push(job_id.clone());
                break;
            }
            let job = match client(&url).await {
                Some(mut c) => c
                    .get_job(GetJobRequest {
                        join_token: TOKEN.into(),
                        job_id: job_id.clone(),
                    })
                    .await
                    .ok()
                    .map(tonic::Response::into_inner),
                None => None,
            };
            if let Some(job) = job
                && JobState::try_from(job.state).is_ok_and(JobState::is_terminal)
            {
                outcomes.longest = outcomes.longest.max(job_started.elapsed());
                if history_full_at.is_none()
                    && outcomes.succeeded + outcomes.failed.values().sum::<u64>() + 1 >= history
                {
                    history_full_at = Some(Instant::now());
                    println!(
                        "+{:>5.0}s the controller's job history is full ({history} jobs)",
                        started.elapsed().as_secs_f64()
                    );
                }
                if job.state == JobState::Succeeded as i32 {
                    outcomes.succeeded += 1;
                } else {
                    println!(
                        "+{:>5.0}s {} {}: {}",
                        started.elapsed().as_secs_f64(),
                        job_id,
                        status_name(job.state),
                        job.error.chars().take(300).collect::<String>()
                    );
                    // Group reasons without their numbers (ranks, times, attempts).
                    let reason: String = job
                        .error
                        .chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .take(160)
                        .collect();
                    *outcomes.failed.entry(reason).or_default() += 1;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !stuck.is_empty() {
            break;
        }
    }
    traces.iter_mut().for_each(Trace::sample);
    println!("load average at end: {}", load_average());
    println!(
        "jobs: {submitted} submitted, {} succeeded, {} failed, longest {:.1}s, {} node kills, controller restarted: {restarted}",
        outcomes.succeeded,
        outcomes.failed.values().sum::<u64>(),
        outcomes.longest.as_secs_f64(),
        kills
    );
    for (reason, n) in &outcomes.failed {
        println!("  failed x{n}: {reason}");
    }
    println!(
        "{:<12} {:>8} {:>12} {:>12} {:>8} {:>8} {:>13} {:>8}",
        "process", "samples", "RSS first", "RSS last", "growth", "lived", "after warm-up", "growth"
    );
    println!(
        "(RSS first/last and growth: the steady state, the second half of the samples after \
         warm-up; the last two columns: from the first sample after warm-up)"
    );
    let mut grown = Vec::new();
    for t in &traces {
        let lived = t.samples.last().map_or(0.0, |(d, _, _)| d.as_secs_f64());
        let is_controller = t.name.starts_with("controller");
        let not_before = if is_controller {
            // Its first compaction once the history is full and it runs (never: every
            // controller sample is warm-up).
            let full_and_running = history_full_at.map(|h| h.max(t.started));
            Some(
                full_and_running
                    .and_then(|from| snapshots.iter().copied().find(|at| *at >= from))
                    .unwrap_or_else(Instant::now),
            )
        } else {
            None
        };
        match t.growth(not_before) {
            Some(g) => {
                let growth = g.last as f64 / g.first as f64 - 1.0;
                let since_warm_up = g.last as f64 / g.after_warm_up as f64 - 1.0;
                let n = g.samples;
                println!(
                    "{:<12} {n:>8} {:>9} KiB {:>9} KiB {:>7.1}% {lived:>7.0}s {:>9} KiB {:>7.1}%",
                    t.name,
                    g.first,
                    g.last,
                    growth * 100.0,
                    g.after_warm_up,
                    since_warm_up * 100.0
                );
                if n >= 4 && growth > 0.10 {
                    grown.push(format!("{}: {:.1}%", t.name, growth * 100.0));
                }
            }
            None if is_controller => println!(
                "{:<12} (no sample after warm-up and a full history) {lived:>7.0}s",
                t.name
            ),
            None => println!("{:<12} (too short-lived) {lived:>7.0}s", t.name),
        }
    }
    // The controllers' RSS over their lives, one sample a minute (history fills up first).
    for t in traces.iter().filter(|t| t.name.starts_with("controller")) {
        let minutes: Vec<String> = t
            .samples
            .iter()
            .step_by((60 / SAMPLE_EVERY.as_secs()).max(1) as usize)
            .map(|(d, _, k)| format!("{:.0}s {:.1}MB", d.as_secs_f64(), *k as f64 / 1024.0))
            .collect();
        println!("{} RSS: {}", t.name, minutes.join(", "));
    }
    // What the full history costs: the first controller's RSS from its first sample after
    // WARM_UP to its first sample with the history full.
    if let (Some(full), Some(first)) = (history_full_at, traces.first()) {
        let warm = first.samples.iter().find(|(age, _, _)| *age >= WARM_UP);
        let at_full = first.samples.iter().find(|(_, at, _)| *at >= full);
        if let (Some((_, _, a)), Some((_, _, b))) = (warm, at_full) {
            println!(
                "{} RSS while the history filled to {history} jobs: {:.1} MB -> {:.1} MB",
                first.name,
                *a as f64 / 1024.0,
                *b as f64 / 1024.0
            );
        }
    }
    assert!(stuck.is_empty(), "jobs that never ended: {stuck:?}");
    for reason in outcomes.failed.keys() {
        assert!(!reason.trim().is_empty(), "a job failed without a reason");
    }
    assert!(outcomes.succeeded > 0, "no job succeeded");
    assert!(grown.is_empty(), "RSS grew more than 10 %: {grown:?}");
    drop(nodes);
    drop(ctl);
}
