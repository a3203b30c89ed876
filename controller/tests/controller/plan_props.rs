//! Property tests of the plan function: for any membership and job, every live member gets
//! exactly one rank, ranks are 0..n, a site's ranks are contiguous, and the data and
//! parameter shards cover their ranges exactly once.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;
use spacefabric_controller::plan::{PlanMember, assign_ranks, job_plan, shard_ranges};
use spacefabric_controller::topology::Topology;
use spacefabric_proto::v1::{
    Algorithm, AllReduceJob, JobSpec, ShardRange, Strategy, TrainJob, job_spec,
};

fn topology(sites: usize) -> Topology {
    Topology::new(
        "prop",
        "",
        0,
        (0..sites).map(|i| format!("site-{i}")).collect(),
        |_, _| Duration::ZERO,
    )
}

fn members(sites: usize, picks: &[(usize, u64)]) -> Vec<PlanMember> {
    picks
        .iter()
        .enumerate()
        .map(|(i, (site, ordinal))| PlanMember {
            node_id: format!("n{i}"),
            name: format!("node-{i}"),
            site: format!("site-{}", site % sites),
            addr: format!("127.0.0.1:{}", 1000 + i),
            ordinal: *ordinal,
        })
        .collect()
}

fn covers_exactly(shards: &[ShardRange], len: u64, world: usize) -> bool {
    if shards.len() != world {
        return false;
    }
    let mut next = 0;
    for (rank, s) in shards.iter().enumerate() {
        if s.rank as usize != rank || s.start != next || s.end < s.start {
            return false;
        }
        next = s.end;
    }
    next == len
}

proptest! {
    #[test]
    fn every_member_gets_exactly_one_rank(
        sites in 1usize..5,
        picks in proptest::collection::vec((0usize..8, 0u64..1000), 0..40),
    ) {
        let topo = topology(sites);
        let members = members(sites, &picks);
        let plan = assign_ranks(&members, &topo);
        prop_assert_eq!(plan.peers.len(), members.len());
        for (r, peer) in plan.peers.iter().enumerate() {
            prop_assert_eq!(peer.rank as usize, r);
        }
        for m in &members {
            prop_assert_eq!(plan.peers.iter().filter(|p| p.node_id == m.node_id).count(), 1);
        }
        // Site groups partition the ranks, each group contiguous and ascending.
        let mut all: Vec<u32> = plan.sites.iter().flat_map(|g| g.ranks.clone()).collect();
        prop_assert_eq!(all.len(), members.len());
        all.sort_unstable();
        all.dedup();
        prop_assert_eq!(all.len(), members.len());
        for group in &plan.sites {
            for w in group.ranks.windows(2) {
                prop_assert_eq!(w[1], w[0] + 1);
            }
            for r in &group.ranks {
                prop_assert_eq!(&plan.peers[*r as usize].site, &group.site);
            }
        }
        // The plan does not depend on the order members are listed in.
        let mut reversed = members.clone();
        reversed.reverse();
        prop_assert_eq!(assign_ranks(&reversed, &topo), plan);
    }

    #[test]
    fn shard_ranges_cover_the_data_exactly_once(len in 0u64..1_000_000, parts in 1usize..70) {
        let ranges = shard_ranges(len, parts);
        prop_assert_eq!(ranges.len(), parts);
        let mut next = 0;
        for r in &ranges {
            prop_assert_eq!(r.start, next);
            prop_assert!(r.end - r.start <= len / parts as u64 + 1);
            prop_assert!(r.end - r.start >= len / parts as u64);
            next = r.end;
        }
        prop_assert_eq!(next, len);
    }

    #[test]
    fn job_plans_shard_data_and_parameters_exactly_once(
        world in 1usize..20,
        max_bytes in 4u64..(1 << 24),
        samples in 1u64..100_000,
        width in 1u32..512,
        depth in 1u32..6,
    ) {
        let topo = topology(2);
        let picks: Vec<(usize, u64)> = (0..world).map(|i| (i % 2, i as u64)).collect();
        let plan = assign_ranks(&members(2, &picks), &topo);
        let all_reduce = JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
                min_bytes: 4, max_bytes, factor: 2, iterations: 1, warmup: 0,
                collective_algorithms: vec![Algorithm::Ring as i32, Algorithm::Auto as i32, Algorithm::Ring as i32], check: true,
                ..AllReduceJob::default()
            })),
        };
        let jp = job_plan(&plan, 7, &all_reduce);
        prop_assert!(covers_exactly(&jp.data_shards, max_bytes / 4, world));
        prop_assert_eq!(jp.collective_algorithms, vec![Algorithm::Ring as i32, Algorithm::Auto as i32]);
        let train = JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::Train(TrainJob {
                strategy: Strategy::Sync as i32, steps: 10, width, depth,
                dataset_samples: samples, ..TrainJob::default()
            })),
        };
        let jp = job_plan(&plan, 7, &train);
        prop_assert!(covers_exactly(&jp.data_shards, samples, world));
        prop_assert!(covers_exactly(&jp.param_shards, jp.param_len, world));
        prop_assert_eq!(jp.world_size as usize, world);
    }
}
