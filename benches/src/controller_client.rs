//! The benchmarks' side of a running cluster's controller: connect (patiently: a Kubernetes
//! Job or a script may start the bench together with the cluster), submit one job, follow it
//! with `WatchJob` until it ends, and turn a failed or cancelled job into an error that names
//! the failing ranks. `allreduce --controller` and `train --controller` both go through here.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    GetJobRequest, Job, JobSpec, JobState, SubmitJobRequest, WatchJobRequest,
};
use tonic::transport::{Channel, Endpoint};

/// Largest controller message decoded (a job carries every rank's results).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long the bench keeps trying to reach a controller that is not up yet.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// A client of the controller at `url`, retrying with backoff for [`CONNECT_PATIENCE`].
pub(crate) async fn connect(url: &str) -> anyhow::Result<ControllerClient<Channel>> {
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

/// The join token `--controller` needs, or an error naming the flag.
pub(crate) fn required_token(token: Option<&String>) -> anyhow::Result<String> {
    token
        .filter(|t| !t.is_empty())
        .cloned()
        .context("--join-token (SPACEFABRIC_JOIN_TOKEN) is required with --controller")
}

/// Runs a controller client's work on a fresh multi-threaded runtime.
pub(crate) fn block_on<T>(work: impl Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    Ok(runtime.block_on(work))
}

/// True once the job succeeded, failed or was cancelled.
pub(crate) fn is_done(job: &Job) -> bool {
    job.is_finished()
}

/// Submits `spec` (started once `min_nodes` nodes are alive), calls `on_update` with every
/// state of the job the watch delivers, and returns the finished job — an error unless it
/// succeeded.
pub(crate) async fn submit_and_follow(
    client: &mut ControllerClient<Channel>,
    token: &str,
    spec: JobSpec,
    min_nodes: u32,
    mut on_update: impl FnMut(&Job),
) -> anyhow::Result<Job> {
    let job = client
        .submit_job(SubmitJobRequest {
            join_token: token.to_string(),
            spec: Some(spec),
            min_nodes,
        })
        .await
        .context("SubmitJob")?
        .into_inner();
    let job_id = job.job_id.clone();
    eprintln!("# submitted job {job_id}");
    on_update(&job);
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
        while let Some(event) = stream
            .message()
            .await
            .with_context(|| format!("WatchJob {job_id}: stream"))?
        {
            let Some(job) = event.job else { continue };
            on_update(&job);
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
        Ok(JobState::Succeeded) => Ok(last),
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
}
