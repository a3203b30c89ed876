//! The benchmarks' side of a running cluster's controller: connect (patiently: a Kubernetes
//! Job or a script may start the bench together with the cluster), submit one job, follow it
//! with `WatchJob` until it ends, and turn a failed or cancelled job into an error that names
//! the failing ranks. `allreduce --controller` and `train --controller` both go through here.
//! The cluster's time dilation K comes from the controller ([`cluster_dilation`]); a bench
//! started with another `--time-dilation` is refused, naming both.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use spacefabric_client::{ConnectOptions, Followed};
use spacefabric_proto::time_dilation::TimeDilation;
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{Job, JobSpec, JobState};
use spacefabric_proto::v1::{ListNodesRequest, ListNodesResponse};
use tonic::transport::Channel;

/// Largest controller message decoded (a job carries every rank's results).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long the bench keeps trying to reach a controller that is not up yet.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// A client of the controller at `url` (https trusting `ca_cert`), retrying with backoff for
/// [`CONNECT_PATIENCE`].
pub(crate) async fn connect(
    url: &str,
    ca_cert: Option<&Path>,
) -> anyhow::Result<ControllerClient<Channel>> {
    spacefabric_client::refuse_retired_ca_env()?;
    let ca_pem = ca_cert
        .map(|path| spacefabric_client::read_ca("--ca-cert", path))
        .transpose()?;
    let mut options = ConnectOptions::new(url, ca_pem);
    options.connect_timeout = Duration::from_secs(10);
    let channel = spacefabric_client::connect_patiently(&options, CONNECT_PATIENCE).await?;
    Ok(ControllerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// The controller at `url` with its node listing and the cluster's time dilation K (see
/// [`cluster_dilation`]): what both `allreduce --controller` and `train --controller` start
/// with.
pub(crate) async fn join(
    url: &str,
    ca_cert: Option<&Path>,
    token: &str,
    expected: Option<TimeDilation>,
) -> anyhow::Result<(ControllerClient<Channel>, ListNodesResponse, TimeDilation)> {
    let mut client = connect(url, ca_cert).await?;
    let nodes = client
        .list_nodes(ListNodesRequest {
            join_token: token.to_string(),
        })
        .await
        .with_context(|| format!("ListNodes on {url}"))?
        .into_inner();
    let dilation = cluster_dilation(url, &nodes, expected)?;
    Ok((client, nodes, dilation))
}

/// The cluster's time dilation K as the controller's ListNodes says it, checked against the
/// bench's `--time-dilation` (`None`: take the controller's). Every time the nodes report is
/// emulated time already; K goes into the report's header.
fn cluster_dilation(
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

/// (step, total steps) of the slowest rank once every rank reports, else (0, 0): what a
/// job's progress bar shows.
pub(crate) fn slowest_step(job: &Job) -> (u64, u64) {
    let world = job.plan.as_ref().map_or(0, |p| p.world_size);
    match job.progress.iter().min_by_key(|p| p.step) {
        Some(p) if job.progress.len() as u32 >= world => (p.step, p.total_steps),
        _ => (0, 0),
    }
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
    let job = spacefabric_client::submit(client, token, spec, min_nodes).await?;
    let job_id = job.job_id.clone();
    eprintln!("# submitted job {job_id}");
    on_update(&job);
    let last =
        spacefabric_client::follow(client, token, job, REATTACH_PATIENCE, |event| match event {
            Followed::Update(job) => on_update(job),
            Followed::Lost(status) => eprintln!(
                "# job {job_id}: lost the controller ({}); re-attaching",
                status.code()
            ),
        })
        .await?;
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
