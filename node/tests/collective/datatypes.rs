//! Every datatype × reduction op of nccl-tests' `-d` and `-o`, on small in-process clusters:
//! every algorithm's result is exact (#wrong 0), a corrupted element of any type is counted,
//! and the bytes on the wire follow the element size.
#![allow(clippy::unwrap_used)]

use half::{bf16, f16};
use spacefabric_node::collective::sweep::{SweepSpec, run_sweep};
use spacefabric_node::collective::verify::{count_wrong_of, input_of};
use spacefabric_node::collective::{
    Algorithm, Corruption, DataTypeName, Element, MemoryFabric, ReduceOpName, all_reduce_op,
};
use spacefabric_node::collective::{Collective, reduce_scatter};

use crate::support::comms;

/// All-reduces exact inputs of `T` with `op` on every rank; the wrong elements summed.
async fn all_reduce_wrong<T: Element>(
    fabric: MemoryFabric,
    sites: &[usize],
    algo: Algorithm,
    op: ReduceOpName,
    count: usize,
) -> usize {
    let p = sites.len();
    let comms = comms(&fabric, sites, 2);
    let runs = comms.iter().enumerate().map(|(r, comm)| async move {
        let mut data = input_of::<T>(Collective::AllReduce, op, 7, p, r, count);
        all_reduce_op(comm, algo, op, &mut data).await.unwrap();
        count_wrong_of(Collective::AllReduce, op, 7, p, r, &data)
    });
    futures::future::join_all(runs).await.into_iter().sum()
}

#[tokio::test]
async fn every_datatype_and_op_is_exact_with_every_algorithm_through_the_sweep() {
    // The node-side sweep itself (what a job and the bench run): 6 ranks on two sites, from
    // one element of the widest type to 1000 bytes.
    let sites = [0, 0, 0, 1, 1, 1];
    let fabric = MemoryFabric::new(sites.len());
    let comms = comms(&fabric, &sites, 4);
    let spec = SweepSpec {
        sizes: vec![8, 1000],
        algorithms: ["ring", "hd", "tree", "hier", "auto"]
            .map(|a| a.parse().unwrap())
            .to_vec(),
        iterations: 1,
        warmup: 0,
        check: true,
        seed: 5,
        datatypes: vec!["all".into()],
        ops: vec!["all".into()],
    };
    let runs = comms.iter().map(|c| run_sweep(c, &spec, |_| {}));
    let per_rank: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(per_rank[0].len(), 5 * 10 * 5 * 2);
    for (i, point) in per_rank[0].iter().enumerate() {
        let wrong: usize = per_rank
            .iter()
            .map(|pts| pts[i].wrong.unwrap() + pts[i].in_place_wrong.unwrap())
            .sum();
        assert_eq!(
            wrong, 0,
            "{} {} {} {} bytes",
            point.algorithm, point.datatype, point.op, point.bytes
        );
        let d = DataTypeName::parse(&point.datatype).unwrap();
        assert_eq!(point.count, point.bytes as usize / d.size_bytes());
    }
    // count = bytes / sizeof: 1000 bytes are 125 doubles, 1000 int8.
    let count_of = |dt: &str| {
        per_rank[0]
            .iter()
            .find(|p| p.datatype == dt && p.bytes <= 1000 && p.bytes > 8)
            .map(|p| p.count)
    };
    assert_eq!(count_of("double"), Some(125));
    assert_eq!(count_of("int8"), Some(1000));
    assert_eq!(count_of("bfloat16"), Some(500));
    assert_eq!(fabric.undelivered(), 0);
}

#[tokio::test]
async fn vectors_of_several_lanes_are_exact() {
    // Lanes are at least 64 KiB: 140 000 bytes are three lanes of int8 and of double.
    let sites = [0, 0, 1, 1];
    for op in [ReduceOpName::Sum, ReduceOpName::Max] {
        let f = || MemoryFabric::new(sites.len());
        assert_eq!(
            all_reduce_wrong::<i8>(f(), &sites, Algorithm::Ring, op, 140_000).await,
            0
        );
        assert_eq!(
            all_reduce_wrong::<f64>(f(), &sites, Algorithm::Hierarchical, op, 17_500).await,
            0
        );
    }
}

#[tokio::test]
async fn avg_and_prod_are_exact_on_an_odd_world() {
    // 7 ranks: avg divides by a world that is not a power of two.
    let sites = [0, 0, 0, 0, 1, 1, 1];
    for op in [ReduceOpName::Avg, ReduceOpName::Prod] {
        for algo in [Algorithm::Ring, Algorithm::Tree, Algorithm::Hierarchical] {
            let f = || MemoryFabric::new(sites.len());
            assert_eq!(all_reduce_wrong::<f16>(f(), &sites, algo, op, 333).await, 0);
            assert_eq!(
                all_reduce_wrong::<bf16>(f(), &sites, algo, op, 333).await,
                0
            );
            assert_eq!(all_reduce_wrong::<f64>(f(), &sites, algo, op, 333).await, 0);
            assert_eq!(all_reduce_wrong::<i8>(f(), &sites, algo, op, 333).await, 0);
            assert_eq!(all_reduce_wrong::<u32>(f(), &sites, algo, op, 333).await, 0);
        }
    }
}

#[tokio::test]
async fn a_corrupted_element_of_any_type_is_counted_wrong() {
    // Adding 1 to the first element of one message (read as the type being run) changes a
    // sum and a product, in every type, and a float average: the check must see it. (An
    // integer average may absorb it: (s + 1) / p truncates to s / p for most s, and a
    // result that is right is not wrong; likewise min and max when the corrupted element
    // is not the extreme.)
    async fn caught<T: Element>(op: ReduceOpName) {
        for (algo, from, to) in [
            (Algorithm::Ring, 0, 1),
            (Algorithm::Tree, 1, 0),
            (Algorithm::Hierarchical, 0, 2),
        ] {
            let fabric =
                MemoryFabric::new(4).corrupt_typed(Corruption { from, to, nth: 0 }, T::DATATYPE);
            let wrong = all_reduce_wrong::<T>(fabric, &[0, 0, 1, 1], algo, op, 1000).await;
            assert!(
                wrong > 0,
                "{} {op} {algo}: the corruption went unnoticed",
                T::DATATYPE
            );
        }
    }
    for op in [ReduceOpName::Sum, ReduceOpName::Prod, ReduceOpName::Avg] {
        if op != ReduceOpName::Avg {
            caught::<i8>(op).await;
            caught::<u8>(op).await;
            caught::<i32>(op).await;
            caught::<u32>(op).await;
            caught::<i64>(op).await;
            caught::<u64>(op).await;
        }
        caught::<f16>(op).await;
        caught::<f32>(op).await;
        caught::<f64>(op).await;
        caught::<bf16>(op).await;
    }
}

#[tokio::test]
async fn bytes_on_the_wire_follow_the_element_size() {
    async fn wire<T: Element>(count: usize) -> u64 {
        let fabric = MemoryFabric::new(4);
        let sites = [0, 0, 0, 0];
        assert_eq!(
            all_reduce_wrong::<T>(
                fabric.clone(),
                &sites,
                Algorithm::Ring,
                ReduceOpName::Sum,
                count
            )
            .await,
            0
        );
        (0..4)
            .flat_map(|a| (0..4).map(move |b| (a, b)))
            .map(|(a, b)| fabric.bytes_sent(a, b))
            .sum()
    }
    let n = 4096;
    let f32_bytes = wire::<f32>(n).await;
    assert_eq!(wire::<f64>(n).await, 2 * f32_bytes);
    assert_eq!(wire::<bf16>(n).await * 2, f32_bytes);
    assert_eq!(wire::<u8>(n).await * 4, f32_bytes);
    // Ring all-reduce: every rank sends 2(p−1)/p of its vector.
    assert_eq!(f32_bytes, 4 * 2 * 3 * (n as u64 / 4) * 4);
}

#[tokio::test]
async fn reduce_scatter_of_doubles_is_exact() {
    let fabric = MemoryFabric::new(4);
    let comms = comms(&fabric, &[0, 0, 0, 0], 1);
    let runs = comms.iter().enumerate().map(|(r, comm)| async move {
        let mut data = input_of::<f64>(Collective::ReduceScatter, ReduceOpName::Sum, 7, 4, r, 101);
        reduce_scatter(comm, Algorithm::Ring, &mut data)
            .await
            .unwrap();
        count_wrong_of(Collective::ReduceScatter, ReduceOpName::Sum, 7, 4, r, &data)
    });
    let wrong: usize = futures::future::join_all(runs).await.into_iter().sum();
    assert_eq!(wrong, 0);
}
