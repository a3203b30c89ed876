//! `spacefabric-bench allreduce --controller URL`: the sweep as a controller job on a running
//! cluster's node processes. Submits an `AllReduceJob` built from the flags, follows it with
//! `WatchJob` (progress on stderr), then combines every rank's points from the job's results
//! (an iteration's time is the slowest rank's, as nccl-tests reports it; #wrong is summed) and
//! prints the same table, footers and files as the local sweep.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use spacefabric_node::collective::CostModel;
use spacefabric_node::jobs::NodeSweepResult;
use spacefabric_node::jobs::result_messages::all_reduce_of;
use spacefabric_proto::v1::{AllReduceJob, Job, JobSpec, JobState, job_spec};

use crate::controller_client::{block_on, join, required_token, slowest_step, submit_and_follow};
use crate::host_share::{Remedy, dilation_to_avoid, judge, worst_of};
use crate::progress_bar::ProgressBar;

use super::report::{self, Sweep};
use super::{AllreduceArgs, combine};
use crate::profile_flag::load_profile;

/// Runs the sweep as a job of the controller at `url`.
pub(crate) fn run(args: &AllreduceArgs, url: &str, sizes: &[u64]) -> anyhow::Result<ExitCode> {
    let token = required_token(args.join_token.as_ref())?;
    block_on(run_job(args, url, &token, sizes))?
}

/// One progress line: the slowest rank's step.
fn progress_line(job: &Job) -> String {
    let state = JobState::try_from(job.state).map_or("?", |s| s.as_str_name());
    let world = job.plan.as_ref().map_or(0, |p| p.world_size);
    let slowest = job.progress.iter().min_by_key(|p| p.step);
    match slowest {
        Some(p) if job.progress.len() as u32 >= world => format!(
            "[job {} {state} attempt {}] {}/{} points on every rank (slowest: rank {}: {})",
            job.job_id, job.attempt, p.step, p.total_steps, p.rank, p.message
        ),
        _ => format!(
            "[job {} {state} attempt {}] {} of {world} ranks reporting",
            job.job_id,
            job.attempt,
            job.progress.len()
        ),
    }
}

async fn run_job(
    args: &AllreduceArgs,
    url: &str,
    token: &str,
    sizes: &[u64],
) -> anyhow::Result<ExitCode> {
    let (mut client, nodes, dilation) =
        join(url, args.ca_cert.as_deref(), token, args.time_dilation).await?;
    // The controller's profile by name (a shipped one), else --profile.
    let profile = load_profile(&nodes.profile_name)
        .or_else(|_| load_profile(&args.profile))
        .with_context(|| {
            format!(
                "the controller runs profile '{}'; give its file with --profile",
                nodes.profile_name
            )
        })?;
    let spec = all_reduce_spec(args)?;
    let mut last_line = String::new();
    let bar = ProgressBar::new(0, "points");
    let last = submit_and_follow(&mut client, token, spec, args.min_nodes, |job| {
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
    .with_context(|| format!("the all-reduce job on {url}"))?;
    bar.finish();
    report_results(args, &profile, &last, sizes, dilation)
}

fn report_results(
    args: &AllreduceArgs,
    profile: &netem_profiles::Profile,
    job: &Job,
    sizes: &[u64],
    dilation: spacefabric_proto::time_dilation::TimeDilation,
) -> anyhow::Result<ExitCode> {
    let mut ranks: Vec<NodeSweepResult> = job
        .results
        .iter()
        .map(|r| {
            all_reduce_of(r)
                .and_then(NodeSweepResult::from_message)
                .with_context(|| format!("job {}: result of rank {}", job.job_id, r.rank))
        })
        .collect::<anyhow::Result<_>>()?;
    ranks.sort_by_key(|r| r.rank);
    let world = ranks.first().map_or(0, |r| r.world_size);
    if world == 0 || ranks.len() != world {
        bail!(
            "job {}: results from {} ranks of a world of {world}",
            job.job_id,
            ranks.len()
        );
    }
    let site_of_rank = ranks[0]
        .sites_by_rank
        .iter()
        .map(|s| {
            profile
                .site_id(s)
                .with_context(|| format!("site '{s}' is not in profile {}", profile.name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cost = CostModel::from_profile(profile, site_of_rank, Duration::ZERO)?;
    let describe = format!(
        "controller job {}: {world} node processes, real QUIC (quinn, mutual TLS) between their fabric addresses over emulated sockets applying the profile's links",
        job.job_id
    );
    let per_rank: Vec<serde_json::Value> = ranks
        .iter()
        .map(|r| serde_json::json!({ "rank": r.rank, "settings": r.transport_settings }))
        .collect();
    let transport = serde_json::json!({
        "fabric": "quic", "emulated": true, "job_id": job.job_id,
        "per_rank": per_rank,
    });
    let mut sweep = Sweep::new(args, profile, &cost, describe, true, transport)?;
    sweep.nodes = world;
    sweep.pid = None;
    sweep.host = "cluster".to_string();
    sweep.dilation = dilation.get();
    sweep.transport_stats = ranks
        .iter()
        .map(|r| {
            r.transport_counters
                .and_then(|c| serde_json::to_value(c).ok())
                .unwrap_or_default()
        })
        .collect();
    report::print_header(&sweep);
    let min_delay = super::min_used_delay(profile, cost.site_of_rank());
    let order = super::points(&args.algo, &args.datatypes()?, &args.ops()?, sizes);
    for (index, at) in order.iter().enumerate() {
        let points: Vec<_> = ranks
            .iter()
            .map(|r| {
                r.points
                    .iter()
                    .find(|p| p.index == index)
                    .cloned()
                    .with_context(|| format!("rank {} did not report point {index}", r.rank))
            })
            .collect::<anyhow::Result<_>>()?;
        if at.first_of_algo {
            report::print_table_start(&sweep, at.algo);
        }
        let mut result = combine(&cost, args.lanes, world, &points)?;
        // Judged on the ranks' own hosts: each node measured what its host did to it while
        // it ran the point (the delay line's budget is in wall time: K × the delay).
        if let Some(share) = worst_of(points.iter().filter_map(|p| p.host.as_ref())) {
            let measured_s = result.mean_us() / 1e6;
            let model_s = result.predicted.total_s;
            let mut verdict = judge(
                args.clock,
                &share,
                measured_s,
                Some(model_s),
                min_delay * dilation.get(),
            );
            if verdict.host_bound {
                // A cluster has no virtual clock: name the dilation that would do.
                let k = dilation_to_avoid(dilation.get(), measured_s, model_s);
                verdict.avoid_with = Remedy::TimeDilation(k).to_string();
                sweep.remedy = match sweep.remedy {
                    Remedy::TimeDilation(before) if before >= k => sweep.remedy,
                    _ => Remedy::TimeDilation(k),
                };
            }
            result.host = Some((share, verdict));
        }
        report::print_row(&sweep, &result);
        sweep.results.push(result);
        if at.last_of_algo {
            report::print_table_end(&sweep, at.algo);
        }
    }
    report::print_footer(&sweep);
    super::files::write_files(&sweep, args)?;
    // 3 when any element was wrong (spacefabric_cli::exit_code).
    Ok(if sweep.failed() {
        spacefabric_cli::exit_code::ExitStatus::WrongResults.into()
    } else {
        ExitCode::SUCCESS
    })
}

/// The all-reduce job of `args`: what `--controller` submits, and what the in-process sweep
/// admits with the controller's own checks before it starts.
pub(crate) fn all_reduce_spec(args: &AllreduceArgs) -> anyhow::Result<JobSpec> {
    Ok(JobSpec {
        deadline_ms: 0,
        name: "spacefabric-bench allreduce".to_string(),
        kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
            min_bytes: args.min_bytes,
            max_bytes: args.max_bytes,
            factor: u32::try_from(args.step_factor).context("-f is too large")?,
            iterations: u32::try_from(args.iters).context("-n is too large")?,
            warmup: u32::try_from(args.warmup).context("-w is too large")?,
            collective_algorithms: args.algo.iter().map(|a| a.to_wire()).collect(),
            check: args.check != 0,
            datatypes: args.datatype.clone(),
            ops: args.op.clone(),
        })),
    })
}
