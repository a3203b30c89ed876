//! The executor over in-memory mailboxes: 4 (and 5, 8) ranks, every collective and
//! algorithm, exact results; payloads handed out in pieces (as the QUIC mesh does) combine
//! exactly; a corrupted element is caught by the check. Over mailboxes with
//! a light delay between two sites (tokio's paused clock): the barrier releases every rank at
//! one instant, and a sweep times a hierarchical all-reduce as one light delay.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use spacefabric_fabric::emu::EmuClock;
use spacefabric_fabric::transport::Payload;
use spacefabric_node::collective::sweep::{SweepSpec, run_sweep};
use spacefabric_node::collective::verify::{count_wrong, count_wrong_of, input, input_of};
use spacefabric_node::collective::{
    Algorithm, Collective, CollectiveConfig, Communicator, Corruption, CostModel, Element,
    Exchange, ExchangeError, LinkCost, MemoryExchange, MemoryFabric, ReduceOpName, all_gather,
    all_reduce, all_reduce_op, broadcast, reduce_scatter,
};
use tokio::time::Instant;

use crate::support::comms;

/// Runs `collective` on every rank at once; returns the total number of wrong elements.
async fn run_all(
    collective: Collective,
    algo: Algorithm,
    sites: &[usize],
    count: usize,
    lanes: usize,
    fabric: MemoryFabric,
) -> usize {
    let p = sites.len();
    let seed = 42 + count as u64;
    let comms = comms(&fabric, sites, lanes);
    let runs = comms.iter().enumerate().map(|(r, comm)| async move {
        let mut data = input(collective, seed, p, r, count);
        match collective {
            Collective::AllReduce => {
                all_reduce(comm, algo, &mut data).await.unwrap();
            }
            Collective::ReduceScatter => {
                reduce_scatter(comm, algo, &mut data).await.unwrap();
            }
            Collective::AllGather => all_gather(comm, algo, &mut data).await.unwrap(),
            Collective::Broadcast { root } => broadcast(comm, algo, root, &mut data).await.unwrap(),
        }
        count_wrong(collective, seed, p, r, &data)
    });
    let wrong = futures::future::join_all(runs).await.into_iter().sum();
    assert_eq!(fabric.undelivered(), 0, "every message was received");
    wrong
}

const ALGOS: [Algorithm; 5] = [
    Algorithm::Ring,
    Algorithm::HalvingDoubling,
    Algorithm::Tree,
    Algorithm::Hierarchical,
    Algorithm::Auto,
];

#[tokio::test]
async fn four_ranks_every_algorithm_exact() {
    let sites = [0, 0, 1, 1];
    for count in [1, 3, 1001, 40_001] {
        for algo in ALGOS {
            for lanes in [1, 4] {
                for collective in [
                    Collective::AllReduce,
                    Collective::ReduceScatter,
                    Collective::AllGather,
                    Collective::Broadcast { root: 2 },
                ] {
                    let wrong =
                        run_all(collective, algo, &sites, count, lanes, MemoryFabric::new(4)).await;
                    assert_eq!(
                        wrong, 0,
                        "{collective:?} {algo} count={count} lanes={lanes}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn odd_worlds_and_uneven_sites_exact() {
    for sites in [vec![0, 0, 0, 1, 1], vec![0, 1, 2, 0, 1, 2, 0, 0]] {
        for algo in ALGOS {
            let wrong = run_all(
                Collective::AllReduce,
                algo,
                &sites,
                100_003,
                3,
                MemoryFabric::new(sites.len()),
            )
            .await;
            assert_eq!(wrong, 0, "{algo} sites={sites:?}");
        }
    }
}

#[tokio::test]
async fn successive_calls_do_not_mix_messages() {
    let fabric = MemoryFabric::new(4);
    let comms = comms(&fabric, &[0, 0, 1, 1], 2);
    let runs = comms.iter().enumerate().map(|(r, comm)| async move {
        let mut wrong = 0;
        for (i, algo) in ALGOS.iter().cycle().take(10).enumerate() {
            let seed = i as u64;
            let mut data = input(Collective::AllReduce, seed, 4, r, 40_000);
            all_reduce(comm, *algo, &mut data).await.unwrap();
            wrong += count_wrong(Collective::AllReduce, seed, 4, r, &data);
        }
        wrong
    });
    let wrong: usize = futures::future::join_all(runs).await.into_iter().sum();
    assert_eq!(wrong, 0);
}

#[tokio::test]
async fn a_corrupted_element_is_counted_wrong() {
    // (algorithm, a pair of ranks it sends between)
    for (algo, from, to) in [
        (Algorithm::Ring, 0, 1),
        (Algorithm::HalvingDoubling, 0, 2),
        (Algorithm::Tree, 1, 0),
        (Algorithm::Hierarchical, 0, 2),
    ] {
        let fabric = MemoryFabric::new(4).corrupt(Corruption { from, to, nth: 0 });
        let wrong = run_all(Collective::AllReduce, algo, &[0, 0, 1, 1], 1000, 1, fabric).await;
        assert!(wrong > 0, "{algo}: the corruption went unnoticed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_missing_peer_leaves_recv_pending_not_wrong() {
    // Only ranks 0..3 of 4 run: rank 3 never sends, so the others must still be waiting.
    let fabric = MemoryFabric::new(4);
    let comms = comms(&fabric, &[0, 0, 0, 0], 1);
    let runs = comms.iter().take(3).map(|comm| async move {
        let mut data = vec![1.0f32; 64];
        all_reduce(comm, Algorithm::Ring, &mut data).await
    });
    let res = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(runs)).await;
    assert!(
        res.is_err(),
        "a collective finished without one of its ranks"
    );
}

/// One-way delay between the two sites of the delayed fabric (Earth–Moon).
const LIGHT: Duration = Duration::from_millis(1282);

/// Mailboxes where a message between ranks on different sites arrives [`LIGHT`] after it
/// was sent (on tokio's clock; within a site at once), with a shared scenario clock.
#[derive(Debug, Clone)]
struct Delayed {
    inner: MemoryExchange,
    sites: Vec<usize>,
    clock: EmuClock,
}

impl Exchange for Delayed {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn world_size(&self) -> usize {
        self.inner.world_size()
    }
    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let cross = self.sites.get(self.rank()) != self.sites.get(to);
        let inner = self.inner.clone();
        async move {
            if cross {
                tokio::spawn(async move {
                    tokio::time::sleep(LIGHT).await;
                    inner.send(to, tag, payload).await.unwrap();
                });
                Ok(())
            } else {
                inner.send(to, tag, payload).await
            }
        }
    }
    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        self.inner.recv(from, tag)
    }
    fn clock(&self) -> Option<EmuClock> {
        Some(self.clock)
    }
}

fn delayed_comms(sites: &[usize]) -> Vec<Communicator<Delayed>> {
    let fabric = MemoryFabric::new(sites.len());
    let clock = EmuClock::starting_now();
    let links = vec![
        LinkCost {
            delay_s: 0.0,
            rate_bps: None,
        },
        LinkCost {
            delay_s: LIGHT.as_secs_f64(),
            rate_bps: None,
        },
        LinkCost {
            delay_s: LIGHT.as_secs_f64(),
            rate_bps: None,
        },
        LinkCost {
            delay_s: 0.0,
            rate_bps: None,
        },
    ];
    fabric
        .endpoints()
        .into_iter()
        .map(|inner| {
            Communicator::new(Delayed {
                inner,
                sites: sites.to_vec(),
                clock,
            })
            .with_cost_model(CostModel::sites(sites.to_vec(), links.clone()))
            .unwrap()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_barrier_releases_every_rank_at_one_instant() {
    // The Moon ranks enter 0.5 s after the Earth ranks. Released on the last arrival, the
    // Earth ranks would go at 0.5 s + L and the Moon ranks at L: the skew survives.
    let sites = [0, 0, 1, 1];
    let comms = delayed_comms(&sites);
    let t0 = Instant::now();
    let runs = comms.iter().map(|comm| async move {
        if sites[comm.rank()] == 1 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let start = comm.barrier().await.unwrap();
        (start, Instant::now())
    });
    let out = futures::future::join_all(runs).await;
    let (first, _) = out[0];
    for (rank, (start, released)) in out.iter().enumerate() {
        assert_eq!(*start, first, "rank {rank} starts at another instant");
        assert_eq!(
            *released, first,
            "rank {rank} was released at another instant"
        );
    }
    // The last rank entered at 0.5 s; its message needs L to reach the other site.
    assert!(first - t0 >= Duration::from_millis(500) + LIGHT);
    assert!(first - t0 <= Duration::from_millis(520) + LIGHT);
}

#[tokio::test(start_paused = true)]
async fn a_sweep_times_hierarchical_as_one_light_delay_after_other_algorithms() {
    // Tree and ring finish their ranks up to a light delay apart; the hierarchical
    // all-reduce that follows must still be timed from a common start: one light delay
    // (the cross-site exchange), not two.
    let sites = [0, 0, 0, 0, 1, 1, 1, 1];
    let comms = delayed_comms(&sites);
    let spec = SweepSpec {
        sizes: vec![1024, 4096],
        algorithms: ["tree", "ring", "hier"]
            .map(|a| a.parse().unwrap())
            .to_vec(),
        iterations: 2,
        warmup: 1,
        check: true,
        seed: 3,
        datatypes: Vec::new(),
        ops: Vec::new(),
    };
    let runs = comms.iter().map(|comm| run_sweep(comm, &spec, |_| {}));
    let per_rank: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let npoints = per_rank[0].len();
    assert_eq!(npoints, 6);
    for i in 0..npoints {
        let point = &per_rank[0][i];
        assert_eq!(
            per_rank
                .iter()
                .map(|pts| pts[i].wrong.unwrap() + pts[i].in_place_wrong.unwrap())
                .sum::<usize>(),
            0
        );
        // nccl-tests' two runs: out-of-place, then in-place, with as many timed iterations.
        assert_eq!(point.in_place_times_us.len(), spec.iterations);
        if point.algorithm.short_name() != "hier" {
            continue;
        }
        for it in 0..2 * spec.iterations {
            let slowest_us = per_rank
                .iter()
                .map(|pts| {
                    let p = &pts[i];
                    if it < spec.iterations {
                        p.times_us[it]
                    } else {
                        p.in_place_times_us[it - spec.iterations]
                    }
                })
                .fold(0.0, f64::max);
            let light_us = LIGHT.as_secs_f64() * 1e6;
            assert!(
                slowest_us >= light_us && slowest_us <= 1.05 * light_us,
                "hier {} B iteration {it}: {slowest_us} us, one light delay is {light_us} us",
                point.bytes
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_entry_time_from_the_future_does_not_hold_the_barrier() {
    // Rank 1 is played by hand: it says it entered at the end of time.
    let sites = [0, 1];
    let mut comms = delayed_comms(&sites);
    let fake = comms.pop().unwrap();
    let comm = comms.pop().unwrap();
    let t0 = Instant::now();
    let rogue = async {
        let ex = fake.exchange();
        let to_0 = spacefabric_node::collective::executor::tag(0, 0, 2);
        ex.send(0, to_0, Bytes::copy_from_slice(&u64::MAX.to_le_bytes()))
            .await
            .unwrap();
        ex.recv(0, spacefabric_node::collective::executor::tag(0, 0, 1))
            .await
            .unwrap();
    };
    let (start, ()) = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join(comm.barrier(), rogue),
    )
    .await
    .expect("the barrier waited for a time that will never come");
    // The message takes one light delay; then at most one barrier wait more.
    assert!(start.unwrap() - t0 <= 2 * LIGHT + Duration::from_millis(20));
}

/// Mailboxes that hand every payload out cut into pieces of `piece` bytes (odd, so elements
/// of every size straddle pieces), as the QUIC mesh hands out what quinn read; counts the
/// payloads the executor sent on in more than one piece (a received copy passed on).
#[derive(Debug, Clone)]
struct Pieced {
    inner: MemoryExchange,
    piece: usize,
    passed_on: Arc<AtomicUsize>,
}

impl Exchange for Pieced {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn world_size(&self) -> usize {
        self.inner.world_size()
    }
    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        self.inner.send(to, tag, payload)
    }
    fn send_payload(
        &self,
        to: usize,
        tag: u64,
        payload: Payload,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        if payload.pieces().len() > 1 {
            self.passed_on.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.send(to, tag, payload.into_bytes())
    }
    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        self.inner.recv(from, tag)
    }
    fn recv_payload(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Payload, ExchangeError>> + Send {
        let piece = self.piece;
        let received = self.inner.recv(from, tag);
        async move {
            let whole = received.await?;
            let mut payload = Payload::new();
            let mut at = 0;
            while at < whole.len() {
                let end = (at + piece).min(whole.len());
                payload.push(whole.slice(at..end));
                at = end;
            }
            Ok(payload)
        }
    }
}

async fn all_reduce_in_pieces<T: Element>(
    algo: Algorithm,
    op: ReduceOpName,
    world: usize,
    count: usize,
    piece: usize,
) -> (usize, usize) {
    let fabric = MemoryFabric::new(world);
    let passed_on = Arc::new(AtomicUsize::new(0));
    let comms: Vec<_> = fabric
        .endpoints()
        .into_iter()
        .map(|inner| {
            Communicator::new(Pieced {
                inner,
                piece,
                passed_on: passed_on.clone(),
            })
            .with_config(CollectiveConfig { lanes: 2 })
        })
        .collect();
    let runs = comms.iter().enumerate().map(|(r, comm)| async move {
        let mut data: Vec<T> = input_of(Collective::AllReduce, op, 9, world, r, count);
        all_reduce_op(comm, algo, op, &mut data).await.unwrap();
        count_wrong_of(Collective::AllReduce, op, 9, world, r, &data)
    });
    let wrong = futures::future::join_all(runs).await.into_iter().sum();
    assert_eq!(fabric.undelivered(), 0, "every message was received");
    (wrong, passed_on.load(Ordering::Relaxed))
}

#[tokio::test]
async fn payloads_received_in_pieces_combine_exactly_and_copies_are_passed_on() {
    for algo in [
        Algorithm::Ring,
        Algorithm::HalvingDoubling,
        Algorithm::Tree,
        Algorithm::Hierarchical,
    ] {
        for piece in [1, 7, 1001] {
            let (wrong, passed_on) =
                all_reduce_in_pieces::<f32>(algo, ReduceOpName::Sum, 5, 10_007, piece).await;
            assert_eq!(wrong, 0, "{algo} f32 pieces of {piece} bytes");
            if algo == Algorithm::Ring {
                // Ring's all-gather passes every received chunk on but the last.
                assert!(passed_on > 0, "ring passed no received copy on");
            }
            let (wrong, _) =
                all_reduce_in_pieces::<i64>(algo, ReduceOpName::Prod, 4, 3_001, piece).await;
            assert_eq!(wrong, 0, "{algo} i64 pieces of {piece} bytes");
            let (wrong, _) =
                all_reduce_in_pieces::<half::bf16>(algo, ReduceOpName::Max, 3, 999, piece).await;
            assert_eq!(wrong, 0, "{algo} bf16 pieces of {piece} bytes");
        }
    }
}
