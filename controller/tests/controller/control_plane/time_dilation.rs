//! Time dilation through the controller's real gRPC service: the controller owns K and hands
//! it out at registration; a node (raw request or the real agent) started with another K is
//! refused with FAILED_PRECONDITION naming both; ListNodes says K; and the heartbeat deadline
//! (emulated time) lasts K times longer on the wall clock — run on tokio's paused clock, with
//! the server's own failure detector, no sleeps standing in for synchronisation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use spacefabric_controller::core::RegisterFields;
use spacefabric_controller::{ServerConfig, ServerHandle};
use spacefabric_node::agent::{Agent, AgentConfig, AgentError};
use spacefabric_proto::time_dilation::TimeDilation;
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{ListNodesRequest, NodeState, RegisterRequest};
use spacefabric_testkit::controller::{lan_config, serve};
use tonic::Code;
use tonic::transport::Endpoint;

const TOKEN: &str = "dilation-token";

fn config(k: u32) -> ServerConfig {
    let mut config = lan_config(TOKEN);
    config.core.heartbeat_interval = Duration::from_secs(1);
    config.core.heartbeat_misses = 3;
    config.core.time_dilation = TimeDilation::new(k).unwrap();
    config
}

async fn start(k: u32) -> ServerHandle {
    serve(config(k)).await
}

fn request(name: &str, k: u32) -> RegisterRequest {
    RegisterRequest {
        join_token: TOKEN.into(),
        node_name: name.into(),
        advertise_addr: "127.0.0.1:17900".into(),
        time_dilation: k,
        ..RegisterRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_hands_out_k_and_refuses_a_node_with_another() {
    let server = start(4).await;
    let url = format!("http://{}", server.addr);
    let mut c = ControllerClient::new(
        Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );

    // Another explicit K: refused, naming both values; nothing registered.
    let refused = c.register(request("n-one", 1)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let m = refused.message();
    assert!(m.starts_with("time_dilation"), "{m}");
    assert!(
        m.contains("--time-dilation 1") && m.contains("--time-dilation 4"),
        "{m}"
    );
    // An impossible K is an invalid argument naming the field.
    let bad = c.register(request("n-bad", 2_000_000)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(
        bad.message().starts_with("time_dilation"),
        "{}",
        bad.message()
    );
    let nodes = c
        .list_nodes(ListNodesRequest {
            join_token: TOKEN.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(nodes.nodes.is_empty(), "{nodes:?}");
    assert_eq!(nodes.time_dilation, 4);

    // No K (take the controller's) and the same K: admitted, told K = 4.
    for (name, k) in [("n-none", 0), ("n-four", 4)] {
        let reg = c.register(request(name, k)).await.unwrap().into_inner();
        assert_eq!(reg.time_dilation, 4, "{name}");
        assert_eq!(reg.heartbeat_interval_ms, 1000, "emulated, not scaled");
    }

    // The real agent: started with --time-dilation 2 it stops with the refusal; without one
    // it runs the controller's K.
    let agent_config = |name: &str, port: u16| AgentConfig {
        controller: url.clone(),
        join_token: TOKEN.into(),
        name: name.into(),
        site: None,
        advertise: format!("127.0.0.1:{port}").parse().unwrap(),
        metrics_addr: None,
        controller_ca_pem: None,
        retry_interval: Duration::from_millis(50),
        state_dir: std::env::temp_dir().join("spacefabric-dilation-test"),
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        Agent::new(agent_config("agent-two", 17901))
            .with_time_dilation(Some(TimeDilation::new(2).unwrap()))
            .run(std::future::pending()),
    )
    .await
    .expect("the refused agent stops");
    match refused {
        Err(e @ AgentError::Refused(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("--time-dilation 2") && text.contains("--time-dilation 4"),
                "{text}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let agent = Agent::new(agent_config("agent-default", 17902));
    let mut status = agent.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));
    // Registered (a node id) and running the controller's K; a timeout here fails the test.
    let seen = tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.node_id.is_some() && s.time_dilation.is_dilated()),
    )
    .await
    .expect("the agent registers and takes the controller's K")
    .unwrap()
    .time_dilation;
    assert_eq!(seen.get(), 4);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    server.shutdown().await.unwrap();
}

/// How long (tokio time) after registering a silent node the server's failure detector
/// declares it dead.
async fn time_to_declared_dead(k: u32) -> Duration {
    let server = start(k).await;
    let registered = tokio::time::Instant::now();
    server
        .shared()
        .with_core(|core, now| {
            core.register(
                &RegisterFields {
                    node_name: "silent".into(),
                    preferred_site: "lan".into(),
                    advertise_addr: "127.0.0.1:17903".into(),
                    metrics_addr: String::new(),
                    key: String::new(),
                },
                now,
            )
        })
        .unwrap();
    let state = |server: &ServerHandle| {
        server
            .shared()
            .with_core(|core, now| core.list_nodes(now))
            .nodes[0]
            .clone()
    };
    // The deadline as reported is emulated time, whatever K.
    assert_eq!(state(&server).heartbeat_deadline_ms, 3_000);
    // Step the paused clock in small increments: the detector runs on its own timer.
    let step = Duration::from_millis(10);
    while state(&server).state != NodeState::Dead as i32 {
        assert!(
            registered.elapsed() < Duration::from_secs(600),
            "never declared dead"
        );
        tokio::time::sleep(step).await;
    }
    let took = registered.elapsed();
    server.shutdown().await.unwrap();
    took
}

#[tokio::test(start_paused = true)]
async fn heartbeat_deadlines_scale_with_k() {
    // 1 s interval × 3 misses = 3 s of emulated time; the detector checks every interval/4
    // (250 ms emulated), so the node is declared at the first check past 3 s: 3.25 s × K of
    // tokio time (plus at most one 10 ms polling step here).
    for k in [1u32, 4, 16] {
        let took = time_to_declared_dead(k).await;
        let due = Duration::from_millis(3_250) * k;
        assert!(
            took >= Duration::from_millis(3_000) * k && took <= due + Duration::from_millis(10),
            "K = {k}: declared dead after {took:?} of tokio time (due {due:?})"
        );
    }
}
