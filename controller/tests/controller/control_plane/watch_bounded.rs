//! A watched job does not stay in the controller's memory once it ended: WatchJob streams get
//! the final state, then the controller drops the job's channel (before, every job ever
//! watched kept a channel holding the whole job, results included, past the history bound).
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    CancelJobRequest, JobEvent, JobSpec, JobState, PingJob, SubmitJobRequest, WatchJobRequest,
    job_spec,
};
use spacefabric_testkit::controller::{lan_config, serve};
use tonic::Streaming;
use tonic::transport::Channel;

const TOKEN: &str = "watch-token";

/// A watch of `job_id`'s events.
async fn watch(client: &mut ControllerClient<Channel>, job_id: &str) -> Streaming<JobEvent> {
    client
        .watch_job(WatchJobRequest {
            join_token: TOKEN.into(),
            job_id: job_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_job_leaves_no_watch_channel_behind() {
    let config = lan_config(TOKEN);
    let server = serve(config).await;
    let mut client = ControllerClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    for round in 0..3 {
        // No node: the job waits as pending until it is cancelled.
        let job = client
            .submit_job(SubmitJobRequest {
                join_token: TOKEN.into(),
                spec: Some(JobSpec {
                    name: format!("watched-{round}"),
                    kind: Some(job_spec::Kind::Ping(PingJob { iterations: 1 })),
                    deadline_ms: 0,
                }),
                min_nodes: 1,
            })
            .await
            .unwrap()
            .into_inner();
        let mut events = watch(&mut client, &job.job_id).await;
        let first = events.next().await.unwrap().unwrap().job.unwrap();
        assert_eq!(first.state, JobState::Pending as i32);
        assert_eq!(server.shared().watched_jobs(), 1);
        client
            .cancel_job(CancelJobRequest {
                join_token: TOKEN.into(),
                job_id: job.job_id.clone(),
            })
            .await
            .unwrap();
        // The watcher still gets the final state, then the stream ends.
        let mut last = first;
        while let Some(event) = events.next().await {
            last = event.unwrap().job.unwrap();
        }
        assert_eq!(last.state, JobState::Cancelled as i32);
        assert_eq!(server.shared().watched_jobs(), 0, "round {round}");
        // Watching an ended job answers its final state and keeps nothing.
        let mut again = watch(&mut client, &job.job_id).await;
        let ended = again.next().await.unwrap().unwrap().job.unwrap();
        assert_eq!(ended.state, JobState::Cancelled as i32);
        assert!(again.next().await.is_none());
        assert_eq!(server.shared().watched_jobs(), 0);
    }
    server.shutdown().await.unwrap();
}
