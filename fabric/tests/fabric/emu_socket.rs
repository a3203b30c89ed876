#![allow(clippy::unwrap_used)]
//! The emulated socket without quinn: drops counted by cause, GSO splitting, stride, the MTU,
//! the hold limit and FIFO order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netem_profiles::{DropCause, LinkModel, LinkSpec, LossModel, OutageSchedule, Window};
use quinn::AsyncUdpSocket;
use quinn::udp::{RecvMeta, Transmit};
use spacefabric_fabric::emu::{
    EmuClock, EmuDropCause, EmulatedSocket, Fate, LinkTable, MAX_UDP_PAYLOAD,
};

fn bind(table: Arc<LinkTable>) -> Arc<EmulatedSocket> {
    EmulatedSocket::bind("127.0.0.1:0".parse().unwrap(), table).unwrap()
}

fn addr(s: &EmulatedSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

/// Receives `n` datagrams (paused clock: auto-advances to the scheduler's deadlines).
async fn recv_n(s: &EmulatedSocket, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while out.len() < n {
        let (len, _) = tokio::time::timeout(Duration::from_secs(60), s.recv_from(&mut buf))
            .await
            .expect("datagram did not arrive")
            .unwrap();
        out.push(buf[..len].to_vec());
    }
    out
}

fn tx(dest: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
    Transmit {
        destination: dest,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    }
}

#[tokio::test(start_paused = true)]
async fn random_loss_is_counted_by_cause_and_the_rest_arrives() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    let mut spec = LinkSpec::ideal(Duration::from_millis(10));
    spec.loss = LossModel::Bernoulli { p: 0.25 };
    table.set_peer(addr(&b), LinkModel::new(spec, 42));
    let mut lost = 0;
    for i in 0..400u32 {
        match a.send_traced(addr(&b), &i.to_be_bytes()).unwrap() {
            Fate::Dropped(EmuDropCause::Link(DropCause::Loss)) => lost += 1,
            Fate::Held { .. } => {}
            f => panic!("unexpected fate {f:?}"),
        }
    }
    assert!((60..140).contains(&lost), "lost {lost} of 400 at p = 0.25");
    let got = recv_n(&b, 400 - lost).await;
    assert_eq!(got.len(), 400 - lost);
    let s = a.stats().traffic;
    assert_eq!(s.dropped_loss, lost as u64);
    assert_eq!(s.dropped_total(), lost as u64);
    assert_eq!(s.sent_datagrams, 400 - lost as u64);
    assert_eq!(table.link_stats(addr(&b)).unwrap().traffic, s);
}

#[tokio::test(start_paused = true)]
async fn outage_drops_are_counted_and_traffic_resumes_at_the_window_end() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    let mut spec = LinkSpec::ideal(Duration::from_millis(5));
    spec.outages = OutageSchedule {
        periodic: vec![],
        windows: vec![Window {
            start: Duration::from_millis(100),
            end: Duration::from_millis(300),
        }],
    };
    table.set_peer(addr(&b), LinkModel::new(spec, 1));
    let mut fates = Vec::new();
    for _ in 0..40 {
        fates.push(a.send_traced(addr(&b), b"probe").unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outage = fates
        .iter()
        .filter(|f| **f == Fate::Dropped(EmuDropCause::Link(DropCause::Outage)))
        .count();
    // Sends at 0, 10, ... 390 ms (tokio timers may round up by 1 ms): 100..300 is 20 slots.
    assert!((19..=21).contains(&outage), "{outage} outage drops");
    assert_eq!(a.stats().traffic.dropped_outage, outage as u64);
    recv_n(&b, 40 - outage).await;
    assert_eq!(b.stats().received_datagrams, 40 - outage as u64);
}

#[tokio::test(start_paused = true)]
async fn gso_transmits_are_split_and_received_with_stride_equal_to_len() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    table.set_peer(
        addr(&b),
        LinkModel::new(LinkSpec::ideal(Duration::from_millis(3)), 1),
    );
    let contents: Vec<u8> = (0..250u8).collect();
    a.try_send(&tx(addr(&b), &contents, Some(100))).unwrap();
    assert_eq!(a.stats().traffic.offered_datagrams, 3);
    // Read through quinn's receive interface.
    let mut storage = vec![[0u8; 1500]; 4];
    let mut lens = Vec::new();
    while lens.iter().sum::<usize>() < 250 {
        let mut bufs: Vec<std::io::IoSliceMut<'_>> = storage
            .iter_mut()
            .map(|b| std::io::IoSliceMut::new(b))
            .collect();
        let mut meta = [RecvMeta::default(); 4];
        let n = std::future::poll_fn(|cx| b.poll_recv(cx, &mut bufs, &mut meta))
            .await
            .unwrap();
        for m in &meta[..n] {
            assert_eq!(m.stride, m.len);
            assert_eq!(m.addr, addr(&a));
            lens.push(m.len);
        }
    }
    assert_eq!(lens, vec![100, 100, 50]);
}

#[tokio::test(start_paused = true)]
async fn datagrams_above_the_path_mtu_are_dropped_as_oversize() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    table.set_peer(addr(&b), LinkModel::new(LinkSpec::ideal(Duration::ZERO), 1));
    assert!(!a.may_fragment());
    let big = vec![0u8; MAX_UDP_PAYLOAD + 1];
    assert_eq!(
        a.send_traced(addr(&b), &big).unwrap(),
        Fate::Dropped(EmuDropCause::Oversize)
    );
    // Exactly the limit passes, and a zero-delay link sends inline.
    assert_eq!(
        a.send_traced(addr(&b), &big[..MAX_UDP_PAYLOAD]).unwrap(),
        Fate::SentNow
    );
    assert_eq!(recv_n(&b, 1).await[0].len(), MAX_UDP_PAYLOAD);
    assert_eq!(a.stats().traffic.dropped_oversize, 1);
}

#[tokio::test(start_paused = true)]
async fn a_loopback_path_carries_large_datagrams_at_their_full_serialisation_time() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock).with_max_udp_payload(16 * 1024));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    // 8 Mbit/s: one byte per microsecond.
    let mut spec = LinkSpec::ideal(Duration::ZERO);
    spec.rate_bps = Some(8_000_000);
    table.set_peer(addr(&b), LinkModel::new(spec, 1));
    let big = vec![7u8; 16 * 1024 + 1];
    assert_eq!(
        a.send_traced(addr(&b), &big).unwrap(),
        Fate::Dropped(EmuDropCause::Oversize)
    );
    let expected =
        Duration::from_micros((16 * 1024 + netem_profiles::UDP_IP_OVERHEAD_BYTES) as u64);
    match a.send_traced(addr(&b), &big[..16 * 1024]).unwrap() {
        Fate::Held { at, .. } => assert_eq!(at, clock.now() + expected),
        other => panic!("expected the datagram to be held, got {other:?}"),
    }
    let mut buf = vec![0u8; 64 * 1024];
    let (len, _) = tokio::time::timeout(Duration::from_secs(60), b.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(len, 16 * 1024);
}

#[tokio::test(start_paused = true)]
async fn the_delay_line_is_bounded_by_the_hold_limit() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock).with_max_held_bytes_per_link(3000));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    table.set_peer(
        addr(&b),
        LinkModel::new(LinkSpec::ideal(Duration::from_millis(50)), 1),
    );
    let fates: Vec<Fate> = (0..5)
        .map(|_| a.send_traced(addr(&b), &[7u8; 1000]).unwrap())
        .collect();
    assert!(matches!(fates[2], Fate::Held { .. }));
    assert_eq!(fates[3], Fate::Dropped(EmuDropCause::HoldLimit));
    let s = a.stats().traffic;
    assert_eq!(
        (s.held_datagrams, s.held_bytes, s.dropped_hold_limit),
        (3, 3000, 2)
    );
    recv_n(&b, 3).await;
    // Delivered: the delay line is empty again and accepts more.
    tokio::task::yield_now().await;
    assert_eq!(a.stats().traffic.held_bytes, 0);
    assert!(matches!(
        a.send_traced(addr(&b), &[7u8; 1000]).unwrap(),
        Fate::Held { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_link_keeps_fifo_order_and_its_schedule() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    let mut spec = LinkSpec::ideal(Duration::from_millis(20));
    spec.rate_bps = Some(8_000_000); // 1 byte per µs
    spec.queue_limit_bytes = 1 << 20;
    table.set_peer(addr(&b), LinkModel::new(spec, 1));
    let mut last_at = Duration::ZERO;
    for i in 0..200u32 {
        let mut d = vec![0u8; 972]; // 1000 bytes on the wire: 1 ms each
        d[..4].copy_from_slice(&i.to_be_bytes());
        let Fate::Held { at, .. } = a.send_traced(addr(&b), &d).unwrap() else {
            panic!("not held")
        };
        last_at = at;
    }
    assert_eq!(last_at, Duration::from_millis(200 + 20));
    let got = recv_n(&b, 200).await;
    let order: Vec<u32> = got
        .iter()
        .map(|d| u32::from_be_bytes(d[..4].try_into().unwrap()))
        .collect();
    assert_eq!(order, (0..200).collect::<Vec<_>>());
    assert!(clock.now() >= last_at);
}

#[tokio::test(start_paused = true)]
async fn unmapped_destinations_are_sent_unemulated_and_counted() {
    let clock = EmuClock::starting_now();
    let (a, b) = (
        bind(Arc::new(LinkTable::new(clock))),
        bind(Arc::new(LinkTable::new(clock))),
    );
    assert_eq!(a.send_traced(addr(&b), b"x").unwrap(), Fate::SentNow);
    recv_n(&b, 1).await;
    assert_eq!(a.stats().unmapped_datagrams, 1);
}

#[tokio::test(start_paused = true)]
async fn a_duplicating_link_delivers_every_datagram_twice() {
    let clock = EmuClock::starting_now();
    let table = Arc::new(LinkTable::new(clock));
    let (a, b) = (bind(table.clone()), bind(Arc::new(LinkTable::new(clock))));
    let mut spec = LinkSpec::ideal(Duration::from_millis(7));
    spec.duplicate = 1.0;
    table.set_peer(addr(&b), LinkModel::new(spec, 1));
    for i in 0..10u8 {
        let fate = a.send_traced(addr(&b), &[i]).unwrap();
        assert!(matches!(
            fate,
            Fate::Held {
                duplicate_at: Some(_),
                ..
            }
        ));
    }
    let mut got: Vec<u8> = recv_n(&b, 20).await.into_iter().map(|d| d[0]).collect();
    got.sort_unstable();
    let want: Vec<u8> = (0..10u8).flat_map(|i| [i, i]).collect();
    assert_eq!(got, want);
    let s = a.stats().traffic;
    assert_eq!(
        (s.offered_datagrams, s.sent_datagrams, s.duplicated),
        (10, 20, 10)
    );
}

#[tokio::test(start_paused = true)]
async fn the_tokio_timer_driver_ends_with_its_socket() {
    let clock = EmuClock::starting_now();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let a = bind(Arc::new(LinkTable::new(clock)));
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    drop(a);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), before);
}
