//! The control plane's own latency: a real controller on 127.0.0.1 and a real tonic client.
//! `accepted_connections_have_tcp_nodelay` reads the socket option of a connection the
//! controller accepted; `control_plane_rtt` (opt-in: `--ignored`) prints the p50 and max of
//! ListNodes and GetJob round trips, the numbers in docs/CONTROLLER.md.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{GetJobRequest, ListNodesRequest};
use spacefabric_testkit::controller::{lan_config, serve};
use tonic::transport::Endpoint;

const TOKEN: &str = "rtt-token";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn control_plane_rtt() {
    let server = serve(lan_config(TOKEN)).await;
    let url = format!("http://{}", server.addr);
    let mut client =
        ControllerClient::new(Endpoint::from_shared(url).unwrap().connect().await.unwrap());
    for (name, rounds) in [
        ("ListNodes", 200),
        ("GetJob (unknown id: error reply)", 200),
    ] {
        let mut rtts = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            if name == "ListNodes" {
                client
                    .list_nodes(ListNodesRequest {
                        join_token: TOKEN.into(),
                    })
                    .await
                    .unwrap();
            } else {
                let _ = client
                    .get_job(GetJobRequest {
                        join_token: TOKEN.into(),
                        job_id: "job-404".into(),
                    })
                    .await;
            }
            rtts.push(t.elapsed());
        }
        rtts.sort();
        println!(
            "{name:<34} n={rounds} p50 {:>8.3} ms  max {:>8.3} ms",
            percentile(&rtts, 0.5).as_secs_f64() * 1e3,
            rtts.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn accepted_connections_have_tcp_nodelay() {
    use futures::StreamExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = Box::pin(spacefabric_controller::server::nodelay_incoming(listener));
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accepted = incoming.next().await.unwrap().unwrap();
    assert!(
        accepted.nodelay().unwrap(),
        "the controller's accepted connection has Nagle's algorithm on"
    );
    // The clients' side: tonic endpoints dial with TCP_NODELAY (the default we rely on).
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
    assert!(endpoint.get_tcp_nodelay());
    drop(client);
}
