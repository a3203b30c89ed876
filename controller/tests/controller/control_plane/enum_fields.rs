//! The algorithm, strategy and activation enums through the controller's real gRPC service:
//! an unset required value or a number no variant has is refused at SubmitJob with
//! INVALID_ARGUMENT naming the RPC field, and a good job's enums come back as they were sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    Activation, Algorithm, AllReduceJob, GetJobRequest, JobSpec, Strategy, SubmitJobRequest,
    TrainJob, job_spec,
};
use spacefabric_testkit::controller::{lan_config, serve};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const TOKEN: &str = "enum-token";

fn submit(kind: job_spec::Kind) -> SubmitJobRequest {
    SubmitJobRequest {
        join_token: TOKEN.into(),
        spec: Some(JobSpec {
            kind: Some(kind),
            ..JobSpec::default()
        }),
        min_nodes: 0,
    }
}

fn train(t: TrainJob) -> job_spec::Kind {
    job_spec::Kind::Train(TrainJob { steps: 10, ..t })
}

async fn refused(c: &mut ControllerClient<Channel>, kind: job_spec::Kind) -> String {
    let status = c.submit_job(submit(kind)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.message().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unset_enum_values_are_refused_naming_the_field() {
    let server = serve(lan_config(TOKEN)).await;
    let url = format!("http://{}", server.addr);
    let mut c = ControllerClient::new(Endpoint::from_shared(url).unwrap().connect().await.unwrap());

    let diloco = TrainJob {
        strategy: Strategy::Diloco as i32,
        ..TrainJob::default()
    };
    let m = refused(
        &mut c,
        train(TrainJob {
            strategy: 17,
            ..diloco.clone()
        }),
    )
    .await;
    assert_eq!(m, "spec.train.strategy: unknown value 17");
    let m = refused(&mut c, train(TrainJob::default())).await;
    assert!(m.starts_with("spec.train.strategy: required"), "{m}");
    let m = refused(
        &mut c,
        train(TrainJob {
            collective_algorithm: 42,
            ..diloco.clone()
        }),
    )
    .await;
    assert_eq!(m, "spec.train.collective_algorithm: unknown value 42");
    let m = refused(
        &mut c,
        train(TrainJob {
            hidden_activation: 3,
            ..diloco.clone()
        }),
    )
    .await;
    assert_eq!(m, "spec.train.hidden_activation: unknown value 3");
    let sweep = AllReduceJob {
        min_bytes: 1024,
        max_bytes: 1024,
        factor: 2,
        iterations: 1,
        collective_algorithms: vec![Algorithm::Ring as i32, 9],
        ..AllReduceJob::default()
    };
    let m = refused(&mut c, job_spec::Kind::AllReduce(sweep.clone())).await;
    assert_eq!(
        m,
        "spec.all_reduce.collective_algorithms[1]: unknown value 9"
    );
    let m = refused(
        &mut c,
        job_spec::Kind::AllReduce(AllReduceJob {
            collective_algorithms: vec![Algorithm::Unspecified as i32],
            ..sweep
        }),
    )
    .await;
    assert!(
        m.starts_with("spec.all_reduce.collective_algorithms[0]: required"),
        "{m}"
    );

    // A good job is queued with its enums as sent; unset ones stay unset (they mean the
    // defaults, relu and auto, as the empty strings did).
    let job = c
        .submit_job(submit(train(TrainJob {
            hidden_activation: Activation::Tanh as i32,
            ..diloco
        })))
        .await
        .unwrap()
        .into_inner();
    let got = c
        .get_job(GetJobRequest {
            join_token: TOKEN.into(),
            job_id: job.job_id,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(job_spec::Kind::Train(t)) = got.spec.and_then(|s| s.kind) else {
        panic!("not a train job");
    };
    assert_eq!(t.strategy(), Strategy::Diloco);
    assert_eq!(t.hidden_activation(), Activation::Tanh);
    assert_eq!(t.collective_algorithm(), Algorithm::Unspecified);
}
