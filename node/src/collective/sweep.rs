//! One rank's part of an all-reduce benchmark sweep (nccl-tests' all_reduce_perf loop):
//! for every algorithm and size, two runs as nccl-tests makes them — out-of-place (the
//! result goes to an output buffer, the input buffer is left as it was) and then in-place
//! (the output buffer is the input buffer) — each of warm-up iterations, timed iterations,
//! then one checked iteration on exact inputs ([`verify`], per datatype and reduction op).
//! The loops nest as nccl-tests' do with `-d all -o all`: algorithm, then datatype, then
//! op, then size. Every rank of the world runs [`run_sweep`] with the same spec;
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

use super::element::Element;
use super::executor::CollectiveError;
use super::schedule::Collective;
use super::verify;
use super::{Algorithm, Communicator, Exchange, all_reduce_op};
use serde::{Deserialize, Serialize};
use spacefabric_proto::reduction::{DataTypeName, ReduceOpName, UnknownDataType, UnknownReduceOp};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepSpec {
    /// Sizes in bytes per rank (each rounded down to whole elements of the datatype).
    pub sizes: Vec<u64>,
    /// Algorithms, in order.
    pub algorithms: Vec<Algorithm>,
    /// Timed iterations per size.
    pub iterations: usize,
    /// Untimed warm-up iterations per size.
    pub warmup: usize,
    /// Run the checked iteration.
    pub check: bool,
    /// Seed of the checked iteration's inputs.
    pub seed: u64,
    /// Element types (nccl-tests' names, or `all`); empty: float.
    #[serde(default)]
    pub datatypes: Vec<String>,
    /// Reduction ops (`sum` … `avg`, or `all`); empty: sum.
    #[serde(default)]
    pub ops: Vec<String>,
}

fn default_datatype() -> String {
    DataTypeName::DEFAULT.name().to_string()
}

fn default_op() -> String {
    ReduceOpName::DEFAULT.name().to_string()
}

/// One rank's measurement of one (algorithm, size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Index of this point in the sweep (algorithm-major).
    pub index: usize,
    /// The rank that measured it.
    pub rank: usize,
    /// Algorithm asked for (`ring`, ..., `auto`).
    pub algorithm: Algorithm,
    /// Algorithm run (what `auto` chose; `auto` only when no iteration ran).
    pub used: Algorithm,
    /// Bytes per rank.
    pub bytes: u64,
    /// Elements per rank.
    pub count: usize,
    /// Element type (nccl-tests' name).
    #[serde(default = "default_datatype")]
    pub datatype: String,
    /// Reduction op.
    #[serde(default = "default_op")]
    pub op: String,
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
    /// What this rank's host did to its process while it measured the point (set by the
    /// node's job runner; `None` from [`run_sweep`] itself and from older nodes).
    #[serde(default)]
    pub host: Option<spacefabric_fabric::host_load::HostShare>,
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

/// Warm-up, timed and checked iterations of one (algorithm, datatype, op, size, placement).
async fn measure<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    spec: &SweepSpec,
    algo: Algorithm,
    op: ReduceOpName,
    count: usize,
    placement: Placement,
) -> Result<Run, SweepError> {
    let rank = comm.rank();
    let world = comm.world_size();
    // Ones, so repeated reductions stay finite (and exact) in every type and op.
    let one = T::from_i64(1);
    let send = vec![one; count];
    let mut recv = vec![T::from_i64(0); count];
    let mut times_us = Vec::with_capacity(spec.iterations);
    let mut used = None;
    for i in 0..spec.warmup + spec.iterations {
        if placement == Placement::InPlace {
            // The in-place buffer is the input: refilled outside the timed part.
            recv.fill(one);
        }
        let start = comm.barrier().await?;
        if placement == Placement::OutOfPlace {
            // Out of place, the input is read into the output buffer: part of the op.
            recv.copy_from_slice(&send);
        }
        let c = all_reduce_op(comm, algo, op, &mut recv).await?;
        let t = comm.elapsed_since(start);
        used = Some(c);
        if i >= spec.warmup {
            times_us.push(t.as_secs_f64() * 1e6);
        }
    }
    let wrong = if spec.check {
        let collective = Collective::AllReduce;
        let input = verify::input_of::<T>(collective, op, spec.seed, world, rank, count);
        comm.barrier().await?;
        let changed_input = match placement {
            Placement::OutOfPlace => {
                let send = input.clone();
                recv.copy_from_slice(&send);
                used = Some(all_reduce_op(comm, algo, op, &mut recv).await?);
                send.iter().zip(&input).filter(|(a, b)| a != b).count()
            }
            Placement::InPlace => {
                recv = input;
                used = Some(all_reduce_op(comm, algo, op, &mut recv).await?);
                0
            }
        };
        let expected = verify::expected_shared::<T>(collective, op, spec.seed, world, recv.len());
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

/// Parses the spec's datatypes (`all` expanded, empty = float).
pub fn datatypes(spec: &SweepSpec) -> Result<Vec<DataTypeName>, UnknownDataType> {
    DataTypeName::parse_list(&spec.datatypes)
}

/// Parses the spec's reduction ops (`all` expanded, empty = sum).
pub fn ops(spec: &SweepSpec) -> Result<Vec<ReduceOpName>, UnknownReduceOp> {
    ReduceOpName::parse_list(&spec.ops)
}

/// Both placements of one (algorithm, datatype, op, size) on this rank, as one point.
async fn measure_point<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    spec: &SweepSpec,
    algo: Algorithm,
    op: ReduceOpName,
    bytes: u64,
    index: usize,
) -> Result<SweepPoint, SweepError> {
    let count = usize::try_from(bytes / T::BYTES as u64).unwrap_or(usize::MAX);
    let out_of_place = measure::<E, T>(comm, spec, algo, op, count, Placement::OutOfPlace).await?;
    let in_place = measure::<E, T>(comm, spec, algo, op, count, Placement::InPlace).await?;
    let used = in_place.used.or(out_of_place.used);
    Ok(SweepPoint {
        index,
        rank: comm.rank(),
        algorithm: algo,
        used: used.map_or(algo, Algorithm::from),
        bytes: (count as u64).saturating_mul(T::BYTES as u64),
        count,
        datatype: T::DATATYPE.name().to_string(),
        op: op.name().to_string(),
        times_us: out_of_place.times_us,
        wrong: out_of_place.wrong,
        in_place_times_us: in_place.times_us,
        in_place_wrong: in_place.wrong,
        host: None,
    })
}

/// Runs the sweep on this rank; `on_point` gets every point as soon as it is measured.
pub async fn run_sweep<E: Exchange>(
    comm: &Communicator<E>,
    spec: &SweepSpec,
    mut on_point: impl FnMut(&SweepPoint),
) -> Result<Vec<SweepPoint>, SweepError> {
    let algos = &spec.algorithms;
    let types = datatypes(spec)?;
    let ops = ops(spec)?;
    let mut points = Vec::with_capacity(algos.len() * types.len() * ops.len() * spec.sizes.len());
    for &algo in algos {
        for &datatype in &types {
            for &op in &ops {
                for &bytes in &spec.sizes {
                    let index = points.len();
                    let point = crate::dispatch_datatype!(datatype, T => {
                        measure_point::<E, T>(comm, spec, algo, op, bytes, index).await?
                    });
                    on_point(&point);
                    points.push(point);
                }
            }
        }
    }
    Ok(points)
}

/// Why a sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A name in `datatypes` is not a datatype.
    #[error("sweep spec: {0}")]
    DataType(#[from] UnknownDataType),
    /// A name in `ops` is not a reduction op.
    #[error("sweep spec: {0}")]
    Op(#[from] UnknownReduceOp),
    /// A collective failed.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
}
