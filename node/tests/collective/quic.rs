//! Collectives over the real QUIC mesh on loopback (emulated sockets, a small two-site
//! profile with millisecond delays): 4 nodes, every algorithm, exact results.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use spacefabric_fabric::transport::Mesh;
use spacefabric_node::collective::verify::{count_wrong, input};
use spacefabric_node::collective::{
    Algorithm, Collective, CollectiveConfig, Communicator, CostModel, all_gather, all_reduce,
    broadcast, reduce_scatter,
};
use spacefabric_testkit::fabric::FabricCluster;
use spacefabric_testkit::profiles::{Rate, two_sites};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_quic_nodes_every_algorithm_exact() {
    // Two sites 3 ms apart.
    let profile = two_sites("two-sites", "a", "b", 3.0, Some(Rate::Mbps(500.0)))
        .inside(0.1, None)
        .seeded(7)
        .profile();
    let sites = [0usize, 0, 1, 1];
    let cluster = FabricCluster::on_site_indices(profile.clone(), &sites);
    let connects: Vec<_> = (0..4)
        .map(|rank| tokio::spawn(Mesh::connect(cluster.config(rank))))
        .collect();
    let mut comms = Vec::new();
    for c in connects {
        let mesh = c.await.unwrap().unwrap();
        let cost =
            CostModel::from_profile(&profile, sites.to_vec(), std::time::Duration::ZERO).unwrap();
        comms.push(Arc::new(
            Communicator::new(mesh)
                .with_cost_model(cost)
                .unwrap()
                .with_config(CollectiveConfig { lanes: 2 }),
        ));
    }
    let count = 50_001;
    let mut tasks = Vec::new();
    for (rank, comm) in comms.iter().enumerate() {
        let comm = Arc::clone(comm);
        tasks.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            for (i, algo) in [
                Algorithm::Ring,
                Algorithm::HalvingDoubling,
                Algorithm::Tree,
                Algorithm::Hierarchical,
                Algorithm::Auto,
            ]
            .into_iter()
            .enumerate()
            {
                let seed = i as u64;
                let mut data = input(Collective::AllReduce, seed, 4, rank, count);
                all_reduce(&comm, algo, &mut data).await.unwrap();
                wrong.push((
                    algo,
                    count_wrong(Collective::AllReduce, seed, 4, rank, &data),
                ));
            }
            let seed = 99;
            let mut data = input(Collective::ReduceScatter, seed, 4, rank, count);
            reduce_scatter(&comm, Algorithm::Ring, &mut data)
                .await
                .unwrap();
            wrong.push((
                Algorithm::Ring,
                count_wrong(Collective::ReduceScatter, seed, 4, rank, &data),
            ));
            let mut data = input(Collective::AllGather, seed, 4, rank, count);
            all_gather(&comm, Algorithm::HalvingDoubling, &mut data)
                .await
                .unwrap();
            wrong.push((
                Algorithm::HalvingDoubling,
                count_wrong(Collective::AllGather, seed, 4, rank, &data),
            ));
            let bc = Collective::Broadcast { root: 3 };
            let mut data = input(bc, seed, 4, rank, count);
            broadcast(&comm, Algorithm::Hierarchical, 3, &mut data)
                .await
                .unwrap();
            wrong.push((
                Algorithm::Hierarchical,
                count_wrong(bc, seed, 4, rank, &data),
            ));
            wrong
        }));
    }
    for (rank, t) in tasks.into_iter().enumerate() {
        for (algo, wrong) in t.await.unwrap() {
            assert_eq!(wrong, 0, "rank {rank}, {algo}");
        }
    }
}
