//! One rank's part of an all-reduce benchmark sweep (nccl-tests' all_reduce_perf loop):
//! for every algorithm and size, two runs as nccl-tests makes them — out-of-place (the
//! result goes to an output buffer, the input buffer is left as it was) and then in-place
//! (the output buffer is the input buffer) — each of warm-up iterations, timed iterations,
//! then one checked iteration on exact inputs. Every rank of the world runs [`run_sweep`] with the same spec;
//! the results of all ranks are combined by whoever collects them (the benchmark binary, or
//! the controller for a job): an iteration's time is the slowest rank's, #wrong is the sum.
//!
//! Every iteration starts with a barrier (not timed) that releases all ranks at one instant
//! of the shared scenario clock ([`Communicator::barrier`]), and each rank times from that
//! instant, so an iteration's time is the latency of one all-reduce from a common start (as
//! OSU's benchmarks do), not the throughput of back-to-back ones. Releasing ranks on message
//! arrival alone is not enough: a skew between sites left by the previous collective (up to
//! a light delay on Earth-Moon) survives such a barrier and was measured as part of the next
//! iteration (1 KiB hierarchical on earth-moon took two light delays instead of one).

use super::executor::CollectiveError;
use super::schedule::Collective;
use super::verify;
use super::{Algorithm, Communicator, Exchange, all_reduce};
use serde::{Deserialize, Serialize};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepSpec {
    /// Sizes in bytes per rank (each rounded down to whole f32).
    pub sizes: Vec<u64>,
    /// Algorithms, in order.
    pub algorithms: Vec<String>,
    /// Timed iterations per size.
    pub iterations: usize,
    /// Untimed warm-up iterations per size.
    pub warmup: usize,
    /// Run the checked iteration.
    pub check: bool,
    /// Seed of the checked iteration's inputs.
    pub seed: u64,
}

/// One rank's measurement of one (algorithm, size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Index of this point in the sweep (algorithm-major).
    pub index: usize,
    /// The rank that measured it.
    pub rank: usize,
    /// Algorithm asked for (`ring`, ..., `auto`).
    pub algorithm: String,
    /// Algorithm run (what `auto` chose).
    pub used: String,
    /// Bytes per rank.
    pub bytes: u64,
    /// Elements per rank.
    pub count: usize,
    /// This rank's time of each timed out-of-place iteration, µs.
    pub times_us: Vec<f64>,
    /// Wrong elements in this rank's checked out-of-place result, plus any element of the
    /// input buffer that the out-of-place run changed (`None` when not checked).
    pub wrong: Option<usize>,
    /// This rank's time of each timed in-place iteration, µs (empty from nodes that
    /// predate the in-place run).
    #[serde(default)]
    pub in_place_times_us: Vec<f64>,
    /// Wrong elements in this rank's checked in-place result (`None` when not checked).
    #[serde(default)]
    pub in_place_wrong: Option<usize>,
}

/// Where the result of a run goes (nccl-tests' two runs per size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Input and output are separate buffers; the input must be left unchanged.
    OutOfPlace,
    /// The output overwrites the input.
    InPlace,
}

/// One placement's measurement on this rank.
struct Run {
    times_us: Vec<f64>,
    wrong: Option<usize>,
    used: Option<super::Concrete>,
}

/// Warm-up, timed and checked iterations of one (algorithm, size, placement).
async fn measure<E: Exchange>(
    comm: &Communicator<E>,
    spec: &SweepSpec,
    algo: Algorithm,
    count: usize,
    placement: Placement,
) -> Result<Run, SweepError> {
    let rank = comm.rank();
    let world = comm.world_size();
    // Small values so repeated sums stay finite.
    let send = vec![1.0f32; count];
    let mut recv = vec![0.0f32; count];
    let mut times_us = Vec::with_capacity(spec.iterations);
    let mut used = None;
    for i in 0..spec.warmup + spec.iterations {
        if placement == Placement::InPlace {
            // The in-place buffer is the input: refilled outside the timed part.
            recv.fill(1.0);
        }
        let start = comm.barrier().await?;
        if placement == Placement::OutOfPlace {
            // Out of place, the input is read into the output buffer: part of the op.
            recv.copy_from_slice(&send);
        }
        let c = all_reduce(comm, algo, &mut recv).await?;
        let t = comm.elapsed_since(start);
        used = Some(c);
        if i >= spec.warmup {
            times_us.push(t.as_secs_f64() * 1e6);
        }
    }
    let wrong = if spec.check {
        let collective = Collective::AllReduce;
        let input = verify::input(collective, spec.seed, world, rank, count);
        comm.barrier().await?;
        let changed_input = match placement {
            Placement::OutOfPlace => {
                let send = input.clone();
                recv.copy_from_slice(&send);
                used = Some(all_reduce(comm, algo, &mut recv).await?);
                send.iter().zip(&input).filter(|(a, b)| a != b).count()
            }
            Placement::InPlace => {
                recv = input;
                used = Some(all_reduce(comm, algo, &mut recv).await?);
                0
            }
        };
        let expected = verify::expected_shared(collective, spec.seed, world, count);
        Some(verify::count_wrong_against(collective, world, rank, &recv, &expected) + changed_input)
    } else {
        None
    };
    Ok(Run {
        times_us,
        wrong,
        used,
    })
}

/// Parses the spec's algorithm names.
pub fn algorithms(spec: &SweepSpec) -> Result<Vec<Algorithm>, super::UnknownAlgorithm> {
    spec.algorithms.iter().map(|a| a.parse()).collect()
}

/// Runs the sweep on this rank; `on_point` gets every point as soon as it is measured.
pub async fn run_sweep<E: Exchange>(
    comm: &Communicator<E>,
    spec: &SweepSpec,
    mut on_point: impl FnMut(&SweepPoint),
) -> Result<Vec<SweepPoint>, SweepError> {
    let algos = algorithms(spec)?;
    let rank = comm.rank();
    let mut points = Vec::with_capacity(algos.len() * spec.sizes.len());
    for &algo in &algos {
        for &bytes in &spec.sizes {
            let count = (bytes / 4) as usize;
            let out_of_place = measure(comm, spec, algo, count, Placement::OutOfPlace).await?;
            let in_place = measure(comm, spec, algo, count, Placement::InPlace).await?;
            let used = in_place.used.or(out_of_place.used);
            let point = SweepPoint {
                index: points.len(),
                rank,
                algorithm: algo.short_name().to_string(),
                used: used.map_or_else(
                    || algo.short_name().to_string(),
                    |c| c.short_name().to_string(),
                ),
                bytes,
                count,
                times_us: out_of_place.times_us,
                wrong: out_of_place.wrong,
                in_place_times_us: in_place.times_us,
                in_place_wrong: in_place.wrong,
            };
            on_point(&point);
            points.push(point);
        }
    }
    Ok(points)
}

/// Why a sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A name in `algorithms` is not an algorithm.
    #[error("sweep spec: {0}")]
    Algorithm(#[from] super::UnknownAlgorithm),
    /// A collective failed.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
}
