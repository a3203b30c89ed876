//! Every schedule, simulated in memory: exact results for p = 1 … 17 and counts that do not
//! divide by p, on one site and on several.
#![allow(clippy::unwrap_used)]

use spacefabric_node::collective::verify::{count_wrong, input};
use spacefabric_node::collective::{Collective, Concrete, Schedule, simulate};

const COUNTS: [usize; 6] = [0, 1, 7, 31, 100, 257];

fn check(collective: Collective, algo: Concrete, p: usize, count: usize, sites: Option<&[usize]>) {
    let sched = Schedule::build(collective, algo, p, count, sites)
        .unwrap_or_else(|e| panic!("{collective:?} {algo} p={p} count={count}: {e}"));
    let seed = (p * 1000 + count) as u64;
    let inputs: Vec<Vec<f32>> = (0..p)
        .map(|r| input(collective, seed, p, r, count))
        .collect();
    let out = simulate(&sched, &inputs).unwrap_or_else(|e| {
        panic!("{collective:?} {algo} p={p} count={count} sites={sites:?}: {e}")
    });
    for (r, v) in out.iter().enumerate() {
        let wrong = count_wrong(collective, seed, p, r, v);
        assert_eq!(
            wrong, 0,
            "{collective:?} {algo} (built {}) p={p} count={count} sites={sites:?}: rank {r} has {wrong} wrong elements",
            sched.algorithm
        );
    }
}

fn site_maps(p: usize) -> Vec<Vec<usize>> {
    vec![
        vec![0; p],
        // two halves, Earth then Moon
        (0..p).map(|r| usize::from(r >= p / 2)).collect(),
        // three sites, interleaved and uneven
        (0..p).map(|r| r % 3).collect(),
        // one rank alone on a site
        (0..p).map(|r| usize::from(r == p - 1)).collect(),
    ]
}

/// [`check`] of the hierarchical schedule on every site map of `p` ranks.
fn check_hierarchical_on_every_site_map(collective: Collective, p: usize, count: usize) {
    for sites in site_maps(p) {
        check(collective, Concrete::Hierarchical, p, count, Some(&sites));
    }
}

#[test]
fn all_reduce_every_algorithm_is_exact_for_p_1_to_17() {
    for p in 1..=17 {
        for count in COUNTS {
            for algo in Concrete::ALL {
                check(Collective::AllReduce, algo, p, count, None);
            }
            check_hierarchical_on_every_site_map(Collective::AllReduce, p, count);
        }
    }
}

#[test]
fn reduce_scatter_and_all_gather_are_exact() {
    for p in 1..=17 {
        for count in COUNTS {
            for algo in Concrete::ALL {
                check(Collective::ReduceScatter, algo, p, count, None);
                check(Collective::AllGather, algo, p, count, None);
            }
            check_hierarchical_on_every_site_map(Collective::AllGather, p, count);
        }
    }
}

#[test]
fn broadcast_from_every_root_is_exact() {
    for p in 1..=17 {
        for root in [0, p / 2, p - 1] {
            for count in [0, 1, 33] {
                for algo in Concrete::ALL {
                    check(Collective::Broadcast { root }, algo, p, count, None);
                    for sites in site_maps(p) {
                        check(Collective::Broadcast { root }, algo, p, count, Some(&sites));
                    }
                }
            }
        }
    }
}

#[test]
fn halving_doubling_on_a_power_of_two_uses_2_lg_p_rounds() {
    let s = Schedule::build(
        Collective::AllReduce,
        Concrete::HalvingDoubling,
        8,
        64,
        None,
    )
    .unwrap();
    assert!(
        s.steps.iter().all(|st| st.len() == 6),
        "{:?}",
        s.steps.iter().map(Vec::len).collect::<Vec<_>>()
    );
    // Non-power of two: the folded ranks take 2 steps (fold out, copy back), the others 2 lg p' + (0 or 2).
    let s = Schedule::build(
        Collective::AllReduce,
        Concrete::HalvingDoubling,
        6,
        64,
        None,
    )
    .unwrap();
    assert_eq!(s.steps[0].len(), 2);
    assert_eq!(s.steps[1].len(), 6);
    assert_eq!(s.steps[5].len(), 4);
}

#[test]
fn ring_moves_the_bandwidth_optimal_volume() {
    // Every rank sends 2(p-1)/p of the vector.
    let (p, count) = (8, 800);
    let s = Schedule::build(Collective::AllReduce, Concrete::Ring, p, count, None).unwrap();
    for r in 0..p {
        let sent: usize = s
            .messages
            .iter()
            .filter(|m| m.from == r)
            .map(|m| m.span.len)
            .sum();
        assert_eq!(sent, 2 * (p - 1) * count / p);
    }
}

#[test]
fn hierarchical_crosses_sites_once_per_element() {
    // 4 + 4 ranks: each element's partial sum crosses the cut exactly once each way.
    let sites: Vec<usize> = (0..8).map(|r| usize::from(r >= 4)).collect();
    let count = 1000;
    let s = Schedule::build(
        Collective::AllReduce,
        Concrete::Hierarchical,
        8,
        count,
        Some(&sites),
    )
    .unwrap();
    let cross: usize = s
        .messages
        .iter()
        .filter(|m| sites[m.from] != sites[m.to])
        .map(|m| m.span.len)
        .sum();
    assert_eq!(cross, 2 * count);
    // and only between site-rank j of Earth and site-rank j of the Moon (equal shards)
    for m in s.messages.iter().filter(|m| sites[m.from] != sites[m.to]) {
        assert_eq!(m.from % 4, m.to % 4, "{m:?}");
    }
}

#[test]
fn hierarchical_all_gather_crosses_to_each_other_site_once_per_shard() {
    // 4 + 4 ranks, and three uneven sites: every shard crosses to every other site exactly
    // once (ring and recursive doubling carry shards across the cut several times).
    for sites in [
        (0..8).map(|r| usize::from(r >= 4)).collect::<Vec<usize>>(),
        (0..7).map(|r| r % 3).collect(),
    ] {
        let p = sites.len();
        let n_sites = sites.iter().max().unwrap() + 1;
        let count = 1000;
        let s = Schedule::build(
            Collective::AllGather,
            Concrete::Hierarchical,
            p,
            count,
            Some(&sites),
        )
        .unwrap();
        assert_eq!(s.algorithm, Concrete::Hierarchical);
        let cross: usize = s
            .messages
            .iter()
            .filter(|m| sites[m.from] != sites[m.to])
            .map(|m| m.span.len)
            .sum();
        assert_eq!(cross, (n_sites - 1) * count, "sites {sites:?}");
        for algo in [Concrete::Ring, Concrete::HalvingDoubling] {
            let other =
                Schedule::build(Collective::AllGather, algo, p, count, Some(&sites)).unwrap();
            let other_cross: usize = other
                .messages
                .iter()
                .filter(|m| sites[m.from] != sites[m.to])
                .map(|m| m.span.len)
                .sum();
            assert!(other_cross > cross, "{algo}: {other_cross} vs {cross}");
        }
    }
}

#[test]
fn a_broken_schedule_is_reported_not_hung() {
    let mut s = Schedule::build(Collective::AllReduce, Concrete::Ring, 4, 16, None).unwrap();
    // Drop rank 0's first step: its messages are never sent, the ring deadlocks.
    s.steps[0].remove(0);
    let inputs: Vec<Vec<f32>> = (0..4)
        .map(|r| input(Collective::AllReduce, 1, 4, r, 16))
        .collect();
    let err = simulate(&s, &inputs).unwrap_err();
    assert!(err.to_string().contains("deadlock"), "{err}");
}

#[test]
fn bad_arguments_are_errors() {
    assert!(Schedule::build(Collective::AllReduce, Concrete::Ring, 0, 16, None).is_err());
    assert!(
        Schedule::build(
            Collective::Broadcast { root: 4 },
            Concrete::Tree,
            4,
            16,
            None
        )
        .is_err()
    );
    let err = Schedule::build(
        Collective::AllReduce,
        Concrete::Hierarchical,
        4,
        16,
        Some(&[0, 1]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("site map"), "{err}");
}
