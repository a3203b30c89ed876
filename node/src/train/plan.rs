//! The training job's data plan when no controller hands one out (in-process runs and tests):
//! which sample indices each rank trains on.
//!
//! The arithmetic itself is [`spacefabric_proto::shard`], the one the controller's planner
//! uses, so both sides compute the same answer from (total, world size, rank). The sharded
//! strategy's parameter shard is not cut here: it is [`spacefabric_proto::shard::shard_of_len`]
//! (the collectives' reduce-scatter span), or the plan's when a controller sent one.

use std::ops::Range;

use spacefabric_proto::shard;

/// Splits `total` items into `parts` contiguous ranges that cover `0..total` exactly once,
/// in order, with sizes differing by at most one (the first `total % parts` get the extra).
/// `parts == 0` yields no ranges.
pub fn even_split(total: u64, parts: usize) -> Vec<Range<u64>> {
    shard::even_split(total, parts)
}

/// The data shard (range of training sample indices) of `rank` among `world` ranks.
pub fn data_shard(total_samples: u64, world: usize, rank: usize) -> Range<u64> {
    if rank >= world {
        return 0..0;
    }
    shard::shard_of(total_samples, world, rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::{TaskSpec, Teacher};

    #[test]
    fn shards_cover_every_sample_exactly_once() {
        for total in [0u64, 1, 7, 8, 9, 1000, 4097] {
            for world in 1..=9 {
                let mut seen = vec![0u32; total as usize];
                for rank in 0..world {
                    for i in data_shard(total, world, rank) {
                        seen[i as usize] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "total {total} world {world}");
                let sizes: Vec<u64> = even_split(total, world)
                    .iter()
                    .map(|r| r.end - r.start)
                    .collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1);
            }
        }
        assert_eq!(data_shard(10, 3, 5), 0..0);
    }

    #[test]
    fn one_epoch_of_batches_visits_each_sample_of_the_job_once() {
        // 8 ranks, 8 samples per batch, 4 steps = one epoch over 256 samples: the union of
        // every rank's batches is the whole data set, each index exactly once.
        let teacher = Teacher::new(TaskSpec::default()).unwrap();
        let (world, batch, total) = (8usize, 8usize, 256u64);
        let mut seen = vec![0u32; total as usize];
        for rank in 0..world {
            let shard = teacher.shard(data_shard(total, world, rank)).unwrap();
            for step in 0..(total / (world * batch) as u64) {
                for i in shard.batch_indices(step, batch) {
                    seen[i as usize] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
    }
}
