//! Job results as the controller stores them, for tests that need a history of a realistic
//! size (state-dir write cost, bounded `status` answers): one rank's all-reduce sweep result
//! with a chosen number of points.

use spacefabric_proto::v1::{Algorithm, AllReducePoint, AllReduceResult, JobResult, job_result};

/// One rank's all-reduce result with `points` ring points of 1 MiB (about 120 bytes of state
/// JSON each: 170 points make the 20 KB per rank the history carried).
pub fn sweep_result(rank: u32, points: u32) -> JobResult {
    JobResult {
        kind: Some(job_result::Kind::AllReduce(AllReduceResult {
            rank,
            world_size: 4,
            site: "lan".into(),
            points: (0..points)
                .map(|index| AllReducePoint {
                    index,
                    rank,
                    requested_algorithm: Algorithm::Ring as i32,
                    used_algorithm: Algorithm::Ring as i32,
                    bytes: 1 << 20,
                    count: 1 << 18,
                    datatype: "float".into(),
                    op: "sum".into(),
                    times_us: vec![1234.5],
                    wrong: Some(0),
                    ..AllReducePoint::default()
                })
                .collect(),
            ..AllReduceResult::default()
        })),
    }
}
