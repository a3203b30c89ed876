//! `spacefabric-bench train --controller URL`: each strategy as a `TrainJob` of a running
//! cluster's controller, on its node processes. The bench submits the job, follows it with
//! `WatchJob` (progress on stderr), notes every restart the controller makes (a node lost, a
//! replacement joined) and what it cost, then combines the ranks' results into the same table
//! and files as the in-process run.
//!
//! A restart is read from the job's updates: the controller records it in `Job.restarts` (its
//! reason) and starts attempt N+1 from the lowest step every rank had committed. The bench
//! compares that step with the last commit it saw before the restart (committed steps lost:
//! the target is none) and with the furthest step reached (uncommitted steps redone), and times
//! how long after the restart training passed the resumed step again.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use spacefabric_node::jobs::NodeTrainResult;
use spacefabric_node::jobs::result_messages::train_of;
use spacefabric_node::train::{LossPoint, StrategyKind};
use spacefabric_proto::v1::{Job, JobSpec, JobState, job_spec};

use super::{StrategyResult, TrainArgs, Variant, emit, train_job};
use crate::controller_client::{block_on, join, required_token, slowest_step, submit_and_follow};
use crate::progress_bar::ProgressBar;
use spacefabric_node::jobs::train::train_config;

/// One restart of a job, as the bench saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Restart {
    /// The attempt that started.
    pub(crate) attempt: u32,
    /// Why the controller restarted the job.
    pub(crate) reason: String,
    /// Seconds after submission the new attempt started.
    pub(crate) at_s: f64,
    /// The committed step it resumed from.
    pub(crate) resumed_from_step: u64,
    /// The last step every reporting rank had committed before the restart.
    pub(crate) last_committed_before: u64,
    /// Committed steps lost (`last_committed_before − resumed_from_step`; the target is 0).
    pub(crate) committed_steps_lost: u64,
    /// Steps past the last commit that were computed and must be redone.
    pub(crate) steps_redone: u64,
    /// Ranks before and after.
    pub(crate) world_before: u32,
    pub(crate) world_after: u32,
    /// Seconds from the restart until every rank of the new attempt was past the resumed step.
    pub(crate) training_resumed_after_s: Option<f64>,
}

/// Follows one job's updates and notes its restarts. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub(crate) struct RestartTracker {
    attempt: u32,
    world: u32,
    max_step: u64,
    last_committed: u64,
    first_running_s: Option<f64>,
    running_since_s: f64,
    pub(crate) restarts: Vec<Restart>,
}

impl RestartTracker {
    /// Takes one state of the job seen `now_s` seconds after submission.
    pub(crate) fn observe(&mut self, job: &Job, now_s: f64) {
        let state = JobState::try_from(job.state).ok();
        if state != Some(JobState::Running) && !is_terminal(state) {
            return;
        }
        let world = job.plan.as_ref().map_or(0, |p| p.world_size);
        if job.attempt > self.attempt {
            if self.attempt > 0 {
                // The controller records why it restarted (`Job.restarts`).
                let reason = job
                    .restarts
                    .iter()
                    .rev()
                    .find(|r| r.attempt == job.attempt)
                    .map(|r| r.reason.clone())
                    .unwrap_or_default();
                self.restarts.push(Restart {
                    attempt: job.attempt,
                    reason,
                    at_s: now_s,
                    resumed_from_step: job.resume_from_step,
                    last_committed_before: self.last_committed,
                    committed_steps_lost: self.last_committed.saturating_sub(job.resume_from_step),
                    steps_redone: self.max_step.saturating_sub(job.resume_from_step),
                    world_before: self.world,
                    world_after: world,
                    training_resumed_after_s: None,
                });
            }
            if self.first_running_s.is_none() {
                self.first_running_s = Some(now_s);
            }
            self.attempt = job.attempt;
            self.world = world;
            self.running_since_s = now_s;
            self.max_step = job.resume_from_step;
            self.last_committed = job.resume_from_step;
        }
        if job.progress.is_empty() {
            return;
        }
        let min_step = job.progress.iter().map(|p| p.step).min().unwrap_or(0);
        let min_committed = job
            .progress
            .iter()
            .map(|p| p.committed_step)
            .min()
            .unwrap_or(0);
        if job.progress.len() as u32 >= self.world {
            self.last_committed = self.last_committed.max(min_committed);
        }
        self.max_step = self
            .max_step
            .max(job.progress.iter().map(|p| p.step).max().unwrap_or(0));
        if let Some(r) = self.restarts.last_mut()
            && r.attempt == job.attempt
            && r.training_resumed_after_s.is_none()
            && job.progress.len() as u32 >= self.world
            && min_step > r.resumed_from_step
        {
            r.training_resumed_after_s = Some(now_s - r.at_s);
        }
    }

    /// Seconds between the first attempt's start and the last attempt's start.
    pub(crate) fn lost_to_restarts_s(&self) -> f64 {
        self.first_running_s
            .map_or(0.0, |first| self.running_since_s - first)
    }
}

fn is_terminal(state: Option<JobState>) -> bool {
    state.is_some_and(JobState::is_terminal)
}

/// Runs every strategy in `kinds` as a job of the controller at `url`.
pub(crate) fn run(args: &TrainArgs, url: &str, kinds: &[Variant]) -> anyhow::Result<ExitCode> {
    let token = required_token(args.join_token.as_ref())?;
    block_on(run_jobs(args, url, &token, kinds))?
}

async fn run_jobs(
    args: &TrainArgs,
    url: &str,
    token: &str,
    kinds: &[Variant],
) -> anyhow::Result<ExitCode> {
    let (mut client, nodes, dilation) =
        join(url, args.ca_cert.as_deref(), token, args.time_dilation).await?;
    // The bench's own clock reads wall time: divided by K, as the nodes' times are.
    if dilation.is_dilated() {
        eprintln!("# time dilation K = {dilation}: every time below is emulated time (wall / K)");
    }
    let mut results = Vec::new();
    let mut sites = Vec::new();
    let mut params = 0;
    for variant in kinds {
        let kind = variant.kind;
        let job = train_job(args, variant)?;
        let tokens_per_step = train_config(&job)
            .map(|c| c.model.tokens_per_step(c.batch))
            .unwrap_or(0);
        let spec = JobSpec {
            deadline_ms: 0,
            name: format!("spacefabric-bench train {}", variant.label()),
            kind: Some(job_spec::Kind::Train(job)),
        };
        eprintln!("# {}: submitting to {url} ...", variant.label());
        let started = tokio::time::Instant::now();
        let mut tracker = RestartTracker::default();
        let mut last_line = String::new();
        let bar = ProgressBar::new(0, "steps");
        let done = submit_and_follow(&mut client, token, spec, args.min_nodes, |job| {
            let now = dilation.emulated(started.elapsed()).as_secs_f64();
            let seen = tracker.restarts.len();
            tracker.observe(job, now);
            for r in &tracker.restarts[seen..] {
                bar.note(&format!(
                    "# restart: attempt {} at +{:.1} s ({}): {} → {} ranks, resuming from committed step {}",
                    r.attempt, r.at_s, r.reason, r.world_before, r.world_after, r.resumed_from_step
                ));
            }
            let (done, total) = slowest_step(job);
            let line = progress_line(job);
            // A log (stderr to a file) keeps the job's coarse progress as plain lines, once
            // per change: the recovery recipe in docs/BENCHMARKS.md waits on them.
            if !bar.is_drawn() && line != last_line {
                eprintln!("{line}");
            }
            bar.set(done, total, line.clone());
            last_line = line;
        })
        .await
        .with_context(|| format!("the {} job on {url}", variant.label()))?;
        bar.finish();
        let wall = dilation.emulated(started.elapsed());
        let (mut result, rank_sites, n_params) =
            combine(kind, &done, &tracker, args.target_loss, wall)?;
        result.label = variant.label();
        result.tokens = tokens_per_step
            .saturating_mul(result.steps)
            .saturating_mul(rank_sites.len() as u64);
        eprintln!(
            "#   done in {:.1} s, final loss {}",
            wall.as_secs_f64(),
            result.final_loss.map_or("-".into(), |l| format!("{l:.4}"))
        );
        sites = rank_sites;
        params = n_params;
        results.push(result);
    }
    let code = emit(
        args,
        &nodes.profile_name,
        &sites,
        params,
        &results,
        Some(url),
    )?;
    for r in &results {
        for x in &r.restarts {
            println!(
                "# restart of {}: attempt {} at +{:.1} s ({}); {} → {} ranks; resumed from committed step {} (last commit seen {}: {} committed steps lost, {} uncommitted steps redone); training past step {} again after {}",
                r.label,
                x.attempt,
                x.at_s,
                x.reason,
                x.world_before,
                x.world_after,
                x.resumed_from_step,
                x.last_committed_before,
                x.committed_steps_lost,
                x.steps_redone,
                x.resumed_from_step,
                x.training_resumed_after_s
                    .map_or("-".to_string(), |s| format!("{s:.1} s")),
            );
        }
    }
    Ok(code)
}

/// One progress line: the slowest rank's step and the commit every rank holds, both rounded
/// down to 50 steps so a long run prints a line per 50 steps, not per step.
fn progress_line(job: &Job) -> String {
    let state = JobState::try_from(job.state).map_or("?", |s| s.as_str_name());
    let world = job.plan.as_ref().map_or(0, |p| p.world_size);
    match job.progress.iter().min_by_key(|p| p.step) {
        Some(p) if job.progress.len() as u32 >= world => format!(
            "[job {} {state} attempt {}] step {}/{} on every rank, committed {}",
            job.job_id,
            job.attempt,
            p.step / 50 * 50,
            p.total_steps,
            job.progress
                .iter()
                .map(|p| p.committed_step)
                .min()
                .unwrap_or(0)
                / 50
                * 50
        ),
        _ => format!(
            "[job {} {state} attempt {}] {} of {world} ranks reporting",
            job.job_id,
            job.attempt,
            job.progress.len()
        ),
    }
}

/// One strategy's result from every rank's `NodeTrainResult`: rank 0's curve with the whole
/// cluster's bytes at each point, slowest rank's wall time, per-node means of the times.
fn combine(
    kind: StrategyKind,
    job: &Job,
    tracker: &RestartTracker,
    target: f64,
    job_wall: Duration,
) -> anyhow::Result<(StrategyResult, Vec<String>, usize)> {
    let mut ranks: Vec<NodeTrainResult> = Vec::new();
    for r in &job.results {
        let parsed = train_of(r)
            .and_then(NodeTrainResult::from_message)
            .with_context(|| format!("job {}: result of rank {}", job.job_id, r.rank))?;
        ranks.push(parsed);
    }
    ranks.sort_by_key(|r| r.rank);
    let Some(first) = ranks.first() else {
        bail!("job {}: no rank reported a result", job.job_id);
    };
    for r in &ranks {
        if let spacefabric_node::train::recovery::StateSource::Peer { rank, site, bytes } =
            &r.state_source
        {
            eprintln!(
                "#   rank {} ({}) fetched the commit of step {} from rank {rank} ({site}, {bytes} B)",
                r.rank, r.site, r.resumed_from_step
            );
        }
    }
    let bytes_at = |step: u64| -> Vec<(String, u64)> {
        let mut sum: Vec<(String, u64)> = Vec::new();
        for r in &ranks {
            if let Some((_, b)) = r.bytes_curve.iter().find(|(s, _)| *s == step) {
                add_bytes(&mut sum, b);
            }
        }
        sum
    };
    // With restarts, times on the final attempt's curve count from the job's first start.
    let offset = if tracker.restarts.is_empty() {
        0.0
    } else {
        tracker.lost_to_restarts_s() + first.startup_s
    };
    let curve: Vec<LossPoint> = first
        .curve
        .iter()
        .map(|p| LossPoint {
            step: p.step,
            elapsed: Duration::from_secs_f64(offset + p.elapsed_s.max(0.0)),
            loss: p.loss,
            bytes: bytes_at(p.step),
        })
        .collect();
    let mut bytes = Vec::new();
    for r in &ranks {
        add_bytes(&mut bytes, &r.bytes);
    }
    let n = ranks.len() as f64;
    let mean = |f: fn(&NodeTrainResult) -> f64| {
        Duration::from_secs_f64(ranks.iter().map(f).sum::<f64>() / n)
    };
    let wall = if tracker.restarts.is_empty() {
        Duration::from_secs_f64(ranks.iter().map(|r| r.wall_s).fold(0.0, f64::max))
    } else {
        job_wall
    };
    let result = StrategyResult {
        kind,
        label: kind.name().to_string(),
        tokens: 0,
        steps: first.steps,
        syncs: first.syncs,
        time_to_target: curve.iter().find(|p| p.loss <= target).map(|p| p.elapsed),
        final_loss: first.final_loss,
        curve,
        wall,
        real_compute: mean(|r| r.real_compute_s),
        declared_compute: mean(|r| r.declared_compute_s),
        comm: mean(|r| r.comm_s),
        bytes,
        fabric: format!(
            "controller job {} (attempt {}): {} node processes, real QUIC (quinn, mutual TLS) over emulated sockets applying the profile's links",
            job.job_id,
            job.attempt,
            ranks.len()
        ),
        restarts: tracker.restarts.clone(),
        host: None,
    };
    Ok((result, first.sites_by_rank.clone(), first.parameters))
}

fn add_bytes(sum: &mut Vec<(String, u64)>, more: &[(String, u64)]) {
    for (class, b) in more {
        match sum.iter_mut().find(|(c, _)| c == class) {
            Some((_, total)) => *total += b,
            None => sum.push((class.clone(), *b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacefabric_proto::v1::{JobPlan, JobRestart, NodeProgress};

    fn job(state: JobState, attempt: u32, world: u32, resume: u64, progress: &[(u64, u64)]) -> Job {
        Job {
            state: state as i32,
            attempt,
            resume_from_step: resume,
            plan: Some(JobPlan {
                world_size: world,
                ..JobPlan::default()
            }),
            progress: progress
                .iter()
                .enumerate()
                .map(|(i, &(step, committed_step))| NodeProgress {
                    rank: i as u32,
                    step,
                    committed_step,
                    ..NodeProgress::default()
                })
                .collect(),
            ..Job::default()
        }
    }

    #[test]
    fn a_restart_is_measured_against_the_commits_seen_before_it() {
        let mut t = RestartTracker::default();
        t.observe(&job(JobState::Running, 1, 3, 0, &[]), 0.5);
        t.observe(
            &job(JobState::Running, 1, 3, 0, &[(25, 20), (27, 20), (26, 20)]),
            10.0,
        );
        t.observe(&job(JobState::Pending, 1, 3, 20, &[]), 14.0);
        let mut restarted = job(JobState::Running, 2, 2, 20, &[]);
        restarted.restarts.push(JobRestart {
            attempt: 2,
            reason: "plan changed: heartbeats stopped: node-2".into(),
            unix_ms: 0,
            resume_from_step: 20,
        });
        t.observe(&restarted, 14.1);
        t.observe(
            &job(JobState::Running, 2, 2, 20, &[(20, 20), (21, 20)]),
            16.0,
        );
        assert!(t.restarts[0].training_resumed_after_s.is_none());
        t.observe(
            &job(JobState::Running, 2, 2, 20, &[(22, 20), (21, 20)]),
            17.1,
        );
        assert_eq!(t.restarts.len(), 1);
        let r = &t.restarts[0];
        assert_eq!(r.attempt, 2);
        assert!(r.reason.contains("node-2"));
        assert_eq!(r.committed_steps_lost, 0);
        assert_eq!(r.steps_redone, 7);
        assert_eq!((r.world_before, r.world_after), (3, 2));
        let after = r.training_resumed_after_s.unwrap();
        assert!((after - 3.0).abs() < 1e-9, "{after}");
        assert!((t.lost_to_restarts_s() - 13.6).abs() < 1e-9);
    }

    #[test]
    fn a_restart_from_an_older_commit_counts_lost_steps() {
        let mut t = RestartTracker::default();
        t.observe(&job(JobState::Running, 1, 2, 0, &[(31, 30), (32, 30)]), 1.0);
        t.observe(&job(JobState::Running, 2, 2, 20, &[]), 2.0);
        assert_eq!(t.restarts[0].committed_steps_lost, 10);
    }
}
