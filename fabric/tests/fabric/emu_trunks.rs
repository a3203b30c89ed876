#![allow(clippy::unwrap_used)]
//! Shared trunks under tokio's paused clock: the datagrams of several node pairs that the
//! roster places on one trunk serialise through one FIFO, exactly as the link model says,
//! and a full shared queue drops for every sender.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netem_profiles::{DropCause, Profile, TrunkPlan, UDP_IP_OVERHEAD_BYTES};
use spacefabric_fabric::emu::{EmuClock, EmuDropCause, EmulatedSocket, Fate, LinkTable, TrunkSet};
use spacefabric_testkit::profiles;

/// Two sites, 8 Mbit/s (one byte per µs) and 1.28 s between them; `extra` goes into the
/// earth–moon link.
fn profile(extra: &str) -> Arc<Profile> {
    profiles::earth_moon_8mbit("two-sites")
        .last_link_extra(extra)
        .profile()
}

/// `n` earth nodes then `n` moon nodes, each on its own socket and table, with every
/// cross-site peer set the way the mesh does it: from the roster's trunk plan and one
/// shared trunk set.
fn cluster(profile: &Arc<Profile>, n: usize) -> (Vec<Arc<EmulatedSocket>>, Arc<TrunkSet>) {
    let clock = EmuClock::starting_now();
    let sites: Vec<usize> = (0..2 * n).map(|r| r / n).collect();
    let plan = TrunkPlan::new(profile, &sites);
    let trunks = Arc::new(TrunkSet::new(profile.clone()));
    let sockets: Vec<_> = (0..2 * n)
        .map(|_| {
            let table = Arc::new(LinkTable::new(clock));
            EmulatedSocket::bind("127.0.0.1:0".parse().unwrap(), table).unwrap()
        })
        .collect();
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.bound_addr()).collect();
    for (a, sock) in sockets.iter().enumerate() {
        for (b, &addr) in addrs.iter().enumerate() {
            if a == b {
                continue;
            }
            let id = plan.trunk(a, b).unwrap();
            match trunks.trunk(id) {
                Some(trunk) => sock.links().set_peer_trunk(addr, &trunk),
                None => sock
                    .links()
                    .set_peer(addr, profile.link_model(sites[a], sites[b])),
            }
        }
    }
    (sockets, trunks)
}

/// 1000 bytes on the wire: exactly 1 ms at 8 Mbit/s.
const PAYLOAD: usize = 1000 - UDP_IP_OVERHEAD_BYTES;

#[tokio::test(start_paused = true)]
async fn node_pairs_on_one_trunk_serialise_in_one_fifo() {
    let profile = profile("");
    let n = 3;
    let (sockets, trunks) = cluster(&profile, n);
    let delay = Duration::from_millis(1280);
    let ms = Duration::from_millis(1);
    // Every earth node sends 4 datagrams to every moon node, interleaved, all at t = 0.
    let mut sent = Vec::new();
    for round in 0..4u8 {
        for a in 0..n {
            for b in n..2 * n {
                let mut data = vec![0u8; PAYLOAD];
                data[..3].copy_from_slice(&[a as u8, b as u8, round]);
                let fate = sockets[a]
                    .send_traced(sockets[b].bound_addr(), &data)
                    .unwrap();
                sent.push(((a, b, round), fate));
            }
        }
    }
    // The k-th datagram handed to the trunk (whoever sent it) leaves at (k+1) ms and
    // arrives one light time later: exact to the nanosecond.
    for (k, (who, fate)) in sent.iter().enumerate() {
        let want = ms * (k as u32 + 1) + delay;
        assert_eq!(
            *fate,
            Fate::Held {
                at: want,
                duplicate_at: None
            },
            "datagram {k} from {who:?}"
        );
    }
    // Each receiver gets its datagrams in the order they entered the trunk.
    let mut buf = vec![0u8; 2048];
    for (b, receiver) in sockets.iter().enumerate().skip(n) {
        let mut got = Vec::new();
        while got.len() < n * 4 {
            let (len, _) =
                tokio::time::timeout(Duration::from_secs(5), receiver.recv_from(&mut buf))
                    .await
                    .expect("datagram did not arrive")
                    .unwrap();
            assert_eq!(len, PAYLOAD);
            got.push((buf[0] as usize, buf[1] as usize, buf[2]));
        }
        let want: Vec<_> = sent.iter().map(|(w, _)| *w).filter(|w| w.1 == b).collect();
        assert_eq!(got, want, "receiver {b}");
    }
    // One trunk carried all of it; the other direction's trunk was never used.
    let stats = trunks.stats();
    let labels: Vec<&str> = stats.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["earth->moon#0", "moon->earth#0"]);
    assert_eq!(stats[0].traffic.sent_datagrams, sent.len() as u64);
    assert_eq!(stats[1].traffic.offered_datagrams, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_shared_queue_drops_for_every_sender() {
    // A 3000-byte queue: three 1000-byte datagrams wait, the fourth is tail-dropped.
    let profile = profile("queue_bytes = 3000");
    let n = 2;
    let (sockets, trunks) = cluster(&profile, n);
    let to = |b: usize| sockets[b].bound_addr();
    let data = vec![7u8; PAYLOAD];
    // Earth node 0 fills the queue alone...
    for _ in 0..3 {
        assert!(matches!(
            sockets[0].send_traced(to(2), &data).unwrap(),
            Fate::Held { .. }
        ));
    }
    // ...and from then on every earth sender, to every moon node, is dropped.
    let queue_drop = Fate::Dropped(EmuDropCause::Link(DropCause::Queue));
    for (a, b) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
        assert_eq!(
            sockets[a].send_traced(to(b), &data).unwrap(),
            queue_drop,
            "{a}->{b}"
        );
    }
    assert_eq!(sockets[1].stats().traffic.dropped_queue, 2);
    // The other direction has its own trunk: moon → earth is unaffected.
    assert!(matches!(
        sockets[2]
            .send_traced(sockets[0].bound_addr(), &data)
            .unwrap(),
        Fate::Held { .. }
    ));
    // After 1 ms one datagram has left the trunk: room for exactly one more, from anyone.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(
        sockets[1].send_traced(to(3), &data).unwrap(),
        Fate::Held { .. }
    ));
    assert_eq!(sockets[0].send_traced(to(2), &data).unwrap(), queue_drop);
    let earth_moon = trunks
        .stats()
        .into_iter()
        .find(|s| s.label == "earth->moon#0")
        .unwrap();
    assert_eq!(earth_moon.traffic.dropped_queue, 5);
}

#[tokio::test(start_paused = true)]
async fn per_pair_links_do_not_share() {
    let profile = profile("per_pair = true\nqueue_bytes = 3000");
    let (sockets, trunks) = cluster(&profile, 2);
    let data = vec![7u8; PAYLOAD];
    for _ in 0..3 {
        sockets[0]
            .send_traced(sockets[2].bound_addr(), &data)
            .unwrap();
    }
    // Node 1's private link to node 2 is empty.
    assert!(matches!(
        sockets[1]
            .send_traced(sockets[2].bound_addr(), &data)
            .unwrap(),
        Fate::Held { .. }
    ));
    assert!(trunks.stats().is_empty());
}
