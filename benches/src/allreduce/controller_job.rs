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
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    AllReduceJob, GetJobRequest, Job, JobSpec, JobState, ListNodesRequest, SubmitJobRequest,
    WatchJobRequest, job_spec,
};
use tonic::transport::{Channel, Endpoint};

use super::report::{self, Sweep};
use super::{AllreduceArgs, combine, load_profile};

/// Largest controller message decoded (a job carries every rank's per-iteration times).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Runs the sweep as a job of the controller at `url`.
pub(crate) fn run(args: &AllreduceArgs, url: &str, sizes: &[u64]) -> anyhow::Result<ExitCode> {
    let token = args
        .join_token
        .clone()
        .filter(|t| !t.is_empty())
        .context("--join-token (SPACEFABRIC_JOIN_TOKEN) is required with --controller")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run_job(args, url, &token, sizes))
}

/// How long the bench keeps trying to reach a controller that is not up yet (a Kubernetes
/// Job or a script may start it together with the cluster).
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

async fn connect(url: &str) -> anyhow::Result<ControllerClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("--controller {url}: not a URL"))?
        .connect_timeout(Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(e) if started.elapsed() < CONNECT_PATIENCE => {
                tracing::debug!(%url, error = %e, "controller not reachable yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "--controller {url}: cannot connect (tried for {}s)",
                    CONNECT_PATIENCE.as_secs()
                )));
            }
        }
    };
    Ok(ControllerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

fn is_done(job: &Job) -> bool {
    matches!(
        JobState::try_from(job.state),
        Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    )
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
    let mut client = connect(url).await?;
    let nodes = client
        .list_nodes(ListNodesRequest {
            join_token: token.to_string(),
        })
        .await
        .with_context(|| format!("ListNodes on {url}"))?
        .into_inner();
    // The controller's profile by name (a shipped one), else --profile.
    let profile = load_profile(&nodes.profile_name)
        .or_else(|_| load_profile(&args.profile))
        .with_context(|| {
            format!(
                "the controller runs profile '{}'; give its file with --profile",
                nodes.profile_name
            )
        })?;
    let spec = JobSpec {
        name: "spacefabric-bench allreduce".to_string(),
        kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
            min_bytes: args.min_bytes,
            max_bytes: args.max_bytes,
            factor: u32::try_from(args.step_factor).context("-f is too large")?,
            iterations: u32::try_from(args.iters).context("-n is too large")?,
            warmup: u32::try_from(args.warmup).context("-w is too large")?,
            algorithms: args
                .algo
                .iter()
                .map(|a| a.short_name().to_string())
                .collect(),
            check: true,
        })),
    };
    let job = client
        .submit_job(SubmitJobRequest {
            join_token: token.to_string(),
            spec: Some(spec),
            min_nodes: args.min_nodes,
        })
        .await
        .with_context(|| format!("SubmitJob on {url}"))?
        .into_inner();
    let job_id = job.job_id.clone();
    eprintln!("# submitted job {job_id} to {url}");
    let mut last = job;
    if !is_done(&last) {
        let mut stream = client
            .watch_job(WatchJobRequest {
                join_token: token.to_string(),
                job_id: job_id.clone(),
            })
            .await
            .with_context(|| format!("WatchJob {job_id}"))?
            .into_inner();
        let mut last_line = String::new();
        while let Some(event) = stream
            .message()
            .await
            .with_context(|| format!("WatchJob {job_id}: stream"))?
        {
            let Some(job) = event.job else { continue };
            let line = progress_line(&job);
            if line != last_line {
                eprintln!("{line}");
                last_line = line;
            }
            last = job;
            if is_done(&last) {
                break;
            }
        }
    }
    if !is_done(&last) {
        last = client
            .get_job(GetJobRequest {
                join_token: token.to_string(),
                job_id: job_id.clone(),
            })
            .await
            .with_context(|| format!("GetJob {job_id}"))?
            .into_inner();
        if !is_done(&last) {
            bail!("job {job_id}: the watch ended while the job was still running");
        }
    }
    match JobState::try_from(last.state) {
        Ok(JobState::Succeeded) => {}
        Ok(JobState::Cancelled) => bail!("job {job_id} was cancelled: {}", last.error),
        _ => {
            let failures: Vec<String> = last
                .results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| format!("rank {}: {}", r.rank, r.error))
                .collect();
            bail!(
                "job {job_id} failed: {} {}",
                last.error,
                failures.join("; ")
            );
        }
    }
    report_results(args, &profile, &last, sizes)
}

fn report_results(
    args: &AllreduceArgs,
    profile: &netem_profiles::Profile,
    job: &Job,
    sizes: &[u64],
) -> anyhow::Result<ExitCode> {
    let mut ranks: Vec<NodeSweepResult> = job
        .results
        .iter()
        .map(|r| {
            serde_json::from_str(&r.result_json)
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
    let mut sweep = Sweep::new(args, profile, &cost, describe, true, transport);
    sweep.nodes = world;
    sweep.transport_stats = ranks.iter().map(|r| r.transport_stats.clone()).collect();
    report::print_header(&sweep);
    let total = args.algo.len() * sizes.len();
    for index in 0..total {
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
        if index % sizes.len() == 0 {
            report::print_table_start(&sweep, args.algo[index / sizes.len()]);
        }
        let result = combine(&cost, args.lanes, world, &points)?;
        report::print_row(&sweep, &result);
        sweep.results.push(result);
    }
    report::print_footer(&sweep);
    report::write_files(&sweep, args)?;
    Ok(if sweep.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
