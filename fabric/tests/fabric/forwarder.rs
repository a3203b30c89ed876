#![allow(clippy::unwrap_used)]
//! The forwarder under tokio's paused clock: node sockets in "separate processes" (separate
//! tables, no shared objects) that send through one forwarder serialise on its one trunk in
//! one FIFO, exactly as the link model says; receivers see the true source; malformed
//! datagrams and trunks the profile does not share are counted and dropped; a QUIC transfer
//! between two meshes through the forwarder survives the forwarder's restart intact.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use netem_profiles::{Profile, UDP_IP_OVERHEAD_BYTES};
use spacefabric_fabric::emu::encap::{self, WireTrunk};
use spacefabric_fabric::emu::{EmuClock, EmulatedSocket, Fate, LinkTable};
use spacefabric_fabric::forwarder::{Forwarder, Rejection};
use spacefabric_fabric::transport::{Mesh, MeshConfig};
use spacefabric_testkit::fabric::FabricCluster;
use spacefabric_testkit::profiles::{self, Rate};
use tokio_util::sync::CancellationToken;

/// Two sites, 8 Mbit/s (one byte per µs) and 1.28 s from earth to moon.
fn profile() -> Arc<Profile> {
    profiles::earth_moon_8mbit("two-sites").profile()
}

/// 1000 bytes on the wire: exactly 1 ms at 8 Mbit/s.
const PAYLOAD: usize = 1000 - UDP_IP_OVERHEAD_BYTES;

const EARTH_TO_MOON: WireTrunk = WireTrunk {
    from_site: 0,
    to_site: 1,
    terminal: 0,
};

fn node(clock: EmuClock, forwarder: SocketAddr) -> Arc<EmulatedSocket> {
    let table = Arc::new(LinkTable::new(clock).with_forwarder(forwarder));
    EmulatedSocket::bind("127.0.0.1:0".parse().unwrap(), table).unwrap()
}

#[tokio::test(start_paused = true)]
async fn two_senders_through_one_forwarder_serialise_in_one_fifo() {
    let clock = EmuClock::starting_now();
    let fwd = Arc::new(Forwarder::bind("127.0.0.1:0".parse().unwrap(), profile(), clock).unwrap());
    let at = fwd.local_addr();
    // Two earth nodes and two moon nodes, each with its own table: nothing shared but the
    // forwarder, as between processes.
    let (e0, e1, m0, m1) = (
        node(clock, at),
        node(clock, at),
        node(clock, at),
        node(clock, at),
    );
    for e in [&e0, &e1] {
        for m in [&m0, &m1] {
            e.links().set_peer_forwarded(m.bound_addr(), EARTH_TO_MOON);
        }
    }
    // e0 -> m0 and e1 -> m1, interleaved, 6 each, all at t = 0.
    let mut sent = Vec::new();
    for i in 0..6u8 {
        for (from, to, tag) in [(&e0, &m0, 0u8), (&e1, &m1, 1u8)] {
            let mut data = vec![0u8; PAYLOAD];
            data[..2].copy_from_slice(&[tag, i]);
            assert_eq!(
                from.send_traced(to.bound_addr(), &data).unwrap(),
                Fate::Forwarded
            );
            sent.push((tag, i));
        }
    }
    assert_eq!(e0.stats().forwarded_datagrams, 6);
    // The forwarder takes them in the order they were sent; the k-th (whoever sent it)
    // leaves the trunk at (k+1) ms and arrives one light time later, to the nanosecond.
    let delay = Duration::from_millis(1280);
    let ms = Duration::from_millis(1);
    let mut buf = vec![0u8; 65_536];
    let mut want_at = Vec::new();
    for k in 0..sent.len() {
        let (from, fate) = fwd.recv_one(&mut buf).await.unwrap();
        let want = ms * (k as u32 + 1) + delay;
        assert_eq!(
            fate,
            Ok(Fate::Held {
                at: want,
                duplicate_at: None
            }),
            "datagram {k}"
        );
        let sender = if k % 2 == 0 { &e0 } else { &e1 };
        assert_eq!(from, sender.bound_addr());
        want_at.push(want);
    }
    // Each receiver records when each datagram arrives and who it says sent it.
    let receive = |sock: Arc<EmulatedSocket>| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut got = Vec::new();
            for _ in 0..6 {
                let (len, from) = sock.recv_from(&mut buf).await.unwrap();
                assert_eq!(len, PAYLOAD);
                got.push((clock.now(), from, buf[0], buf[1]));
            }
            got
        })
    };
    let (r0, r1) = (receive(m0.clone()), receive(m1.clone()));
    let (got0, got1) = (r0.await.unwrap(), r1.await.unwrap());
    for (got, tag, sender) in [(got0, 0u8, &e0), (got1, 1u8, &e1)] {
        for (i, (arrived, from, t, n)) in got.into_iter().enumerate() {
            assert_eq!((t, n), (tag, i as u8));
            assert_eq!(from, sender.bound_addr(), "true source reported");
            let k = 2 * i + usize::from(tag);
            assert_eq!(arrived, want_at[k], "arrival of datagram {k}");
        }
    }
    let stats = fwd.stats();
    assert_eq!(stats.received_datagrams, 12);
    assert_eq!(stats.rejected_total(), 0);
    assert_eq!(stats.trunks.len(), 1);
    assert_eq!(stats.trunks[0].label, "earth->moon#0");
    assert_eq!(stats.trunks[0].traffic.sent_datagrams, 12);
    assert_eq!(stats.trunks[0].traffic.sent_bytes, 12 * PAYLOAD as u64);
    assert_eq!(m0.stats().received_datagrams, 6);
}

#[tokio::test(start_paused = true)]
async fn malformed_datagrams_and_unshared_trunks_are_counted_and_dropped() {
    let clock = EmuClock::starting_now();
    let fwd = Forwarder::bind("127.0.0.1:0".parse().unwrap(), profile(), clock).unwrap();
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let header = |trunk| encap::Header {
        trunk,
        src: encap::UNSPECIFIED_SOURCE,
        dst,
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"hello".to_vec(), "short"),
        (vec![0u8; 100], "magic"),
        // A link inside a site is per pair: not the forwarder's.
        (
            encap::encode(
                &header(WireTrunk {
                    from_site: 0,
                    to_site: 0,
                    terminal: 0,
                }),
                b"x",
            ),
            "trunk",
        ),
        // No such site, no such terminal.
        (
            encap::encode(
                &header(WireTrunk {
                    from_site: 7,
                    to_site: 1,
                    terminal: 0,
                }),
                b"x",
            ),
            "trunk",
        ),
        (
            encap::encode(
                &header(WireTrunk {
                    from_site: 0,
                    to_site: 1,
                    terminal: 1,
                }),
                b"x",
            ),
            "trunk",
        ),
        (
            encap::encode(
                &encap::Header {
                    dst: "0.0.0.0:0".parse().unwrap(),
                    ..header(EARTH_TO_MOON)
                },
                b"x",
            ),
            "destination",
        ),
    ];
    let mut buf = vec![0u8; 65_536];
    for (bytes, reason) in &cases {
        raw.send_to(bytes, fwd.local_addr()).unwrap();
        let (_, result) = fwd.recv_one(&mut buf).await.unwrap();
        let rejection: Rejection = result.unwrap_err();
        assert_eq!(rejection.as_str(), *reason);
    }
    let stats = fwd.stats();
    assert_eq!(stats.received_datagrams, cases.len() as u64);
    assert_eq!(stats.rejected, [1, 1, 0, 0, 3, 1, 0]);
    assert!(stats.trunks.is_empty(), "no trunk was created for garbage");
}

#[tokio::test(start_paused = true)]
async fn a_node_drops_malformed_datagrams_from_its_forwarder() {
    let clock = EmuClock::starting_now();
    let fake_forwarder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let node = node(clock, fake_forwarder.local_addr().unwrap());
    fake_forwarder
        .send_to(b"not encapsulated", node.bound_addr())
        .unwrap();
    let good = encap::encode(
        &encap::Header {
            trunk: EARTH_TO_MOON,
            src: "127.0.0.1:4242".parse().unwrap(),
            dst: node.bound_addr(),
        },
        b"inner",
    );
    fake_forwarder.send_to(&good, node.bound_addr()).unwrap();
    let mut buf = vec![0u8; 2048];
    let (len, from) = node.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..len], b"inner");
    assert_eq!(from, "127.0.0.1:4242".parse::<SocketAddr>().unwrap());
    let stats = node.stats();
    assert_eq!(stats.malformed_from_forwarder, 1);
    assert_eq!(stats.received_datagrams, 1);
}

/// Two ranks on two sites, 100 ms and 80 Mbit/s apart, through a forwarder at `fwd`.
fn mesh_configs(profile: &Arc<Profile>, clock: EmuClock, fwd: SocketAddr) -> Vec<MeshConfig> {
    let mut cluster = FabricCluster::new(profile.clone(), &["a", "b"]);
    cluster.clock = clock;
    (0..2)
        .map(|rank| {
            let mut c = cluster.config(rank);
            c.forwarders = vec![fwd];
            c
        })
        .collect()
}

fn two_sites() -> Arc<Profile> {
    profiles::two_sites("test-two-sites", "a", "b", 100.0, Some(Rate::Mbps(80.0))).profile()
}

fn start(fwd: Arc<Forwarder>) -> (CancellationToken, tokio::task::JoinHandle<Arc<Forwarder>>) {
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        fwd.run(s).await.unwrap();
        fwd
    });
    (stop, task)
}

#[tokio::test(start_paused = true)]
async fn a_transfer_survives_a_forwarder_restart_intact() {
    let profile = two_sites();
    let clock = EmuClock::starting_now();
    let first =
        Arc::new(Forwarder::bind("127.0.0.1:0".parse().unwrap(), profile.clone(), clock).unwrap());
    let at = first.local_addr();
    let (stop, task) = start(first);
    let configs = mesh_configs(&profile, clock, at);
    let (m0, m1) = tokio::join!(
        Mesh::connect(configs[0].clone()),
        Mesh::connect(configs[1].clone())
    );
    let (m0, m1) = (m0.unwrap(), m1.unwrap());
    let payload: Bytes = (0..16usize << 20)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(3))
        .collect::<Vec<u8>>()
        .into();
    let mut progress = m1.received_bytes();
    let outage = async {
        progress.wait_for(|&b| b >= 4 << 20).await.unwrap();
        // The forwarder dies mid-transfer: what it held is lost, its port goes quiet.
        stop.cancel();
        let first = task.await.unwrap();
        let carried = first.stats();
        drop(first);
        // Down for 3 s of emulated time, then a new forwarder on the same address.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let socket = std::net::UdpSocket::bind(at).unwrap();
        let second = Arc::new(Forwarder::from_std(socket, profile.clone(), clock).unwrap());
        let (stop, task) = start(second.clone());
        (carried, second, stop, task)
    };
    let (sent, got, (carried, second, stop2, task2)) =
        tokio::join!(m0.send(1, 7, payload.clone()), m1.recv(0, 7), outage);
    sent.unwrap();
    assert_eq!(got.unwrap(), payload, "payload intact across the restart");
    assert!(carried.trunks.iter().any(|t| t.traffic.sent_datagrams > 0));
    let after = second.stats();
    let a_to_b = after
        .trunks
        .iter()
        .find(|t| t.label == "a->b#0")
        .expect("the new forwarder carried the rest");
    assert!(a_to_b.traffic.sent_bytes > 1 << 20, "{after:?}");
    assert_eq!(after.rejected_total(), 0);
    // Neither node applied the trunk itself: every cross-site datagram was forwarded.
    for m in [&m0, &m1] {
        let s = m.emulated_socket().unwrap().stats();
        assert!(s.forwarded_datagrams > 0, "{s:?}");
        assert_eq!(s.unmapped_datagrams, 0, "{s:?}");
    }
    stop2.cancel();
    task2.await.unwrap();
}
