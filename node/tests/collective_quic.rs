//! Collectives over the real QUIC mesh on loopback (emulated sockets, a small two-site
//! profile with millisecond delays): 4 nodes, every algorithm, exact results.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use netem_profiles::Profile;
use spacefabric_fabric::emu::EmuClock;
use spacefabric_fabric::transport::{DevCa, Mesh, MeshConfig, PeerInfo};
use spacefabric_node::collective::verify::{count_wrong, input};
use spacefabric_node::collective::{
    Algorithm, Collective, CollectiveConfig, Communicator, CostModel, all_gather, all_reduce,
    broadcast, reduce_scatter,
};

const TWO_SITES: &str = r#"
name = "two-sites"
description = "two sites 3 ms apart"
seed = 7

[sites.a]
description = "site a"

[sites.b]
description = "site b"

[[links]]
from = "a"
to = "a"
delay_ms = 0.1

[[links]]
from = "b"
to = "b"
delay_ms = 0.1

[[links]]
from = "a"
to = "b"
delay_ms = 3
rate_mbps = 500
"#;

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    sockets.iter().map(|s| s.local_addr().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_quic_nodes_every_algorithm_exact() {
    let profile = Arc::new(Profile::parse(TWO_SITES, "test").unwrap());
    let sites = [0usize, 0, 1, 1];
    let ca = DevCa::generate().unwrap();
    let addrs = free_addrs(4);
    let peers: Vec<PeerInfo> = (0..4)
        .map(|rank| PeerInfo {
            rank,
            name: format!("node-{rank}"),
            addr: addrs[rank],
            site: profile.sites[sites[rank]].name.clone(),
        })
        .collect();
    let clock = EmuClock::new(tokio::time::Instant::now());
    let connects: Vec<_> = peers
        .iter()
        .map(|p| {
            let cfg = MeshConfig::new(
                p.rank,
                peers.clone(),
                profile.clone(),
                ca.issue(&p.name).unwrap(),
                clock,
            );
            tokio::spawn(Mesh::connect(cfg))
        })
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
