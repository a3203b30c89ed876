//! The peer mesh over real QUIC on loopback: transfers between every pair in order (also
//! received and passed on as pieces), a
//! stranger refused, malformed frames refused without harming the mesh, a forced reconnect
//! resumed without loss or duplicates, the contact plan respected across a scheduled outage.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use prost::Message;
use spacefabric_fabric::transport::frame::{FabricHello, ReceiverState, TransferHeader};
use spacefabric_fabric::transport::tls::DevCa;
use spacefabric_fabric::transport::{Mesh, MeshConfig, TransportError};
use spacefabric_testkit::fabric::FabricCluster;
use spacefabric_testkit::profiles::{self, ProfileSpec, Rate};
use tokio::time::Instant;

fn lan() -> ProfileSpec {
    profiles::lan("test-lan")
}

/// Two sites; the cross link is down during [20 s, 50 s) of emulated time.
fn two_sites_with_outage() -> ProfileSpec {
    profiles::two_sites("test-outage", "a", "b", 100.0, Some(Rate::Mbps(80.0)))
        .last_link_extra("[[links.outages.windows]]\nstart_s = 20\nend_s = 50")
}

fn cluster(profile: ProfileSpec, sites: &[&str]) -> FabricCluster {
    FabricCluster::new(profile.profile(), sites)
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
async fn every_pair_exchanges_in_order() {
    let c = cluster(lan(), &["lan"; 4]);
    let meshes = c.connect_all().await;
    assert_eq!(meshes[2].rank(), 2);
    assert_eq!(meshes[2].world_size(), 4);
    // Every rank sends three messages under tag 5 and one under tag 9 to every rank
    // (itself included); sizes differ so order mistakes show.
    let mut tasks = Vec::new();
    for (from, mesh) in meshes.iter().enumerate() {
        for to in 0..4 {
            for k in 0..3u8 {
                let payload = pattern(1000 * (k as usize + 1) + from, k);
                tasks.push(async move { mesh.send(to, 5, payload).await }.boxed());
            }
            tasks.push(async move { mesh.send(to, 9, Bytes::from_static(b"nine")).await }.boxed());
        }
    }
    for r in futures::future::join_all(tasks).await {
        r.unwrap();
    }
    for mesh in &meshes {
        for from in 0..4 {
            for k in 0..3u8 {
                let got = mesh.recv(from, 5).await.unwrap();
                assert_eq!(got, pattern(1000 * (k as usize + 1) + from, k));
            }
            assert_eq!(&mesh.recv(from, 9).await.unwrap()[..], b"nine");
        }
    }
    // A large transfer (several windows of chunks).
    let big = pattern(24 << 20, 3);
    let (a, b) = (&meshes[0], &meshes[3]);
    let (sent, got) = tokio::join!(a.send(3, 77, big.clone()), b.recv(0, 77));
    sent.unwrap();
    assert_eq!(got.unwrap(), big);
    // The same, received as the pieces quinn read (not joined), and those pieces passed on
    // to a third rank as they are.
    let (sent, got) = tokio::join!(a.send(3, 78, big.clone()), b.recv_payload(0, 78));
    sent.unwrap();
    let got = got.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(
        got.pieces().len() > 1,
        "a 24 MiB transfer came in one piece"
    );
    let (sent, again) = tokio::join!(b.send_payload(1, 79, got.clone()), meshes[1].recv(3, 79));
    sent.unwrap();
    assert_eq!(again.unwrap(), big);
    assert_eq!(got.into_bytes(), big);
    assert!(matches!(
        a.send(4, 1, Bytes::new()).await,
        Err(TransportError::NoSuchRank { rank: 4, .. })
    ));
}

/// Connects two ranks at once; each gives up with a connect timeout (the other refused it).
async fn neither_connects(cfg0: MeshConfig, cfg1: MeshConfig) {
    let (r0, r1) = tokio::join!(Mesh::connect(cfg0), Mesh::connect(cfg1));
    for r in [r0, r1] {
        assert!(
            matches!(r, Err(TransportError::ConnectTimeout { .. })),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn a_stranger_is_refused() {
    let c = cluster(lan(), &["lan"; 2]);
    let stranger_ca = DevCa::generate().unwrap();
    let mut cfg0 = c.config(0);
    cfg0.identity = stranger_ca.issue("node-0").unwrap();
    cfg0.connect_timeout = Some(Duration::from_secs(3));
    let mut cfg1 = c.config(1);
    cfg1.connect_timeout = Some(Duration::from_secs(3));
    neither_connects(cfg0, cfg1).await;
}

#[tokio::test]
async fn a_member_cannot_pose_as_another_rank() {
    // Rank 1 runs with node-7's certificate (signed by the cluster CA), but the plan says
    // rank 1 is node-1: rank 0 refuses it.
    let c = cluster(lan(), &["lan"; 2]);
    let mut cfg0 = c.config(0);
    cfg0.connect_timeout = Some(Duration::from_secs(3));
    let mut cfg1 = c.config(1);
    cfg1.identity = c.ca.issue("node-7").unwrap();
    cfg1.peers[1].name = "node-7".to_string();
    cfg1.connect_timeout = Some(Duration::from_secs(3));
    neither_connects(cfg0, cfg1).await;
    // Our own entry must match our certificate: a config error, reported at once.
    let mut cfg = c.config(0);
    cfg.peers[0].name = "node-5".to_string();
    let err = Mesh::connect(cfg).await.unwrap_err();
    assert!(err.to_string().contains("node-5"), "{err}");
}

/// A hand-rolled peer of rank 0 on raw quinn, to send what a real mesh never would.
async fn raw_rank0(c: &FabricCluster) -> (quinn::Endpoint, quinn::Connection, quinn::SendStream) {
    let id = &c.identities[0];
    let socket = UdpSocket::bind(c.peers[0].addr).unwrap();
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap();
    ep.set_default_client_config(id.quic_client_config().unwrap());
    let conn = ep
        .connect(c.peers[1].addr, "node-1")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = FabricHello {
        rank: 0,
        world_size: 2,
        receiver_state: Some(ReceiverState::default()),
        session: String::new(),
    };
    send.write_all(&hello.encode_length_delimited_to_vec())
        .await
        .unwrap();
    // Read the mesh's hello back (length-delimited).
    let mut len = [0u8; 1];
    recv.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; len[0] as usize];
    recv.read_exact(&mut body).await.unwrap();
    FabricHello::decode(body.as_slice()).unwrap();
    (ep, conn, send)
}

async fn uni(conn: &quinn::Connection, bytes: &[u8]) -> quinn::SendStream {
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.finish().unwrap();
    s
}

fn header(tag: u64, id: u64, from: u32, offset: u64, total: u64) -> Vec<u8> {
    TransferHeader {
        from_rank: from,
        tag,
        transfer_id: id,
        seq: 0,
        offset,
        total_len: total,
    }
    .encode_length_delimited_to_vec()
}

#[tokio::test]
async fn malformed_frames_close_only_their_stream() {
    let mut c = cluster(lan(), &["lan"; 2]);
    c.release_sockets();
    let mut cfg1 = c.config(1);
    cfg1.max_transfer_bytes = 1 << 20;
    let (raw, mesh1) = tokio::join!(raw_rank0(&c), Mesh::connect(cfg1));
    let (_ep, conn, mut control) = raw;
    let mesh1 = mesh1.unwrap();

    // 1. Garbage where the header should be (a huge varint length).
    let _s1 = uni(&conn, &[0xff; 16]).await;
    // 2. A header claiming another sender.
    let _s2 = uni(&conn, &[header(1, 1, 7, 0, 4), b"abcd".to_vec()].concat()).await;
    // 3. A transfer larger than the limit.
    let _s3 = uni(&conn, &header(1, 2, 0, 0, 1 << 30)).await;
    // 4. A payload shorter than announced.
    let _s4 = uni(&conn, &[header(1, 3, 0, 0, 100), vec![1; 10]].concat()).await;
    // 5. Bytes that do not decode as a header.
    let _s5 = uni(&conn, &[3, 0xff, 0xff, 0xff]).await;
    // 6. A good transfer on the same connection still arrives.
    let _ok = uni(&conn, &[header(1, 4, 0, 0, 5), b"hello".to_vec()].concat()).await;
    assert_eq!(&mesh1.recv(0, 1).await.unwrap()[..], b"hello");
    // Each bad stream is counted as refused (they are handled concurrently: wait for all).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while mesh1.stats().protocol_errors < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mesh1.stats().protocol_errors, 5, "{:?}", mesh1.stats());
    assert_eq!(mesh1.stats().transfers_delivered, 1);

    // 7. Garbage on the control stream closes the connection, not the process.
    control.write_all(&[0xff; 12]).await.unwrap();
    let reason = conn.closed().await;
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(2)),
        "{reason:?}"
    );
    // The mesh is still alive and answers for itself.
    mesh1.send(1, 3, Bytes::from_static(b"self")).await.unwrap();
    assert_eq!(&mesh1.recv(1, 3).await.unwrap()[..], b"self");
}

#[tokio::test(start_paused = true)]
async fn forced_reconnect_resumes_without_loss_or_duplicates() {
    let c = cluster(lan(), &["lan"; 2]);
    let meshes = c.connect_all().await;
    let (m0, m1) = (&meshes[0], &meshes[1]);
    let payload = pattern(48 << 20, 9);
    let mut progress = m1.received_bytes();
    let sender = m0.send(1, 42, payload.clone());
    let fault = async {
        progress.wait_for(|&b| b >= 8 << 20).await.unwrap();
        // The receiver's side drops the connection, as an unplanned fault would.
        m1.inject_connection_fault(0);
    };
    let receiver = m1.recv(0, 42);
    let (sent, (), got) = tokio::join!(sender, fault, receiver);
    sent.unwrap();
    assert_eq!(got.unwrap(), payload, "payload intact");
    let (s0, s1) = (m0.stats(), m1.stats());
    assert!(
        s1.connections_lost >= 1 && s0.connections >= 2,
        "{s0:?} {s1:?}"
    );
    assert_eq!(s0.resumed_transfers, 1, "{s0:?}");
    assert!(
        s0.resume_skipped_bytes >= 8 << 20,
        "resumed, not restarted: {s0:?}"
    );
    // Exactly once: the receiver accepted each byte once and delivered one transfer.
    assert_eq!(s1.payload_bytes_received, 48 << 20, "{s1:?}");
    assert_eq!(s1.transfers_delivered, 1);
    let again = tokio::time::timeout(Duration::from_secs(120), m1.recv(0, 42)).await;
    assert!(again.is_err(), "no duplicate delivery");
    // The mesh keeps working on the new connection.
    let (a, b) = tokio::join!(m0.send(1, 43, pattern(1000, 1)), m1.recv(0, 43));
    a.unwrap();
    assert_eq!(b.unwrap(), pattern(1000, 1));
}

#[tokio::test(start_paused = true)]
async fn transfer_across_a_scheduled_outage_waits_for_the_contact() {
    let c = cluster(two_sites_with_outage(), &["a", "b"]);
    let meshes = c.connect_all().await;
    let (m0, m1) = (&meshes[0], &meshes[1]);
    let s = Duration::from_secs;
    // Start 5 s before the outage: 80 Mbit/s x ~4.8 s of contact = ~46 MB go before it,
    // the rest of 80 MB must wait for the link to come back at 50 s.
    tokio::time::sleep_until(c.clock.instant_at(s(15))).await;
    let payload = pattern(80 << 20, 4);
    let mut progress = m1.received_bytes();
    let clock = c.clock;
    let watcher = tokio::spawn(async move {
        // The emulated time of every progress step at the receiver.
        let mut steps = Vec::new();
        while progress.changed().await.is_ok() {
            steps.push((clock.now(), *progress.borrow()));
            if *progress.borrow() >= 80 << 20 {
                break;
            }
        }
        steps
    });
    let (sent, got) = tokio::join!(m0.send(1, 1, payload.clone()), m1.recv(0, 1));
    sent.unwrap();
    assert_eq!(got.unwrap(), payload, "payload intact");
    let steps = watcher.await.unwrap();
    let before = steps.iter().filter(|(t, _)| *t < s(20)).count();
    let inside: Vec<_> = steps
        .iter()
        .filter(|(t, _)| *t >= s(20) && *t < s(50))
        .collect();
    assert!(
        before > 0 && inside.is_empty(),
        "bytes arrived during the outage: {inside:?}"
    );
    // Resume: the first new bytes arrive one one-way delay (100 ms) after the link is back,
    // well within 1 RTT + 50 ms.
    let first_after = steps.iter().find(|(t, _)| *t >= s(50)).unwrap().0;
    assert!(
        first_after <= s(50) + Duration::from_millis(250),
        "first data after the outage at {first_after:?}"
    );
    assert!(m0.stats().contact_waits >= 1);
    // No data was poured into the outage: the sender lost at most a few control packets (an
    // ACK of the peer's last window update) to it. The receiver sends no payload; its probes
    // of an unacknowledged window update meet the outage with exponential back-off (a dozen
    // small packets over 30 s). The bounds leave room for scheduling noise on a busy machine
    // and stay far below what a sender that ignores the contact plan loses: a window's worth
    // (80 Mbit/s x 200 ms RTT = 2 MB, ~1,400 datagrams).
    let sender = m0.emulated_socket().unwrap().stats().traffic;
    assert!(sender.dropped_outage <= 32, "{sender:?}");
    let receiver = m1.emulated_socket().unwrap().stats().traffic;
    assert!(receiver.dropped_outage <= 64, "{receiver:?}");
    for t in [sender, receiver] {
        assert_eq!(t.dropped_total(), t.dropped_outage, "{t:?}");
    }
}

/// The collectives hold `send`/`recv` futures across threads: they must be `Send`.
#[allow(dead_code)]
fn mesh_futures_are_send(mesh: &Mesh) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&mesh.send(0, 0, Bytes::new()));
    is_send(&mesh.recv(0, 0));
}

/// One site pair 1 s apart: a closed connection drains for three probe timeouts (≥ 6 s on a
/// 2 s round trip), which used to keep the fabric port bound that long.
fn one_second_apart() -> ProfileSpec {
    profiles::two_sites("test-far", "a", "b", 1000.0, None)
}

#[tokio::test]
async fn a_dropped_mesh_frees_its_port_before_its_connections_drain() {
    let mut c = cluster(one_second_apart(), &["a", "b"]);
    c.release_sockets();
    let meshes = c.connect_all().await;
    let (send, recv) = tokio::join!(meshes[0].send(1, 7, pattern(1000, 1)), meshes[1].recv(0, 7));
    send.unwrap();
    assert_eq!(recv.unwrap(), pattern(1000, 1));
    let addrs: Vec<SocketAddr> = c.peers.iter().map(|p| p.addr).collect();
    drop(meshes);
    // The next job attempt binds the same ports: it must not wait for the drain (≥ 6 s).
    // The datagrams still held for their 1 s link delay keep the socket open until they
    // leave, so allow a few seconds.
    let started = Instant::now();
    for addr in addrs {
        loop {
            match UdpSocket::bind(addr) {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(5),
                        "{addr} still bound after {:?}: {e}",
                        started.elapsed()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
