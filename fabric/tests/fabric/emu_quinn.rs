#![allow(clippy::unwrap_used)]
//! Two real quinn endpoints over `EmulatedSocket`s on loopback: delay, outages and the
//! passthrough baseline, end to end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netem_profiles::{LinkModel, LinkSpec, OutageSchedule, Window};
use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig};
use spacefabric_fabric::emu::{EmuClock, EmulatedSocket, LinkTable, SchedulerMode};

const LOCALHOST: &str = "127.0.0.1:0";

fn tls_pair() -> (ServerConfig, ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    let mut server = ServerConfig::with_single_cert(vec![cert_der.clone()], key.into()).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(60).try_into().unwrap()));
    let transport = Arc::new(transport);
    server.transport_config(transport.clone());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let mut client = ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    client.transport_config(transport);
    (server, client)
}

struct Pair {
    server: Endpoint,
    client: Endpoint,
    server_sock: Arc<EmulatedSocket>,
    client_sock: Arc<EmulatedSocket>,
}

/// Binds two sockets with their own tables; `link` builds the spec for each direction.
fn pair(clock: EmuClock, mode: SchedulerMode, link: Option<LinkSpec>) -> Pair {
    let (server_table, client_table) = match link {
        Some(_) => (
            Arc::new(LinkTable::new(clock).with_scheduler_mode(mode)),
            Arc::new(LinkTable::new(clock).with_scheduler_mode(mode)),
        ),
        None => (
            Arc::new(LinkTable::passthrough()),
            Arc::new(LinkTable::passthrough()),
        ),
    };
    let server_sock =
        EmulatedSocket::bind(LOCALHOST.parse().unwrap(), server_table.clone()).unwrap();
    let client_sock =
        EmulatedSocket::bind(LOCALHOST.parse().unwrap(), client_table.clone()).unwrap();
    let s_addr = server_sock.local_addr_checked();
    let c_addr = client_sock.local_addr_checked();
    if let Some(spec) = link {
        client_table.set_peer(s_addr, LinkModel::new(spec.clone(), 1));
        server_table.set_peer(c_addr, LinkModel::new(spec, 2));
    }
    let (server_cfg, client_cfg) = tls_pair();
    let server = Endpoint::new_with_abstract_socket(
        EndpointConfig::default(),
        Some(server_cfg),
        server_sock.clone(),
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap();
    let mut client = Endpoint::new_with_abstract_socket(
        EndpointConfig::default(),
        None,
        client_sock.clone(),
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap();
    client.set_default_client_config(client_cfg);
    Pair {
        server,
        client,
        server_sock,
        client_sock,
    }
}

trait LocalAddr {
    fn local_addr_checked(&self) -> SocketAddr;
}
impl LocalAddr for Arc<EmulatedSocket> {
    fn local_addr_checked(&self) -> SocketAddr {
        quinn::AsyncUdpSocket::local_addr(&**self).unwrap()
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Server: echoes every bidirectional stream of the first connection.
fn spawn_echo(server: Endpoint) {
    tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            tokio::spawn(async move {
                let data = recv.read_to_end(64 << 20).await.unwrap();
                send.write_all(&data).await.unwrap();
                send.finish().unwrap();
                let _ = send.stopped().await;
            });
        }
    });
}

async fn echo_roundtrip(p: &Pair, data: &[u8]) -> (Vec<u8>, quinn::Connection) {
    let s_addr = p.server_sock.local_addr_checked();
    let conn = p
        .client
        .connect(s_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(data).await.unwrap();
    send.finish().unwrap();
    let back = recv.read_to_end(64 << 20).await.unwrap();
    (back, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quinn_over_a_50ms_link_sees_the_delay_and_data_arrives_intact() {
    let clock = EmuClock::starting_now();
    let p = pair(
        clock,
        SchedulerMode::Auto,
        Some(LinkSpec::ideal(Duration::from_millis(50))),
    );
    assert_eq!(p.client_sock.scheduler_mode(), SchedulerMode::Precise);
    spawn_echo(p.server.clone());
    let data = payload(300_000);
    let t0 = tokio::time::Instant::now();
    let (back, conn) = echo_roundtrip(&p, &data).await;
    let elapsed = t0.elapsed();
    assert!(back == data, "echoed data differs");
    // Handshake (1 RTT) + request + response (1 RTT at least): ≥ 200 ms of pure delay.
    assert!(
        elapsed >= Duration::from_millis(200),
        "took only {elapsed:?}"
    );
    assert!(
        conn.rtt() >= Duration::from_millis(100),
        "rtt {:?}",
        conn.rtt()
    );
    let c = p.client_sock.stats();
    assert!(c.traffic.sent_datagrams > 0);
    assert_eq!(c.traffic.dropped_total(), 0);
    assert_eq!(c.unmapped_datagrams, 0);
    assert_eq!(
        c.traffic.offered_datagrams,
        c.traffic.sent_datagrams + c.traffic.held_datagrams
    );
    assert!(p.server_sock.stats().received_datagrams > 0);
    conn.close(0u32.into(), b"done");
}

#[tokio::test(start_paused = true)]
async fn quinn_under_tokio_paused_clock_uses_the_tokio_timer_scheduler() {
    let clock = EmuClock::starting_now();
    let p = pair(
        clock,
        SchedulerMode::Auto,
        Some(LinkSpec::ideal(Duration::from_millis(640))),
    );
    assert_eq!(p.client_sock.scheduler_mode(), SchedulerMode::TokioTimer);
    spawn_echo(p.server.clone());
    let data = payload(100_000);
    let t0 = tokio::time::Instant::now();
    let (back, conn) = echo_roundtrip(&p, &data).await;
    assert!(back == data);
    assert!(
        t0.elapsed() >= Duration::from_millis(2560),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        conn.rtt() >= Duration::from_millis(1280),
        "rtt {:?}",
        conn.rtt()
    );
    conn.close(0u32.into(), b"done");
}

#[tokio::test(start_paused = true)]
async fn a_transfer_across_an_outage_completes_intact() {
    let clock = EmuClock::starting_now();
    let mut spec = LinkSpec::ideal(Duration::from_millis(100));
    spec.rate_bps = Some(20_000_000);
    spec.queue_limit_bytes = 1_000_000;
    // Both directions down from 1 s to 4 s of emulated time.
    spec.outages = OutageSchedule {
        periodic: vec![],
        windows: vec![Window {
            start: Duration::from_secs(1),
            end: Duration::from_secs(4),
        }],
    };
    let p = pair(clock, SchedulerMode::Auto, Some(spec));
    spawn_echo(p.server.clone());
    // 4 MB each way at 20 Mbit/s needs ~1.6 s per direction: it must cross the outage.
    let data = payload(4_000_000);
    let (back, conn) = echo_roundtrip(&p, &data).await;
    assert!(back == data, "data corrupted across the outage");
    assert!(clock.now() > Duration::from_secs(4));
    let dropped =
        p.client_sock.stats().traffic.dropped_outage + p.server_sock.stats().traffic.dropped_outage;
    assert!(dropped > 0, "no datagram was dropped by the outage");
    let s_addr = p.server_sock.local_addr_checked();
    let link = p.client_sock.links().link_stats(s_addr).unwrap();
    assert_eq!(
        link.traffic.dropped_outage,
        p.client_sock.stats().traffic.dropped_outage
    );
    conn.close(0u32.into(), b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_mode_carries_quinn_without_emulation() {
    let p = pair(EmuClock::starting_now(), SchedulerMode::Auto, None);
    assert!(p.client_sock.links().is_passthrough());
    spawn_echo(p.server.clone());
    let data = payload(1_000_000);
    let (back, conn) = echo_roundtrip(&p, &data).await;
    assert!(back == data);
    let c = p.client_sock.stats();
    assert_eq!(c.traffic.offered_datagrams, c.traffic.sent_datagrams);
    assert_eq!(c.traffic.held_datagrams, 0);
    assert_eq!(c.traffic.dropped_total(), 0);
    assert!(p.client_sock.scheduler_stats().is_none());
    conn.close(0u32.into(), b"done");
}
