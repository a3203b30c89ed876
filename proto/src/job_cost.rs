//! What a job costs one node, computed from its spec and the size of its plan — the one
//! function the controller (admission, before a job is accepted and again when it starts) and
//! the node (before it allocates anything) both call, so a spec that would exhaust a node is
//! refused by name instead of aborting every node that runs it.
//!
//! Every product is saturating: an absurd spec costs `u64::MAX` bytes, which no budget admits,
//! and nothing here can overflow or panic. The estimates are upper bounds of what the node's
//! code allocates (f32 everywhere), not measurements. A new train model kind adds its own
//! `*_train_cost` function and one arm in [`train_cost`].

use crate::v1::{AllReduceJob, JobSpec, PingJob, TrainJob, job_spec};

/// Bytes of one f32.
const F32: u64 = 4;
/// Copies of the student's parameters a rank holds at once: parameters, gradients, AdamW's two
/// moments, the outer (DiLoCo) global copy, its momentum and delta, one committed snapshot.
const PARAMETER_COPIES: u64 = 8;
/// Buffers of the largest all-reduce message a rank holds: input, output, receive chunks.
const ALL_REDUCE_BUFFERS: u64 = 3;
/// Bytes (encoded `JobResult`, see `controller.proto`) of one all-reduce result point (size, algorithm, times, bus bandwidth).
const RESULT_BYTES_PER_POINT: u64 = 512;
/// Bytes (encoded `JobResult`, see `controller.proto`) of one evaluation of a train result (step, loss, time, bytes per link class).
const RESULT_BYTES_PER_EVAL: u64 = 256;
/// Bytes (encoded `JobResult`, see `controller.proto`) of one ping round trip in a result.
const RESULT_BYTES_PER_PING: u64 = 32;
/// Fixed part of every result (transport stats, settings).
const RESULT_BASE_BYTES: u64 = 16 * 1024;

/// Defaults of [`NodeBudget`].
pub mod budget_defaults {
    /// Memory a job may take on one node (2 GiB).
    pub const MEMORY_BYTES: u64 = 2 << 30;
    /// Largest result one rank may send (768 KiB: below the controller's default 1 MiB
    /// request limit, with room for the report's other fields).
    pub const RESULT_BYTES: u64 = 768 << 10;
}

/// What one node lets a job take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeBudget {
    /// Bytes of memory for the job's buffers.
    pub memory_bytes: u64,
    /// Bytes of one rank's result report.
    pub result_bytes: u64,
}

impl Default for NodeBudget {
    fn default() -> Self {
        Self {
            memory_bytes: budget_defaults::MEMORY_BYTES,
            result_bytes: budget_defaults::RESULT_BYTES,
        }
    }
}

/// One line of a job's cost: what, which spec fields drive it, how many bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostItem {
    /// What is allocated or moved ("teacher parameters").
    pub what: &'static str,
    /// The spec fields it grows with ("spec.train.teacher_width × spec.train.teacher_depth").
    pub fields: &'static str,
    /// Bytes on one node.
    pub bytes: u64,
}

/// What a job costs one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobCost {
    /// Memory, item by item.
    pub memory: Vec<CostItem>,
    /// Bytes of the rank's result report.
    pub result_bytes: u64,
    /// Bytes the rank sends over the fabric per step (train) or per sweep (all-reduce),
    /// for information.
    pub traffic_bytes: u64,
}

impl JobCost {
    /// Total memory, saturating.
    pub fn memory_bytes(&self) -> u64 {
        self.memory
            .iter()
            .fold(0u64, |sum, item| sum.saturating_add(item.bytes))
    }

    /// The largest memory item.
    pub fn largest(&self) -> Option<&CostItem> {
        self.memory.iter().max_by_key(|item| item.bytes)
    }

    /// Ok when the job fits `budget`; otherwise an error naming the fields that cost most.
    pub fn check(&self, budget: &NodeBudget) -> Result<(), OverBudget> {
        let total = self.memory_bytes();
        if total > budget.memory_bytes {
            let largest = self.largest().cloned().unwrap_or(CostItem {
                what: "buffers",
                fields: "spec",
                bytes: total,
            });
            return Err(OverBudget::Memory {
                total,
                budget: budget.memory_bytes,
                largest,
            });
        }
        if self.result_bytes > budget.result_bytes {
            return Err(OverBudget::Result {
                bytes: self.result_bytes,
                budget: budget.result_bytes,
            });
        }
        Ok(())
    }
}

/// A job that does not fit a node's budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    /// Too much memory.
    #[error(
        "needs {} per node, above the node budget of {} (largest: {} from {}: {})",
        human_bytes(*total), human_bytes(*budget), largest.what, largest.fields,
        human_bytes(largest.bytes)
    )]
    Memory {
        /// Total bytes.
        total: u64,
        /// The budget.
        budget: u64,
        /// The item that costs most.
        largest: CostItem,
    },
    /// A result larger than a report may be.
    #[error(
        "each rank's result would be about {}, above the {} a result report may carry",
        human_bytes(*bytes), human_bytes(*budget)
    )]
    Result {
        /// Estimated result bytes.
        bytes: u64,
        /// The budget.
        budget: u64,
    },
}

impl OverBudget {
    /// The spec fields to change.
    pub fn fields(&self) -> &'static str {
        match self {
            Self::Memory { largest, .. } => largest.fields,
            Self::Result { .. } => "spec",
        }
    }
}

/// `bytes` as B, KiB, MiB, GiB or TiB with one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn mul(values: &[u64]) -> u64 {
    values.iter().fold(1u64, |p, v| p.saturating_mul(*v))
}

/// What `spec` costs one rank of a plan with `world_size` ranks (0 counts as 1).
pub fn job_cost(spec: &JobSpec, world_size: u32) -> JobCost {
    let world = u64::from(world_size.max(1));
    match &spec.kind {
        Some(job_spec::Kind::AllReduce(a)) => all_reduce_cost(a, world),
        Some(job_spec::Kind::Train(t)) => train_cost(t, world),
        Some(job_spec::Kind::Ping(p)) => ping_cost(p),
        None => JobCost::default(),
    }
}

fn all_reduce_cost(a: &AllReduceJob, world: u64) -> JobCost {
    let mut sizes = 0u64;
    let mut size = a.min_bytes.max(1);
    let factor = u64::from(a.factor.max(2));
    while size <= a.max_bytes && sizes < 4096 {
        sizes += 1;
        size = size.saturating_mul(factor);
        if size == u64::MAX {
            break;
        }
    }
    let algorithms = (a.collective_algorithms.len() as u64).max(1);
    let rounds = u64::from(a.iterations)
        .saturating_add(u64::from(a.warmup))
        .saturating_add(1);
    JobCost {
        memory: vec![CostItem {
            what: "all-reduce buffers",
            fields: "spec.all_reduce.max_bytes",
            bytes: a.max_bytes.saturating_mul(ALL_REDUCE_BUFFERS),
        }],
        result_bytes: RESULT_BASE_BYTES.saturating_add(mul(&[
            sizes,
            algorithms,
            RESULT_BYTES_PER_POINT,
        ])),
        // A ring all-reduce sends 2(n-1)/n of the buffer per iteration; bounded by 2x.
        traffic_bytes: if world == 1 {
            0
        } else {
            mul(&[a.max_bytes, 2, rounds, algorithms])
        },
    }
}

fn ping_cost(p: &PingJob) -> JobCost {
    JobCost {
        memory: Vec::new(),
        result_bytes: RESULT_BASE_BYTES
            .saturating_add(u64::from(p.iterations).saturating_mul(RESULT_BYTES_PER_PING)),
        traffic_bytes: 0,
    }
}

/// The model kinds a train job can name; each has its own cost function.
fn train_cost(t: &TrainJob, world: u64) -> JobCost {
    // Only the MLP student/teacher task exists today; a transformer adds an arm here.
    mlp_train_cost(t, world)
}

fn mlp_parameters(input: u64, width: u64, depth: u64, output: u64) -> u64 {
    let first = mul(&[input, width]).saturating_add(width);
    let hidden = mul(&[
        depth.saturating_sub(1),
        mul(&[width, width]).saturating_add(width),
    ]);
    let last = mul(&[width, output]).saturating_add(output);
    first.saturating_add(hidden).saturating_add(last)
}

fn mlp_train_cost(t: &TrainJob, world: u64) -> JobCost {
    let j = t.resolved();
    let (input, output) = (u64::from(j.input_dim), u64::from(j.output_dim));
    let (width, depth) = (u64::from(j.width), u64::from(j.depth));
    let (teacher_width, teacher_depth) = (u64::from(j.teacher_width), u64::from(j.teacher_depth));
    let student = mlp_parameters(input, width, depth, output);
    let teacher = mlp_parameters(input, teacher_width, teacher_depth, output);
    let shard = j.dataset_samples.div_ceil(world);
    let sample_bytes = mul(&[input.saturating_add(output), F32]);
    let batch = u64::from(j.batch_size);
    let eval = u64::from(j.eval_samples);
    // The teacher generates data in chunks of 256 rows; activations of every layer are kept.
    let teacher_rows = 256u64.max(batch);
    let evals = j
        .steps
        .div_ceil(u64::from(j.eval_every.max(1)))
        .saturating_add(1);
    JobCost {
        memory: vec![
            CostItem {
                what: "student parameters, gradients and optimiser state",
                fields: "spec.train.width × spec.train.depth (× input_dim, output_dim)",
                bytes: mul(&[student, F32, PARAMETER_COPIES]),
            },
            CostItem {
                what: "teacher parameters",
                fields: "spec.train.teacher_width × spec.train.teacher_depth",
                bytes: mul(&[teacher, F32]),
            },
            CostItem {
                what: "teacher activations",
                fields: "spec.train.teacher_width × spec.train.teacher_depth",
                bytes: mul(&[teacher_rows, teacher_width, teacher_depth, F32]),
            },
            CostItem {
                what: "student activations (forward and backward)",
                fields: "spec.train.batch_size × spec.train.width × spec.train.depth",
                bytes: mul(&[batch, width.max(input).max(output), depth, F32, 2]),
            },
            CostItem {
                what: "data shard",
                fields: "spec.train.dataset_samples / world size × (input_dim + output_dim)",
                bytes: mul(&[shard, sample_bytes]),
            },
            CostItem {
                what: "evaluation set and its activations",
                fields: "spec.train.eval_samples × (input_dim + output_dim, width × depth)",
                bytes: mul(&[eval, sample_bytes]).saturating_add(mul(&[
                    eval,
                    width.max(output),
                    depth,
                    F32,
                ])),
            },
        ],
        result_bytes: RESULT_BASE_BYTES.saturating_add(mul(&[evals, RESULT_BYTES_PER_EVAL])),
        traffic_bytes: mul(&[student, F32, 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    fn train(t: TrainJob) -> JobSpec {
        JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::Train(t)),
        }
    }

    #[test]
    fn the_default_train_job_fits_the_default_budget() {
        let cost = job_cost(
            &train(TrainJob {
                steps: 100,
                ..TrainJob::default()
            }),
            4,
        );
        assert_eq!(cost.check(&NodeBudget::default()), Ok(()));
        assert!(cost.memory_bytes() < 64 << 20, "{cost:?}");
    }

    #[test]
    fn the_poison_teacher_is_refused_naming_its_fields() {
        let cost = job_cost(
            &train(TrainJob {
                steps: 10,
                teacher_width: 65_536,
                teacher_depth: 64,
                ..TrainJob::default()
            }),
            4,
        );
        let err = cost.check(&NodeBudget::default()).unwrap_err();
        assert!(err.fields().contains("teacher_width"), "{err}");
        // 65536² × 63 layers of f32: the 1 TB allocation that aborted every node.
        assert!(cost.memory_bytes() > 1_000_000_000_000, "{cost:?}");
        assert!(err.to_string().contains("1008.0 GiB"), "{err}");
    }

    #[test]
    fn the_poison_eval_set_is_refused_naming_its_fields() {
        let cost = job_cost(
            &train(TrainJob {
                steps: 10,
                eval_samples: 1 << 20,
                input_dim: 2048,
                ..TrainJob::default()
            }),
            4,
        );
        let err = cost.check(&NodeBudget::default()).unwrap_err();
        assert!(err.fields().contains("eval_samples"), "{err}");
    }

    #[test]
    fn absurd_values_saturate_instead_of_overflowing() {
        let cost = job_cost(
            &train(TrainJob {
                steps: u64::MAX,
                width: u32::MAX,
                depth: u32::MAX,
                input_dim: u32::MAX,
                output_dim: u32::MAX,
                batch_size: u32::MAX,
                dataset_samples: u64::MAX,
                ..TrainJob::default()
            }),
            0,
        );
        assert_eq!(cost.memory_bytes(), u64::MAX);
        let all_reduce = JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
                min_bytes: 1,
                max_bytes: u64::MAX,
                factor: 2,
                iterations: u32::MAX,
                warmup: u32::MAX,
                collective_algorithms: vec![v1::Algorithm::Ring as i32],
                check: true,
                ..AllReduceJob::default()
            })),
        };
        assert!(
            job_cost(&all_reduce, 2)
                .check(&NodeBudget::default())
                .is_err()
        );
    }

    #[test]
    fn a_64_gib_all_reduce_is_refused_and_a_small_one_fits() {
        let spec = |max_bytes| JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
                min_bytes: 4,
                max_bytes,
                factor: 2,
                iterations: 5,
                warmup: 1,
                collective_algorithms: vec![v1::Algorithm::Ring as i32, v1::Algorithm::Auto as i32],
                check: true,
                ..AllReduceJob::default()
            })),
        };
        let err = job_cost(&spec(64 << 30), 4)
            .check(&NodeBudget::default())
            .unwrap_err();
        assert_eq!(err.fields(), "spec.all_reduce.max_bytes");
        assert!(err.to_string().contains("192.0 GiB"), "{err}");
        assert_eq!(
            job_cost(&spec(64 << 20), 4).check(&NodeBudget::default()),
            Ok(())
        );
    }

    #[test]
    fn a_result_too_large_for_a_report_is_refused() {
        let cost = job_cost(
            &train(TrainJob {
                steps: 10_000_000,
                eval_every: 1,
                ..TrainJob::default()
            }),
            4,
        );
        let err = cost.check(&NodeBudget::default()).unwrap_err();
        assert!(matches!(err, OverBudget::Result { .. }), "{err}");
    }
}
