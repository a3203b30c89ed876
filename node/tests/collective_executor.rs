//! The executor over in-memory mailboxes: 4 (and 5, 8) ranks, every collective and
//! algorithm, exact results; a corrupted element is caught by the check.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use spacefabric_node::collective::verify::{count_wrong, input};
use spacefabric_node::collective::{
    Algorithm, Collective, CollectiveConfig, Communicator, Corruption, CostModel, LinkCost,
    MemoryExchange, MemoryFabric, all_gather, all_reduce, broadcast, reduce_scatter,
};

fn comms(
    fabric: &MemoryFabric,
    sites: &[usize],
    lanes: usize,
) -> Vec<Communicator<MemoryExchange>> {
    let nsites = sites.iter().max().map_or(1, |m| m + 1);
    let links: Vec<LinkCost> = (0..nsites * nsites)
        .map(|i| LinkCost {
            delay_s: if i % (nsites + 1) == 0 { 0.0001 } else { 1.28 },
            rate_bps: Some(1e9),
        })
        .collect();
    fabric
        .endpoints()
        .into_iter()
        .map(|ex| {
            Communicator::new(ex)
                .with_cost_model(CostModel::sites(sites.to_vec(), links.clone()))
                .unwrap()
                .with_config(CollectiveConfig { lanes })
        })
        .collect()
}

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
