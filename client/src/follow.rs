//! Submitting a job and following it to its end. [`follow`] watches the job with `WatchJob`;
//! when the stream breaks or the controller is gone (a restart), it re-attaches to the same
//! job id — the controller keeps it in its state dir — retrying with backoff for a patience
//! counted from the last contact.

use std::time::Duration;

use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{GetJobRequest, Job, JobSpec, SubmitJobRequest, WatchJobRequest};
use tonic::transport::Channel;

use crate::ClientError;

/// What [`follow`] reports while it follows.
#[derive(Debug)]
pub enum Followed<'a> {
    /// A new state of the job.
    Update(&'a Job),
    /// The controller was lost; re-attaching.
    Lost(&'a tonic::Status),
}

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

/// Submits `spec`, started once `min_nodes` nodes are alive (0: any).
pub async fn submit(
    client: &mut ControllerClient<Channel>,
    token: &str,
    spec: JobSpec,
    min_nodes: u32,
) -> Result<Job, ClientError> {
    client
        .submit_job(SubmitJobRequest {
            join_token: token.to_string(),
            spec: Some(spec),
            min_nodes,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| ClientError::Rpc {
            rpc: "SubmitJob".into(),
            status,
        })
}

/// Follows `job` until it ended (succeeded, failed or cancelled) and returns its last state,
/// re-attaching for `patience` after the last contact; `on_event` hears every state and every
/// loss.
pub async fn follow(
    client: &mut ControllerClient<Channel>,
    token: &str,
    job: Job,
    patience: Duration,
    mut on_event: impl FnMut(Followed<'_>),
) -> Result<Job, ClientError> {
    let job_id = job.job_id.clone();
    let rpc = |what: &str, status: tonic::Status| ClientError::Rpc {
        rpc: format!("{what} {job_id}"),
        status,
    };
    let mut last = job;
    let mut last_contact = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    while !last.is_finished() {
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
                                on_event(Followed::Update(&job));
                                last = job;
                                if last.is_finished() {
                                    break None;
                                }
                            }
                        }
                        // The stream ended without a final state: ask again.
                        Ok(None) => break None,
                        Err(status) if is_transient(&status) => break Some(status),
                        Err(status) => return Err(rpc("WatchJob (stream)", status)),
                    }
                }
            }
            Err(status) if is_transient(&status) => Some(status),
            Err(status) => return Err(rpc("WatchJob", status)),
        };
        if let Some(status) = broke {
            if last_contact.elapsed() > patience {
                return Err(ClientError::Reattach {
                    job_id: job_id.clone(),
                    status,
                    secs: patience.as_secs(),
                });
            }
            on_event(Followed::Lost(&status));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        } else if !last.is_finished() {
            last = client
                .get_job(GetJobRequest {
                    join_token: token.to_string(),
                    job_id: job_id.clone(),
                })
                .await
                .map_err(|status| rpc("GetJob", status))?
                .into_inner();
        }
    }
    Ok(last)
}

/// [`submit`], then [`follow`]; `on_event` hears the submitted state first.
pub async fn submit_and_follow(
    client: &mut ControllerClient<Channel>,
    token: &str,
    spec: JobSpec,
    min_nodes: u32,
    patience: Duration,
    mut on_event: impl FnMut(Followed<'_>),
) -> Result<Job, ClientError> {
    let job = submit(client, token, spec, min_nodes).await?;
    on_event(Followed::Update(&job));
    follow(client, token, job, patience, on_event).await
}
