//! Measured against the cost model on a shared trunk, on tokio's paused clock (exact
//! emulated time: the host cannot move a number): 4 + 4 QUIC nodes, one shared 20 Mbit/s
//! trunk per direction 640 ms long (its BDP, 3.2 MB, above the 2 MiB window floor, as on
//! earth-moon) with a queue of 1 s, 4 lanes, every algorithm within [`MAX_OVER_MODEL`] of its
//! model, never below the two-site cut bound, nothing dropped, nothing wrong.
//!
//! The model's trunk serialises messages in issue order (FIFO). Before the mesh handed each
//! connection's transfers over first issued first (`transport::pacing::SendOrder`), the lanes
//! of a call shared a connection's rate instead, all finished together at the end of a batch,
//! and tree would take ~1.46× its model here (arithmetic, not measured).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use spacefabric_fabric::emu::TrunkSet;
use spacefabric_node::collective::verify::{count_wrong, input};
use spacefabric_node::collective::{
    Algorithm, Collective, CollectiveConfig, Communicator, CostModel, all_reduce,
};
use spacefabric_testkit::fabric::FabricCluster;
use spacefabric_testkit::profiles::{Rate, two_sites};

/// 512 Ki f32 = 2 MiB per rank: the bandwidth term (tree puts 8 MiB on each trunk, 3.4 s)
/// outweighs the 640 ms delay, as on earth-moon at 16–64 MiB.
const COUNT: usize = 512 * 1024;

/// Tolerance over the model. The goal on earth-moon is 1.10×; here, with 10× less rate than
/// earth-moon and the same 256 KiB pacing chunk, a chunk is 105 ms of the trunk (10 ms on
/// earth-moon), and a chunk of pacing credit per connection queues ACKs behind data for a
/// tenth of a round trip: tree measured 1.13×, halving-doubling 1.18× with the fix. Without
/// it (lanes sharing each connection's rate) tree is ~1.46× by the same arithmetic.
const MAX_OVER_MODEL: f64 = 1.20;

async fn measure(algo: Algorithm) -> (f64, f64, f64, u64, usize) {
    let profile = two_sites(
        "trunk-timing",
        "earth",
        "moon",
        640.0,
        Some(Rate::Mbps(20.0)),
    )
    .inside(0.05, Some(Rate::Mbps(10_000.0)))
    // 1 s of the trunk, ~10 pacing chunks, as earth-moon's 100 ms (2.5 MB) are: the
    // default 100 ms here (250 kB) is one chunk, and a chunk of pacing credit on each of
    // 4 connections at quinn's 1.25x pace overflows it.
    .last_link_extra("queue_bytes = 2500000")
    .seeded(3)
    .profile();
    let sites = [0usize, 0, 0, 0, 1, 1, 1, 1];
    let world = sites.len();
    let cluster = FabricCluster::on_site_indices(profile.clone(), &sites);
    let trunks = Arc::new(TrunkSet::new(profile.clone()));
    let meshes = cluster
        .connect_with(|c| c.trunks = Some(trunks.clone()))
        .await;
    let cost = CostModel::from_profile(&profile, sites.to_vec(), Duration::ZERO).unwrap();
    let config = CollectiveConfig { lanes: 4 };
    let model = cost
        .predict_collective(
            Collective::AllReduce,
            algo.concrete().unwrap(),
            COUNT,
            4,
            config.lanes,
        )
        .unwrap()
        .total_s;
    let bound = cost.all_reduce_bound((COUNT * 4) as f64).total_s;
    let comms: Vec<Arc<Communicator<_>>> = meshes
        .into_iter()
        .map(|mesh| {
            Arc::new(
                Communicator::new(mesh)
                    .with_cost_model(cost.clone())
                    .unwrap()
                    .with_config(config),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (rank, comm) in comms.iter().enumerate() {
        let comm = Arc::clone(comm);
        tasks.push(tokio::spawn(async move {
            let mut data = input(Collective::AllReduce, 5, world, rank, COUNT);
            let start = comm.barrier().await.unwrap();
            all_reduce(&comm, algo, &mut data).await.unwrap();
            let took = comm.elapsed_since(start).as_secs_f64();
            (
                took,
                count_wrong(Collective::AllReduce, 5, world, rank, &data),
            )
        }));
    }
    let mut took: f64 = 0.0;
    let mut wrong = 0;
    for t in tasks {
        let (s, w) = t.await.unwrap();
        took = took.max(s);
        wrong += w;
    }
    let drops = comms
        .iter()
        .map(|c| {
            c.exchange()
                .emulated_socket()
                .unwrap()
                .stats()
                .traffic
                .dropped_total()
        })
        .sum();
    (took, model, bound, drops, wrong)
}

#[tokio::test(start_paused = true)]
async fn every_algorithm_on_a_shared_trunk_keeps_close_to_its_model() {
    let mut rows = Vec::new();
    for algo in [
        Algorithm::Tree,
        Algorithm::Ring,
        Algorithm::HalvingDoubling,
        Algorithm::Hierarchical,
    ] {
        let (took, model, bound, drops, wrong) = measure(algo).await;
        rows.push((algo, took, model, bound, drops, wrong));
    }
    let table: Vec<String> = rows
        .iter()
        .map(|(algo, took, model, bound, drops, wrong)| {
            format!(
                "{algo}: {took:.3} s, model {model:.3} s ({:.3}x), bound {bound:.3} s, {drops} drops, {wrong} wrong",
                took / model
            )
        })
        .collect();
    let table = table.join("\n");
    eprintln!("{table}");
    for (_, took, model, bound, drops, wrong) in rows {
        assert_eq!(wrong, 0, "{table}");
        assert_eq!(drops, 0, "{table}");
        assert!(took >= 0.98 * bound, "below the cut bound:\n{table}");
        assert!(
            took <= MAX_OVER_MODEL * model,
            "more than {MAX_OVER_MODEL}x the model:\n{table}"
        );
    }
}
