//! The cost model against the textbook α-β formulas on uniform links, and its choices.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use spacefabric_node::collective::{Collective, Concrete, CostModel, LinkCost, Schedule};
use spacefabric_testkit::profiles::{self, Rate};

const ALPHA: f64 = 0.001; // 1 ms
const RATE: u64 = 1_000_000_000; // 1 Gbit/s
const BETA: f64 = 8.0 / RATE as f64; // s per byte

fn uniform(p: usize) -> CostModel {
    CostModel::uniform(p, Duration::from_secs_f64(ALPHA), Some(RATE))
}

fn predict(model: &CostModel, algo: Concrete, collective: Collective, count: usize) -> f64 {
    model
        .predict_collective(collective, algo, count, 4, 1)
        .unwrap()
        .total_s
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9 * want.max(1e-9),
        "{what}: model {got:.9} s, formula {want:.9} s"
    );
}

#[test]
fn ring_all_reduce_matches_2_p_minus_1_alpha_plus_bandwidth_term() {
    for p in [2, 3, 4, 5, 8, 16] {
        let count = 4096 * p; // divisible by p
        let n = (count * 4) as f64;
        let pf = p as f64;
        let want = 2.0 * (pf - 1.0) * ALPHA + 2.0 * (pf - 1.0) / pf * n * BETA;
        close(
            predict(&uniform(p), Concrete::Ring, Collective::AllReduce, count),
            want,
            &format!("ring p={p}"),
        );
    }
}

#[test]
fn rabenseifner_matches_2_lg_p_alpha_plus_bandwidth_term() {
    for k in 1..=4 {
        let p = 1usize << k;
        let count = 4096 * p;
        let n = (count * 4) as f64;
        let pf = p as f64;
        let want = 2.0 * f64::from(k) * ALPHA + 2.0 * (pf - 1.0) / pf * n * BETA;
        close(hd_all_reduce(p, count), want, &format!("hd p={p}"));
    }
}

/// The predicted halving-doubling all-reduce of `count` floats on `p` uniform ranks.
fn hd_all_reduce(p: usize, count: usize) -> f64 {
    predict(
        &uniform(p),
        Concrete::HalvingDoubling,
        Collective::AllReduce,
        count,
    )
}

#[test]
fn rabenseifner_non_power_of_two_adds_two_full_vector_steps() {
    // MPICH: (2⌊lg p⌋ + 2)α + (2(p'−1)/p' + 2)·nβ for the folded ranks' critical path.
    for p in [3usize, 5, 6, 12] {
        let pof2 = p.next_power_of_two() / 2;
        let k = pof2.trailing_zeros() as f64;
        let count = 4096 * pof2;
        let n = (count * 4) as f64;
        let pf = pof2 as f64;
        let want = (2.0 * k + 2.0) * ALPHA + (2.0 * (pf - 1.0) / pf + 2.0) * n * BETA;
        close(hd_all_reduce(p, count), want, &format!("hd p={p}"));
    }
}

#[test]
fn binary_tree_matches_2_floor_lg_p_hops_of_the_whole_vector() {
    for p in [2, 3, 4, 7, 8, 13] {
        let count = 1000;
        let n = (count * 4) as f64;
        let depth = (p as f64).log2().floor();
        let want = 2.0 * depth * (ALPHA + n * BETA);
        close(
            predict(&uniform(p), Concrete::Tree, Collective::AllReduce, count),
            want,
            &format!("tree p={p}"),
        );
    }
}

#[test]
fn ring_reduce_scatter_and_all_gather_match_p_minus_1_steps() {
    let p = 8;
    let count = 8 * 1000;
    let n = (count * 4) as f64;
    let want = 7.0 * ALPHA + 7.0 / 8.0 * n * BETA;
    close(
        predict(
            &uniform(p),
            Concrete::Ring,
            Collective::ReduceScatter,
            count,
        ),
        want,
        "rs",
    );
    close(
        predict(&uniform(p), Concrete::Ring, Collective::AllGather, count),
        want,
        "ag",
    );
}

fn two_sites(k: usize, alpha_l: f64, rate_l: f64, alpha_g: f64, rate_g: f64) -> CostModel {
    let local = LinkCost {
        delay_s: alpha_l,
        rate_bps: Some(rate_l),
    };
    let global = LinkCost {
        delay_s: alpha_g,
        rate_bps: Some(rate_g),
    };
    CostModel::sites(
        (0..2 * k).map(|r| usize::from(r >= k)).collect(),
        vec![local, global, global, local],
    )
}

#[test]
fn hierarchical_matches_intra_ring_plus_one_cross_site_hop() {
    let (k, al, rl, ag, rg) = (4, 0.0001, 1e9, 1.28, 1e8);
    let model = two_sites(k, al, rl, ag, rg);
    let count = 4 * 1024 * 1024;
    let n = (count * 4) as f64;
    let kf = k as f64;
    let want =
        2.0 * (kf - 1.0) * al + 2.0 * (kf - 1.0) / kf * n * 8.0 / rl + ag + n / kf * 8.0 / rg;
    close(
        predict(&model, Concrete::Hierarchical, Collective::AllReduce, count),
        want,
        "hier",
    );
}

#[test]
fn lanes_pipeline_a_chain() {
    // Chain broadcast over 5 ranks with no delay: 4 hops of n·β unpipelined; with 4 lanes
    // the lanes follow each other down the chain: (4 + 4 − 1) hops of n·β/4.
    let model = CostModel::uniform(5, Duration::ZERO, Some(RATE));
    let count = 4 * 16 * 1024;
    let n = (count * 4) as f64;
    let chain = |lanes| {
        model
            .predict_collective(
                Collective::Broadcast { root: 0 },
                Concrete::Ring,
                count,
                4,
                lanes,
            )
            .unwrap()
            .total_s
    };
    close(chain(1), 4.0 * n * BETA, "1 lane");
    close(chain(4), 7.0 * n * BETA / 4.0, "4 lanes");
}

#[test]
fn auto_picks_hierarchical_across_the_moon_and_a_bandwidth_optimal_one_on_a_lan() {
    let earth_moon = two_sites(4, 0.0001, 1e9, 1.28, 1e8);
    assert_eq!(
        earth_moon.choose(Collective::AllReduce, 256, 4, 4).unwrap(),
        Concrete::Hierarchical
    );
    let lan = CostModel::uniform(8, Duration::from_micros(50), Some(RATE));
    let big = lan
        .choose(Collective::AllReduce, 16 * 1024 * 1024, 4, 1)
        .unwrap();
    assert!(
        matches!(big, Concrete::Ring | Concrete::HalvingDoubling),
        "{big}"
    );
    let small = lan.choose(Collective::AllReduce, 1, 4, 1).unwrap();
    assert_eq!(
        small,
        Concrete::HalvingDoubling,
        "lg p rounds beat 2(p-1) when latency dominates"
    );
}

#[test]
fn reference_bound_is_the_cut_across_sites_and_the_bus_bound_inside_one() {
    let earth_moon = two_sites(4, 0.0001, 1e9, 1.28, 1e8);
    let b = earth_moon.all_reduce_bound(1e6);
    close(b.total_s, 1.28 + 1e6 * 8.0 / 1e8, "cut bound");
    let lan = CostModel::uniform(8, Duration::from_micros(50), Some(RATE));
    let b = lan.all_reduce_bound(1e8);
    close(b.total_s, 2.0 * 7.0 / 8.0 * 1e8 * BETA, "bus bound");
    let b = lan.all_reduce_bound(4.0);
    close(b.total_s, 50e-6, "latency bound");
    // Every algorithm's prediction on a single site is at or above the bound.
    for algo in [Concrete::Ring, Concrete::HalvingDoubling, Concrete::Tree] {
        for count in [1, 1000, 1 << 20] {
            let t = predict(&lan, algo, Collective::AllReduce, count);
            assert!(
                t + 1e-12 >= lan.all_reduce_bound((count * 4) as f64).total_s,
                "{algo} {count}"
            );
        }
    }
}

#[test]
fn a_schedule_for_another_world_is_an_error() {
    let s = Schedule::build(Collective::AllReduce, Concrete::Ring, 4, 16, None).unwrap();
    assert!(uniform(8).predict(&[s]).is_err());
}

/// Two sites of `k` ranks from a profile: 0.1 ms / 1 Gbit/s inside, 1.28 s / 100 Mbit/s
/// between; `sharing` goes into the cross-site link (`""` = the default, one shared trunk).
fn two_site_profile(k: usize, sharing: &str) -> CostModel {
    let profile = profiles::two_sites("t", "a", "b", 1280.0, Some(Rate::Mbps(100.0)))
        .inside(0.1, Some(Rate::Mbps(1000.0)))
        .last_link_extra(sharing)
        .profile();
    CostModel::from_profile(
        &profile,
        (0..2 * k).map(|r| usize::from(r >= k)).collect(),
        Duration::ZERO,
    )
    .unwrap()
}

#[test]
fn concurrent_cross_site_messages_queue_on_the_shared_trunk() {
    let (k, al, rl, ag, rg) = (4, 0.0001, 1e9, 1.28, 1e8);
    let count = 4 * 1024 * 1024;
    let n = (count * 4) as f64;
    let kf = k as f64;
    let intra = 2.0 * (kf - 1.0) * al + 2.0 * (kf - 1.0) / kf * n * 8.0 / rl;
    // Hierarchical sends n/k over each of k cross-site pairs at once: on one shared trunk
    // they queue, so the whole n crosses at the trunk's rate.
    let shared = two_site_profile(k, "");
    close(
        predict(
            &shared,
            Concrete::Hierarchical,
            Collective::AllReduce,
            count,
        ),
        intra + ag + n * 8.0 / rg,
        "hier, shared trunk",
    );
    // Nothing beats the cut bound on a shared trunk.
    let bound = shared.all_reduce_bound(n);
    close(bound.total_s, ag + n * 8.0 / rg, "cut bound");
    for algo in [
        Concrete::Ring,
        Concrete::HalvingDoubling,
        Concrete::Tree,
        Concrete::Hierarchical,
    ] {
        let t = predict(&shared, algo, Collective::AllReduce, count);
        assert!(
            t >= bound.total_s,
            "{algo:?}: {t} < bound {}",
            bound.total_s
        );
    }
    // Per pair: each pair has its own copy, as before shared trunks.
    let per_pair = two_site_profile(k, "per_pair = true");
    close(
        predict(
            &per_pair,
            Concrete::Hierarchical,
            Collective::AllReduce,
            count,
        ),
        intra + ag + n / kf * 8.0 / rg,
        "hier, per pair",
    );
    // k terminals: pairs spread over k trunks, and the bound counts k × the rate.
    let terminals = two_site_profile(k, &format!("terminals = {k}"));
    close(
        predict(
            &terminals,
            Concrete::Hierarchical,
            Collective::AllReduce,
            count,
        ),
        intra + ag + n / kf * 8.0 / rg,
        "hier, k terminals",
    );
    close(
        terminals.all_reduce_bound(n).total_s,
        ag + n * 8.0 / (rg * kf),
        "bound, k terminals",
    );
}
