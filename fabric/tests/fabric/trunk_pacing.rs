//! Senders keep to the link, on tokio's paused clock (exact emulated time, no sleeps):
//! several node pairs sending across one shared trunk at once lose nothing at its queue and
//! finish within a few percent of the trunk's bound, and a burst on a site's private link
//! waits in the sender's socket buffer instead of being dropped. Without host-side pacing
//! ([`spacefabric_fabric::transport::pacing`]) quinn sends each connection's first round trip
//! at 1.25 × its share and the trunk's queue overflows; without the sender's buffer a 2 MiB
//! window poured into a 125 kB site queue loses most of it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use spacefabric_fabric::emu::{EmuClock, TrunkSet};
use spacefabric_fabric::transport::Mesh;
use spacefabric_testkit::fabric::FabricCluster;
use spacefabric_testkit::profiles::{self, Rate};

const PER_SITE: usize = 3;
const PAYLOAD: usize = 8 << 20;

/// Two sites of three nodes (10 Gbit/s inside each); one 80 Mbit/s trunk per direction with a
/// 640 ms one-way delay (its default queue: 100 ms of the link, 1 MB). Every rank's mesh
/// sends on the same trunks, as in one process; returns them with the scenario clock.
async fn meshes() -> (Vec<Mesh>, EmuClock) {
    let profile = profiles::two_sites("test-trunk", "a", "b", 640.0, Some(Rate::Mbps(80.0)))
        .inside(0.05, Some(Rate::Mbps(10_000.0)))
        .profile();
    let sites = [["a"; PER_SITE], ["b"; PER_SITE]].concat();
    let c = FabricCluster::new(profile, &sites);
    let trunks = Arc::new(TrunkSet::new(c.profile.clone()));
    let meshes = c
        .connect_with(|config| config.trunks = Some(trunks.clone()))
        .await;
    (meshes, c.clock)
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(start_paused = true)]
async fn concurrent_senders_on_one_trunk_lose_nothing_and_keep_to_its_rate() {
    let (meshes, clock) = meshes().await;
    let meshes = Arc::new(meshes);
    // The plan puts PER_SITE connections on the a → b trunk at once.
    for a in 0..PER_SITE {
        meshes[a].set_trunk_share(a + PER_SITE, PER_SITE as u32);
    }
    let started = clock.now();
    let mut tasks = Vec::new();
    for a in 0..PER_SITE {
        let (m, b) = (meshes.clone(), a + PER_SITE);
        let payload = pattern(PAYLOAD, a as u8);
        tasks.push(tokio::spawn(async move {
            let (sent, got) = tokio::join!(m[a].send(b, 7, payload.clone()), m[b].recv(a, 7));
            sent.unwrap();
            assert!(got.unwrap() == payload, "payload {a} -> {b} intact");
            clock.now()
        }));
    }
    let mut last = Duration::ZERO;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    let took = last - started;
    // The trunk's bound, counting payload only (a lower bound: QUIC and IP/UDP framing add
    // ~5 % on the wire at 1452-byte datagrams): one-way delay + every byte at 80 Mbit/s.
    let payload_time = Duration::from_secs_f64((PER_SITE * PAYLOAD) as f64 * 8.0 / 80e6);
    let bound = Duration::from_millis(640) + payload_time;
    let queue_drops: u64 = meshes
        .iter()
        .map(|m| m.emulated_socket().unwrap().stats().traffic.dropped_queue)
        .sum();
    assert_eq!(
        queue_drops, 0,
        "datagrams tail-dropped at the trunk's queue"
    );
    assert!(took >= bound, "took {took:?}, below the bound {bound:?}");
    assert!(
        took.as_secs_f64() <= bound.as_secs_f64() * 1.10,
        "took {took:?}, more than 1.10 x the bound {bound:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_on_a_private_site_link_waits_instead_of_dropping() {
    let (meshes, _) = meshes().await;
    let payload = pattern(PAYLOAD, 9);
    let (sent, got) = tokio::join!(meshes[0].send(1, 3, payload.clone()), meshes[1].recv(0, 3));
    sent.unwrap();
    assert!(got.unwrap() == payload, "payload intact");
    let sender = meshes[0].emulated_socket().unwrap().stats().traffic;
    assert_eq!(sender.dropped_total(), 0, "{sender:?}");
}

#[tokio::test(start_paused = true)]
async fn transfers_to_one_peer_cross_the_trunk_first_issued_first() {
    // Two 4 MiB transfers issued back to back to one peer, alone on the trunk: the first
    // must arrive after its own serialisation, not after both (the cost model's trunk is a
    // FIFO in issue order; sharing the connection's rate between them, as the mesh did
    // before `SendOrder`, delivered both at the end: the first ~0.42 s late).
    let (meshes, clock) = meshes().await;
    let (a, b) = (0, PER_SITE);
    meshes[a].set_trunk_share(b, 1);
    let len = 4 << 20;
    let (first, second) = (pattern(len, 1), pattern(len, 2));
    let started = clock.now();
    let send = async {
        let (x, y) = tokio::join!(
            meshes[a].send(b, 1, first.clone()),
            meshes[a].send(b, 2, second.clone())
        );
        x.unwrap();
        y.unwrap();
    };
    let recv = |tag: u64, want: Bytes| {
        let m = &meshes[b];
        async move {
            let got = m.recv(a, tag).await.unwrap();
            assert!(got == want, "payload {tag} intact");
            clock.now() - started
        }
    };
    let ((), t1, t2) = tokio::join!(send, recv(1, first.clone()), recv(2, second.clone()));
    // Payload only at 80 Mbit/s (framing adds ~5 % on the wire): lower bounds.
    let one = Duration::from_secs_f64(len as f64 * 8.0 / 80e6);
    let delay = Duration::from_millis(640);
    let (b1, b2) = (delay + one, delay + one * 2);
    assert!(
        t1 >= b1 && t2 >= b2,
        "{t1:?} / {t2:?} below {b1:?} / {b2:?}"
    );
    assert!(
        t1.as_secs_f64() <= 1.10 * b1.as_secs_f64(),
        "first transfer arrived at {t1:?}, more than 1.10 x its FIFO time {b1:?} (second {t2:?})"
    );
    assert!(
        t2.as_secs_f64() <= 1.10 * b2.as_secs_f64(),
        "second transfer arrived at {t2:?}, more than 1.10 x {b2:?}"
    );
}
