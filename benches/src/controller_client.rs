//! The benchmarks' side of a running cluster's controller: connect (patiently: a Kubernetes
//! Job or a script may start the bench together with the cluster), submit one job, follow it
//! with `WatchJob` until it ends, and turn a failed or cancelled job into an error that names
//! the failing ranks. `allreduce --controller` and `train --controller` both go through here.
//! The cluster's time dilation K comes from the controller ([`cluster_dilation`]); a bench
//! started with another `--time-dilation` is refused, naming both.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use spacefabric_proto::time_dilation::TimeDilation;
use spacefabric_proto::v1::ListNodesResponse;
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
        .connect_timeout(Duration::from_secs(10))
        // No Nagle delay on the control plane (tonic's default too; set so it stays).
        .tcp_nodelay(true);
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

/// The cluster's time dilation K as the controller's ListNodes says it, checked against the
/// bench's `--time-dilation` (`None`: take the controller's). Every time the nodes report is
/// emulated time already; K goes into the report's header.
pub(crate) fn cluster_dilation(
    url: &str,
    nodes: &ListNodesResponse,
    expected: Option<TimeDilation>,
) -> anyhow::Result<TimeDilation> {
    let controller = TimeDilation::from_wire(nodes.time_dilation)
        .with_context(|| format!("--controller {url}: ListNodes.time_dilation"))?;
    TimeDilation::agree(expected, controller)
        .with_context(|| format!("--controller {url}: this bench's --time-dilation"))
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

/// How long the bench keeps trying to re-attach to its job while the controller is away
/// (restarting, or unreachable).
const REATTACH_PATIENCE: Duration = Duration::from_secs(300);

/// True for errors a restarted or briefly unreachable controller gives (the stream broke, the
/// connection was refused or reset); not for a refusal of the request itself.
fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Internal
    )
}

/// Follows `job` with WatchJob until it ends. When the stream breaks or the controller is
/// gone (a restart), re-attaches to the same job id — the controller keeps it in its state
/// dir — retrying with backoff for [`REATTACH_PATIENCE`] after the last contact.
async fn follow(
    client: &mut ControllerClient<Channel>,
    token: &str,
    job: Job,
    on_update: &mut impl FnMut(&Job),
) -> anyhow::Result<Job> {
    let job_id = job.job_id.clone();
    let mut last = job;
    let mut last_contact = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    while !is_done(&last) {
        let watched = client
            .watch_job(WatchJobRequest {
                join_token: token.to_string(),
                job_id: job_id.clone(),
            })
            .await;
        let broke = match watched {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            last_contact = tokio::time::Instant::now();
                            backoff = Duration::from_millis(100);
                            if let Some(job) = event.job {
                                on_update(&job);
                                last = job;
                                if is_done(&last) {
                                    break None;
                                }
                            }
                        }
                        // The stream ended without a final state: ask again.
                        Ok(None) => break None,
                        Err(status) if is_transient(&status) => break Some(status),
                        Err(status) => {
                            return Err(anyhow::anyhow!("WatchJob {job_id}: stream: {status}"));
                        }
                    }
                }
            }
            Err(status) if is_transient(&status) => Some(status),
            Err(status) => return Err(anyhow::anyhow!("WatchJob {job_id}: {status}")),
        };
        if let Some(status) = broke {
            if last_contact.elapsed() > REATTACH_PATIENCE {
                bail!(
                    "job {job_id}: lost the controller ({status}) and could not re-attach for {} s",
                    REATTACH_PATIENCE.as_secs()
                );
            }
            eprintln!(
                "# job {job_id}: lost the controller ({}); re-attaching",
                status.code()
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        } else if !is_done(&last) {
            last = client
                .get_job(GetJobRequest {
                    join_token: token.to_string(),
                    job_id: job_id.clone(),
                })
                .await
                .with_context(|| format!("GetJob {job_id}"))?
                .into_inner();
        }
    }
    Ok(last)
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
    let last = follow(client, token, job, &mut on_update).await?;
    let job_id = last.job_id.clone();
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
