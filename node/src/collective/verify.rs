//! Exact result checks, as nccl-tests does them.
//!
//! Inputs are small integers that depend on (rank, element, seed): |value| ≤ 1024, so any
//! sum over up to 16 384 ranks stays below 2^24 and is exact in f32 whatever the order of
//! the additions. The expected result is then known exactly and checking is equality: an
//! element that differs at all is wrong (0 ULP tolerance).

use std::sync::{Arc, Mutex, PoisonError};

use super::schedule::{Collective, Rank, shard_span};

/// Input element `i` of rank `rank` for the check seeded with `seed`: an integer in
/// [−1024, 1024], exact in f32.
pub fn input_value(seed: u64, rank: Rank, i: usize) -> f32 {
    let mut x = seed
        ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (i as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    ((x % 2049) as i64 - 1024) as f32
}

/// Rank `rank`'s input vector of `count` elements for `collective` (for all-gather only the
/// rank's shard is meaningful; the rest is filled with a poison value the result must
/// overwrite).
pub fn input(
    collective: Collective,
    seed: u64,
    world: usize,
    rank: Rank,
    count: usize,
) -> Vec<f32> {
    match collective {
        Collective::AllGather => {
            let mine = shard_span(count, world, rank);
            (0..count)
                .map(|i| {
                    if mine.as_range().contains(&i) {
                        input_value(seed, rank, i)
                    } else {
                        f32::NAN
                    }
                })
                .collect()
        }
        _ => (0..count).map(|i| input_value(seed, rank, i)).collect(),
    }
}

/// The exact expected element `i` of the result of `collective`.
pub fn expected_value(
    collective: Collective,
    seed: u64,
    world: usize,
    count: usize,
    i: usize,
) -> f32 {
    match collective {
        Collective::AllReduce | Collective::ReduceScatter => {
            (0..world).map(|r| input_value(seed, r, i)).sum()
        }
        Collective::AllGather => {
            let owner = (0..world)
                .find(|&r| shard_span(count, world, r).as_range().contains(&i))
                .unwrap_or(0);
            input_value(seed, owner, i)
        }
        Collective::Broadcast { root } => input_value(seed, root, i),
    }
}

/// Number of wrong elements in rank `rank`'s result `data` (only the rank's shard counts for
/// reduce-scatter). A NaN where a number is expected is wrong.
pub fn count_wrong(
    collective: Collective,
    seed: u64,
    world: usize,
    rank: Rank,
    data: &[f32],
) -> usize {
    let count = data.len();
    let range = match collective {
        Collective::ReduceScatter => shard_span(count, world, rank).as_range(),
        _ => 0..count,
    };
    range
        .filter(|&i| data[i] != expected_value(collective, seed, world, count, i))
        .count()
}

/// The expected result vector (all elements) of `collective`, computed once and shared by
/// the ranks of one process.
pub fn expected(collective: Collective, seed: u64, world: usize, count: usize) -> Vec<f32> {
    (0..count)
        .map(|i| expected_value(collective, seed, world, count, i))
        .collect()
}

/// [`expected`], computed once per process for the latest (collective, seed, world, count)
/// and shared: the ranks of an in-process cluster all check the same result, and computing it
/// once per rank (world × count input values each) cost more CPU than the all-reduce it checks
/// (perf, lan, 8 ranks, 16 MiB: 14 % of the bench's CPU). One vector is kept at a time.
pub fn expected_shared(
    collective: Collective,
    seed: u64,
    world: usize,
    count: usize,
) -> Arc<[f32]> {
    type Key = (Collective, u64, usize, usize);
    static LATEST: Mutex<Option<(Key, Arc<[f32]>)>> = Mutex::new(None);
    let key = (collective, seed, world, count);
    // Held while computing: the other ranks would compute the same vector meanwhile.
    let mut latest = LATEST.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((k, v)) = latest.as_ref()
        && *k == key
    {
        return Arc::clone(v);
    }
    let v: Arc<[f32]> = expected(collective, seed, world, count).into();
    *latest = Some((key, Arc::clone(&v)));
    v
}

/// Number of wrong elements of `data` against a precomputed `expected` (see [`expected`]).
pub fn count_wrong_against(
    collective: Collective,
    world: usize,
    rank: Rank,
    data: &[f32],
    expected: &[f32],
) -> usize {
    let range = match collective {
        Collective::ReduceScatter => shard_span(data.len(), world, rank).as_range(),
        _ => 0..data.len(),
    };
    if data.len() != expected.len() {
        return data.len().max(expected.len());
    }
    range.filter(|&i| data[i] != expected[i]).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_expected_vector_is_the_expected_one_for_its_key() {
        let a = expected_shared(Collective::AllReduce, 7, 4, 1000);
        assert_eq!(&a[..], &expected(Collective::AllReduce, 7, 4, 1000)[..]);
        // (Whether the second call reuses the vector is not asserted: tests in this process
        // that run sweeps may replace the one kept meanwhile.)
        // Another seed: another vector, and it counts a wrong element as wrong.
        let c = expected_shared(Collective::AllReduce, 8, 4, 1000);
        assert_eq!(&c[..], &expected(Collective::AllReduce, 8, 4, 1000)[..]);
        let mut data = c.to_vec();
        data[3] += 1.0;
        assert_eq!(
            count_wrong_against(Collective::AllReduce, 4, 0, &data, &c),
            1
        );
    }
}
