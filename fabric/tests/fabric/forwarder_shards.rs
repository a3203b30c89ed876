#![allow(clippy::unwrap_used)]
//! Several forwarders under tokio's paused clock: each carries only the trunks
//! `netem_profiles::TrunkCarriers` gives it and refuses (counted, `other_shard`) the datagrams
//! of a trunk another forwarder carries, so a misconfigured node never doubles a trunk's
//! capacity silently; two meshes whose nodes know both forwarders send each trunk's
//! datagrams to its one carrier and a transfer across arrives intact.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use netem_profiles::{Profile, Shard, TrunkCarriers};
use spacefabric_fabric::emu::encap::{self, WireTrunk};
use spacefabric_fabric::emu::{EmuClock, Fate};
use spacefabric_fabric::forwarder::{Forwarder, Rejection};
use spacefabric_fabric::transport::Mesh;
use spacefabric_testkit::fabric::FabricCluster;
use spacefabric_testkit::profiles::{self, Rate};
use tokio_util::sync::CancellationToken;

/// Two sites 100 ms and 80 Mbit/s apart, one trunk per direction.
fn two_sites() -> Arc<Profile> {
    profiles::two_sites("shard-two-sites", "a", "b", 100.0, Some(Rate::Mbps(80.0))).profile()
}

const A_TO_B: WireTrunk = WireTrunk {
    from_site: 0,
    to_site: 1,
    terminal: 0,
};
const B_TO_A: WireTrunk = WireTrunk {
    from_site: 1,
    to_site: 0,
    terminal: 0,
};

fn sharded(profile: &Arc<Profile>, clock: EmuClock, shard: Shard) -> Arc<Forwarder> {
    Arc::new(
        Forwarder::bind("127.0.0.1:0".parse().unwrap(), profile.clone(), clock)
            .unwrap()
            .with_shard(shard)
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_forwarder_refuses_a_trunk_another_forwarder_carries() {
    let profile = two_sites();
    let clock = EmuClock::starting_now();
    // Of two forwarders, the first carries a->b and the second b->a (equal rates: trunk
    // order decides).
    let carriers = TrunkCarriers::new(&profile, 2).unwrap();
    let second = sharded(&profile, clock, Shard { index: 1, count: 2 });
    assert_eq!(second.carried_trunks().len(), 1);
    assert_eq!(second.stats().carries, vec!["b->a#0".to_string()]);
    assert_eq!(second.stats().shard, "1/2");
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut buf = vec![0u8; 65_536];
    let send = |trunk: WireTrunk| {
        let header = encap::Header {
            trunk,
            src: encap::UNSPECIFIED_SOURCE,
            dst,
        };
        raw.send_to(&encap::encode(&header, b"payload"), second.local_addr())
            .unwrap();
    };
    send(A_TO_B);
    send(B_TO_A);
    let (_, refused) = second.recv_one(&mut buf).await.unwrap();
    assert_eq!(refused, Err(Rejection::OtherShard));
    assert_eq!(Rejection::OtherShard.as_str(), "other_shard");
    let (_, carried) = second.recv_one(&mut buf).await.unwrap();
    assert!(matches!(carried, Ok(Fate::Held { .. })), "{carried:?}");
    let stats = second.stats();
    assert_eq!(stats.rejected, [0, 0, 0, 0, 0, 0, 1]);
    // Only its own trunk was ever created: the refused datagram touched no queue.
    let labels: Vec<&str> = stats.trunks.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(labels, ["b->a#0"]);
    // And the one forwarder of a single-forwarder cluster carries both.
    let only = sharded(&profile, clock, Shard::ONLY);
    assert_eq!(only.carried_trunks().len(), 2);
    assert_eq!(carriers.trunks_of(0).len() + carriers.trunks_of(1).len(), 2);
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
async fn each_trunk_goes_through_its_one_carrier() {
    let profile = two_sites();
    let clock = EmuClock::starting_now();
    let f0 = sharded(&profile, clock, Shard { index: 0, count: 2 });
    let f1 = sharded(&profile, clock, Shard { index: 1, count: 2 });
    let addrs = vec![f0.local_addr(), f1.local_addr()];
    let (stop0, task0) = start(f0);
    let (stop1, task1) = start(f1);
    let mut cluster = FabricCluster::new(profile.clone(), &["a", "b"]);
    cluster.clock = clock;
    let configs: Vec<_> = (0..2)
        .map(|rank| {
            let mut c = cluster.config(rank);
            c.forwarders.clone_from(&addrs);
            c
        })
        .collect();
    let (m0, m1) = tokio::join!(
        Mesh::connect(configs[0].clone()),
        Mesh::connect(configs[1].clone())
    );
    let (m0, m1) = (m0.unwrap(), m1.unwrap());
    let payload: Bytes = (0..(2usize << 20))
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect::<Vec<u8>>()
        .into();
    let (sent, got) = tokio::join!(m0.send(1, 3, payload.clone()), m1.recv(0, 3));
    sent.unwrap();
    assert_eq!(
        got.unwrap(),
        payload,
        "payload intact through two forwarders"
    );
    stop0.cancel();
    stop1.cancel();
    let (f0, f1) = (task0.await.unwrap(), task1.await.unwrap());
    let (s0, s1) = (f0.stats(), f1.stats());
    // Each forwarder carried its own direction and nothing else; nothing was refused, so
    // no node sent a trunk's datagrams to the wrong forwarder.
    let labels = |s: &spacefabric_fabric::forwarder::ForwarderStats| -> Vec<String> {
        s.trunks.iter().map(|t| t.label.clone()).collect()
    };
    assert_eq!(labels(&s0), ["a->b#0"], "{s0:?}");
    assert_eq!(labels(&s1), ["b->a#0"], "{s1:?}");
    assert!(s0.trunks[0].traffic.sent_bytes >= 2 << 20, "{s0:?}");
    assert!(
        s1.trunks[0].traffic.sent_datagrams > 0,
        "acks came back: {s1:?}"
    );
    assert_eq!(s0.rejected_total() + s1.rejected_total(), 0);
    for m in [&m0, &m1] {
        let s = m.emulated_socket().unwrap().stats();
        assert!(s.forwarded_datagrams > 0, "{s:?}");
        assert_eq!(s.unmapped_datagrams, 0, "{s:?}");
        assert_eq!(s.malformed_from_forwarder, 0, "{s:?}");
    }
}
