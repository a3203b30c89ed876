#![allow(clippy::unwrap_used)]
//! Relay routes with store-and-forward under tokio's paused clock, through the real
//! emulated sockets (in-process trunks) and through the forwarder: a datagram that reaches
//! the relay while its next hop is down arrives at (hop return + remaining path delay), in
//! order; a full store drops (counted at the hop, the route and the sender); a datagram
//! propagating on the hop when it goes down is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netem_profiles::{Profile, TrunkId, UDP_IP_OVERHEAD_BYTES};
use spacefabric_fabric::emu::encap::WireTrunk;
use spacefabric_fabric::emu::{EmuClock, EmulatedSocket, Fate, LinkStats, LinkTable, TrunkSet};
use spacefabric_fabric::forwarder::Forwarder;
use spacefabric_testkit::profiles::{self, LinkSpec, Rate};
use tokio_util::sync::CancellationToken;

/// earth -> relay: 1.2 s, 8 Mbit/s (1000 wire bytes = 1 ms); relay -> base: 30 ms, 8 Mbit/s,
/// down over [2 s, 5 s), storing up to 3000 bytes. earth <-> base is routed via the relay.
fn profile() -> Arc<Profile> {
    let rate = Some(Rate::Bps(8_000_000));
    profiles::sites("relay", &["earth", "base", "relay"])
        .link(LinkSpec::new("earth", "relay", 1200.0, rate))
        .link(LinkSpec::new("relay", "base", 30.0, rate).with_extra(
            "outage = \"store\"\nstore_bytes = 3000\noutages = { windows = [{ start_s = 2, end_s = 5 }] }",
        ))
        .route("earth", "base", &["relay"])
        .profile()
}

/// 1000 bytes on the wire: exactly 1 ms at 8 Mbit/s.
const PAYLOAD: usize = 1000 - UDP_IP_OVERHEAD_BYTES;

const EARTH_TO_BASE: WireTrunk = WireTrunk {
    from_site: 0,
    to_site: 1,
    terminal: 0,
};

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// Receives `n` datagrams on `sock`; returns (arrival, first byte) of each.
fn receive(
    sock: Arc<EmulatedSocket>,
    clock: EmuClock,
    n: usize,
) -> tokio::task::JoinHandle<Vec<(Duration, u8)>> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut got = Vec::new();
        for _ in 0..n {
            let (len, _) = sock.recv_from(&mut buf).await.unwrap();
            assert_eq!(len, PAYLOAD);
            got.push((clock.now(), buf[0]));
        }
        got
    })
}

fn datagram(tag: u8) -> Vec<u8> {
    let mut d = vec![0u8; PAYLOAD];
    d[0] = tag;
    d
}

fn by_label<'a>(stats: &'a [LinkStats], label: &str) -> &'a LinkStats {
    stats
        .iter()
        .find(|s| s.label == label)
        .unwrap_or_else(|| panic!("no link {label} in {stats:?}"))
}

/// What both set-ups send, and what must come of it:
/// * at 0.779 s one datagram (tag 9): it leaves the relay at 1.981 s and would reach the base
///   at 2.011 s, after the hop went down at 2 s: lost in flight;
/// * at 1 s four datagrams (tags 1-4): they reach the relay at 2.201-2.204 s, while the hop
///   is down; the store takes three (3000 bytes), the fourth is dropped; the three leave
///   the relay at 5.001, 5.002, 5.003 s (hop back at 5 s, 1 ms each) and arrive 30 ms later.
async fn send_the_script(send: impl Fn(&[u8]) -> Fate) {
    tokio::time::sleep(ms(779)).await;
    assert!(matches!(
        send(&datagram(9)),
        Fate::Held { .. } | Fate::Forwarded
    ));
    tokio::time::sleep(ms(221)).await;
    for tag in 1..=4 {
        assert!(matches!(
            send(&datagram(tag)),
            Fate::Held { .. } | Fate::Forwarded
        ));
    }
}

fn check_arrivals(got: &[(Duration, u8)]) {
    assert_eq!(
        got,
        &[(ms(5031), 1), (ms(5032), 2), (ms(5033), 3)],
        "arrival = hop return + serialisation + remaining delay, in order"
    );
}

fn check_counters(stats: &[LinkStats]) {
    let hop0 = by_label(stats, "earth->relay#0");
    assert_eq!(hop0.traffic.sent_datagrams, 5);
    let hop1 = by_label(stats, "relay->base#0");
    assert_eq!(hop1.traffic.offered_datagrams, 5);
    assert_eq!(hop1.traffic.dropped_in_flight, 1);
    assert_eq!(hop1.traffic.dropped_store_full, 1);
    assert_eq!(hop1.traffic.sent_datagrams, 3);
    assert_eq!(hop1.traffic.held_datagrams, 0);
    let route = by_label(stats, "earth->base#0 via relay");
    assert_eq!(route.traffic.offered_datagrams, 5);
    assert_eq!(route.traffic.dropped_total(), 2);
}

#[tokio::test(start_paused = true)]
async fn in_process_route_stores_across_the_hop_outage() {
    let profile = profile();
    let clock = EmuClock::starting_now();
    let trunks = TrunkSet::new(profile.clone());
    let bind = || {
        EmulatedSocket::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(LinkTable::new(clock)),
        )
        .unwrap()
    };
    let (earth, base) = (bind(), bind());
    let route = trunks
        .trunk(TrunkId::Shared {
            from_site: 0,
            to_site: 1,
            terminal: 0,
        })
        .unwrap();
    earth.links().set_peer_trunk(base.bound_addr(), &route);
    let rx = receive(base.clone(), clock, 3);
    let to = base.bound_addr();
    send_the_script(|d| earth.send_traced(to, d).unwrap()).await;
    check_arrivals(&rx.await.unwrap());
    check_counters(&trunks.stats());
    let sender = earth.stats().traffic;
    assert_eq!(sender.offered_datagrams, 5);
    assert_eq!(sender.sent_datagrams, 3);
    assert_eq!(sender.dropped_total(), 2);
    assert_eq!(sender.held_datagrams, 0);
}

#[tokio::test(start_paused = true)]
async fn the_forwarder_is_the_relay() {
    let clock = EmuClock::starting_now();
    let fwd = Arc::new(Forwarder::bind("127.0.0.1:0".parse().unwrap(), profile(), clock).unwrap());
    let at: SocketAddr = fwd.local_addr();
    let stop = CancellationToken::new();
    let running = {
        let (fwd, stop) = (fwd.clone(), stop.clone());
        tokio::spawn(async move { fwd.run(stop).await })
    };
    let node = || {
        let table = Arc::new(LinkTable::new(clock).with_forwarder(at));
        EmulatedSocket::bind("127.0.0.1:0".parse().unwrap(), table).unwrap()
    };
    let (earth, base) = (node(), node());
    earth
        .links()
        .set_peer_forwarded(base.bound_addr(), EARTH_TO_BASE);
    let rx = receive(base.clone(), clock, 3);
    let to = base.bound_addr();
    send_the_script(|d| earth.send_traced(to, d).unwrap()).await;
    check_arrivals(&rx.await.unwrap());
    let stats = fwd.stats();
    assert_eq!(stats.rejected_total(), 0);
    check_counters(&stats.trunks);
    stop.cancel();
    running.await.unwrap().unwrap();
}
