//! The train job on a node: the controller's `TrainJob` run as one rank of a real training
//! run over the QUIC fabric, with commits on disk and recovery after a re-plan.
//!
//! One attempt of a job on this node:
//! 1. [`train_config`] turns the job (zero fields take the shared defaults of
//!    `TrainJob::resolved`) into a [`TrainConfig`]; the plan's data shard and parameter count
//!    are checked against it, so controller and node cannot silently disagree.
//! 2. The job's mesh is connected ([`crate::jobs::job_mesh`]).
//! 3. Resuming from committed step S > 0 (the controller re-planned after a node died, or
//!    grew the job for a replacement): every rank agrees on the commit of step S — its own
//!    from disk, or fetched from a peer in its site ([`recovery::agree_on_commit`]).
//! 4. [`train_node`] trains. Commits go to `<state dir>/train/<job id>/step-<S>.ckpt`; every
//!    step's progress (step, committed step, losses) is reported to the controller, coalesced
//!    so a slow control plane (2.56 s round trip to the Moon) never holds training up.
//! 5. The result is a [`NodeTrainResult`] sent as the contract's `TrainResult`; a client
//!    combines the ranks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use spacefabric_proto::v1::{TrainJob, job_spec};

use crate::agent::{JobContext, JobError, JobOutput, JobRunner, Progress};
use crate::collective::Algorithm;
use crate::jobs::job_mesh::{FabricSettings, JobMeshError, JobPlacement, connect_mesh};
use crate::train::fabric::{LinkBytes, MeteredExchange, job_groups};
use crate::train::recovery::{self, StateSource};
use crate::train::{
    Activation, CommitSink, CompressionConfig, DirCommits, LrSchedule, MlpSpec, ModelConfig,
    NodeContext, OptimizerConfig, StrategyConfig, StrategyKind, TaskSpec, TrafficMeter,
    TrainConfig, TrainError, TrainProgress, train_node,
};
use spacefabric_proto::train_job::defaults;
use spacefabric_proto::wire_enum::{WireEnum, WireEnumError};

/// Why a train job failed on this node.
#[derive(Debug, thiserror::Error)]
pub enum TrainJobError {
    /// The job's spec is not a train job.
    #[error("train spec: not a train job")]
    NotTrain,
    /// The strategy is unset or unknown to this node.
    #[error("train spec: strategy: {0}")]
    Strategy(#[source] WireEnumError),
    /// The activation is unknown to this node.
    #[error("train spec: hidden_activation: {0}")]
    Activation(#[source] WireEnumError),
    /// A size field does not fit this machine's `usize`.
    #[error("train spec: {field} {value} is too large")]
    TooLarge {
        /// The `TrainJob` field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// The `model` preset could not be built.
    #[error("train spec: model: {0}")]
    Model(TrainError),
    /// The `accelerator` names no preset.
    #[error("train spec: accelerator: unknown preset {name:?}")]
    Accelerator {
        /// The name in the spec.
        name: String,
    },
    /// The plan's parameter count is not the job's model's.
    #[error("job plan: param_len {planned} but the job's model has {model} parameters")]
    ParamLen {
        /// `JobPlan.param_len`.
        planned: u64,
        /// Parameters of the model the job describes.
        model: usize,
    },
    /// The plan has no data shard for this rank.
    #[error("job plan: no data shard for rank {rank}")]
    NoDataShard {
        /// This node's rank.
        rank: usize,
    },
    /// The plan's data shard for this rank is empty or outside the data set.
    #[error(
        "job plan: data shard {shard:?} of rank {rank} is empty or outside the job's {samples} samples"
    )]
    DataShard {
        /// This node's rank.
        rank: usize,
        /// `JobPlan.data_shards[rank]`.
        shard: std::ops::Range<u64>,
        /// Samples in the job's data set.
        samples: u64,
    },
    /// The plan's algorithm is unknown to this node.
    #[error("job plan: collective_algorithms[0]: {0}")]
    Algorithm(#[source] WireEnumError),
    /// The sharded strategy's plan has no parameter shard for this rank, or one outside the
    /// model's parameters.
    #[error(
        "job plan: param_shards: rank {rank}'s parameter shard {planned:?} is not a range of the model's {parameters} parameters"
    )]
    ParamShard {
        /// This node's rank.
        rank: usize,
        /// `JobPlan.param_shards[rank]` (absent: none for this rank).
        planned: Option<std::ops::Range<u64>>,
        /// Parameters of the model.
        parameters: usize,
    },
    /// The job's mesh could not be built.
    #[error(transparent)]
    Fabric(#[from] JobMeshError),
    /// Training (or recovery) failed.
    #[error("training: {0}")]
    Train(#[from] TrainError),
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// One point of the held-out loss curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Steps completed.
    pub step: u64,
    /// Seconds since this attempt's training started.
    pub elapsed_s: f64,
    /// Held-out mean squared error.
    pub loss: f64,
    /// Payload bytes this node had sent per link class.
    pub bytes: Vec<(String, u64)>,
}

/// What one rank reports for a train job (sent as the contract's `TrainResult`, see
/// [`crate::jobs::result_messages`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeTrainResult {
    /// This node's rank in the attempt's plan.
    pub rank: usize,
    /// Ranks in the attempt.
    pub world_size: usize,
    /// This node's site.
    pub site: String,
    /// Every rank's site, by rank.
    pub sites_by_rank: Vec<String>,
    /// The strategy that trained.
    pub strategy: StrategyKind,
    /// The attempt that finished (1 = no restart).
    pub attempt: u32,
    /// The committed step this attempt resumed from (0 = from scratch).
    pub resumed_from_step: u64,
    /// Where the resumed state came from.
    pub state_source: StateSource,
    /// Seconds from the attempt's start to the first training step (mesh, recovery).
    pub startup_s: f64,
    /// Steps completed (including resumed ones).
    pub steps: u64,
    /// Collective rounds this node took part in during this attempt.
    pub syncs: u64,
    /// Parameters of the model.
    pub parameters: usize,
    /// Held-out loss curve of this attempt (the evaluating rank only).
    pub curve: Vec<CurvePoint>,
    /// The last held-out loss (evaluating rank only).
    pub final_loss: Option<f64>,
    /// Seconds of real computation on this machine.
    pub real_compute_s: f64,
    /// Seconds of declared compute (`step_time`).
    pub declared_compute_s: f64,
    /// Seconds inside collectives.
    pub comm_s: f64,
    /// Seconds evaluating.
    pub eval_s: f64,
    /// Seconds of training in this attempt.
    pub wall_s: f64,
    /// Payload bytes this node sent per link class in this attempt.
    pub bytes: Vec<(String, u64)>,
    /// This node's bytes per link class at every curve step: (step, bytes).
    pub bytes_curve: Vec<(u64, Vec<(String, u64)>)>,
}

/// The training run a job describes, as [`train_node`] takes it.
pub fn train_config(job: &TrainJob) -> Result<TrainConfig, TrainJobError> {
    let j = job.resolved();
    let kind = StrategyKind::from_wire(j.strategy).map_err(TrainJobError::Strategy)?;
    let usize_of = |field: &'static str, value: u32| {
        usize::try_from(value).map_err(|_| TrainJobError::TooLarge { field, value })
    };
    let model = if j.model == defaults::MODEL {
        let activation =
            Activation::from_wire(j.hidden_activation).map_err(TrainJobError::Activation)?;
        let input = usize_of("input_dim", j.input_dim)?;
        let output = usize_of("output_dim", j.output_dim)?;
        ModelConfig::Mlp {
            spec: MlpSpec {
                input,
                width: usize_of("width", j.width)?,
                depth: usize_of("depth", j.depth)?,
                output,
                activation,
            },
            task: TaskSpec {
                seed: j.seed,
                input,
                output,
                teacher_width: usize_of("teacher_width", j.teacher_width)?,
                teacher_depth: usize_of("teacher_depth", j.teacher_depth)?,
                noise: 0.0,
            },
        }
    } else {
        ModelConfig::lm_preset(&j.model, j.seed)
            .map_err(TrainJobError::Model)?
            .0
    };
    // AdamW; for a transformer β2 = 0.99, nanoGPT's Shakespeare setting (small data, so a
    // shorter second-moment memory).
    let inner = OptimizerConfig::AdamW {
        lr: j.lr,
        beta1: 0.9,
        beta2: if j.lm_preset().is_some() { 0.99 } else { 0.999 },
        eps: 1e-8,
        weight_decay: j.weight_decay,
    };
    let step_time = match spacefabric_proto::train_job::Accelerator::find(&j.accelerator) {
        Some(acc) => Duration::from_secs_f64(acc.step_seconds(j.flops_per_step())),
        None if j.accelerator.is_empty() => Duration::from_millis(j.step_time_ms),
        None => {
            return Err(TrainJobError::Accelerator {
                name: j.accelerator.clone(),
            });
        }
    };
    Ok(TrainConfig {
        model,
        batch: usize_of("batch_size", j.batch_size)?,
        total_samples: j.dataset_samples,
        steps: j.steps,
        strategy: StrategyConfig {
            kind,
            inner,
            inner_steps: u64::from(j.inner_steps),
            outer_lr: j.outer_lr.unwrap_or(defaults::OUTER_LR),
            outer_momentum: j.outer_momentum.unwrap_or(defaults::OUTER_MOMENTUM),
            commit_every: u64::from(j.commit_every),
            schedule: LrSchedule {
                warmup: u64::from(j.warmup_steps),
                decay_steps: u64::from(j.lr_decay_steps),
                min_ratio: j.min_lr_ratio,
            },
            grad_clip: j.grad_clip,
            fragments: usize_of("fragments", j.fragments)?,
            overlap: u64::from(j.overlap_steps),
            mixing: j.mixing,
            compression: (j.compress_density > 0.0).then_some(CompressionConfig {
                density: j.compress_density,
                bits: j.compress_bits,
                error_feedback: j.error_feedback.unwrap_or(true),
            }),
        },
        step_time,
        eval_every: u64::from(j.eval_every),
        eval_samples: usize_of("eval_samples", j.eval_samples)?,
        init_seed: j.seed.wrapping_add(0x5eed),
    })
}

/// Runs train jobs on this node's fabric address, committing under a state directory.
#[derive(Debug, Clone)]
pub struct TrainRunner {
    fabric: FabricSettings,
    state_dir: PathBuf,
}

impl TrainRunner {
    /// A runner whose meshes are built as `fabric` says and whose commits go under
    /// `state_dir`.
    pub fn new(fabric: FabricSettings, state_dir: PathBuf) -> Self {
        Self { fabric, state_dir }
    }

    async fn run_job(&self, ctx: &JobContext) -> Result<NodeTrainResult, TrainJobError> {
        let started = tokio::time::Instant::now();
        let Some(job_spec::Kind::Train(job)) = &ctx.spec.kind else {
            return Err(TrainJobError::NotTrain);
        };
        let cfg = train_config(job)?;
        let placement = JobPlacement::from_job(ctx)?;
        let rank = placement.rank;
        let world = placement.peers.len();
        let parameters = cfg.model.param_count()?;
        if ctx.plan.param_len != parameters as u64 {
            return Err(TrainJobError::ParamLen {
                planned: ctx.plan.param_len,
                model: parameters,
            });
        }
        let data_shard = ctx
            .plan
            .data_shards
            .iter()
            .find(|s| s.rank as usize == rank)
            .map(|s| s.start..s.end)
            .ok_or(TrainJobError::NoDataShard { rank })?;
        if data_shard.end > cfg.total_samples || data_shard.is_empty() {
            return Err(TrainJobError::DataShard {
                rank,
                shard: data_shard,
                samples: cfg.total_samples,
            });
        }
        // An empty list (a plan from before the field) means auto, as it always did.
        let algorithm = match ctx.plan.collective_algorithms.first() {
            Some(&a) => Algorithm::from_wire(a).map_err(TrainJobError::Algorithm)?,
            None => Algorithm::Auto,
        };

        let commits = DirCommits::new(&self.state_dir.join("train").join(&ctx.job_id))?;
        if ctx.resume_from_step == 0 {
            // A fresh start: commits of an earlier run under the same job id are not ours.
            commits.clear()?;
        }
        let config = placement.mesh_config(ctx, &self.fabric)?;
        let mesh = Arc::new(connect_mesh(ctx, config).await?);
        let (resume, state_source) = if ctx.resume_from_step > 0 {
            let mine = commits.load(ctx.resume_from_step)?;
            let (ck, source) = recovery::agree_on_commit(
                &*mesh,
                &placement.sites_by_rank,
                ctx.resume_from_step,
                mine,
            )
            .await?;
            if source != StateSource::OwnCommit {
                // Keep it, so this node can serve it (or resume from it) too.
                commits.commit(rank, &ck)?;
            }
            (Some(ck), source)
        } else {
            (None, StateSource::Fresh)
        };
        if let StateSource::Peer {
            rank: donor,
            site,
            bytes,
        } = &state_source
        {
            tracing::info!(job_id = %ctx.job_id, rank, donor, %site, bytes, "state fetched from a peer");
        }

        let meter = Arc::new(LinkBytes::new(&placement.sites_by_rank));
        let exchange = Arc::new(MeteredExchange::new(Arc::clone(&mesh), Arc::clone(&meter)));
        let groups = job_groups(
            exchange,
            &placement.profile,
            &placement.site_of_rank,
            cfg.strategy.kind == StrategyKind::Hierarchical,
            algorithm,
        )?;
        // The sharded strategy updates the parameter shard the plan hands this rank (cut by
        // the contract's `shard_of_len`, as the collectives' reduce-scatter is: `train_node`
        // checks that in debug builds).
        let param_shard = if cfg.strategy.kind == StrategyKind::Sharded {
            let planned = ctx
                .plan
                .param_shards
                .iter()
                .find(|s| s.rank as usize == rank)
                .map(|s| s.start..s.end);
            let shard = planned.clone().and_then(|p| {
                let (start, end) = (usize::try_from(p.start).ok()?, usize::try_from(p.end).ok()?);
                (start <= end && end <= parameters).then_some(start..end)
            });
            Some(shard.ok_or(TrainJobError::ParamShard {
                rank,
                planned,
                parameters,
            })?)
        } else {
            None
        };
        let (tx, mut rx) = tokio::sync::watch::channel(TrainProgress::default());
        let control = ctx.control.clone();
        let total_steps = cfg.steps;
        let reporter = tokio::spawn(async move {
            // Coalesces: while one report is on its way, newer progress replaces older.
            while rx.changed().await.is_ok() {
                let p = *rx.borrow_and_update();
                let mut metrics = HashMap::new();
                if p.train_loss.is_finite() {
                    metrics.insert("train_loss".to_string(), p.train_loss);
                }
                if p.eval_loss.is_finite() {
                    metrics.insert("loss".to_string(), p.eval_loss);
                }
                control
                    .report_progress(Progress {
                        step: p.step,
                        total_steps,
                        committed_step: p.committed_step,
                        message: format!("step {} committed {}", p.step, p.committed_step),
                        metrics,
                    })
                    .await;
            }
        });
        let startup = ctx.scenario.time_dilation.emulated(started.elapsed());
        let node_ctx = NodeContext {
            evaluate: rank == 0,
            commits: Some(Arc::new(commits) as Arc<dyn CommitSink>),
            meter: Some(Arc::clone(&meter) as Arc<dyn TrafficMeter>),
            resume,
            data_shard: Some(data_shard),
            param_shard,
            progress: Some(tx),
            time_dilation: ctx.scenario.time_dilation,
        };
        let trained = train_node(&cfg, &groups, node_ctx).await;
        // The progress sender went with the context: deliver the last report before the
        // result.
        let _ = reporter.await;
        drop(groups);
        if let Ok(mesh) = Arc::try_unwrap(mesh) {
            mesh.close().await;
        }
        let report = trained?;
        Ok(NodeTrainResult {
            rank,
            world_size: world,
            site: ctx.scenario.site.clone(),
            sites_by_rank: placement.sites_by_rank.clone(),
            strategy: cfg.strategy.kind,
            attempt: ctx.attempt,
            resumed_from_step: ctx.resume_from_step,
            state_source,
            startup_s: startup.as_secs_f64(),
            steps: report.steps,
            syncs: report.syncs,
            parameters,
            final_loss: report.final_loss(),
            curve: report
                .curve
                .iter()
                .map(|p| CurvePoint {
                    step: p.step,
                    elapsed_s: p.elapsed.as_secs_f64(),
                    loss: p.loss,
                    bytes: p.bytes.clone(),
                })
                .collect(),
            real_compute_s: report.real_compute.as_secs_f64(),
            declared_compute_s: report.declared_compute.as_secs_f64(),
            comm_s: report.comm.as_secs_f64(),
            eval_s: report.eval.as_secs_f64(),
            wall_s: report.wall.as_secs_f64(),
            bytes: meter.snapshot(),
            bytes_curve: report.bytes_curve,
        })
    }
}

impl JobRunner for TrainRunner {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let runner = self.clone();
        Box::pin(async move {
            let outcome = tokio::select! {
                r = runner.run_job(&ctx) => r,
                () = ctx.cancel.cancelled() => Err(TrainJobError::Cancelled),
            };
            let result = outcome.map_err(|e| {
                tracing::warn!(job_id = %ctx.job_id, rank = ctx.rank, error = %e, "train job failed");
                JobError::from(e)
            })?;
            let mut metrics = HashMap::new();
            metrics.insert("steps".to_string(), result.steps as f64);
            if let Some(loss) = result.final_loss {
                metrics.insert("final_loss".to_string(), loss);
            }
            metrics.insert(
                "resumed_from_step".to_string(),
                result.resumed_from_step as f64,
            );
            Ok(JobOutput {
                result: Some(result.to_job_result()),
                metrics,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_becomes_a_config_with_the_shared_defaults() {
        let job = TrainJob {
            strategy: StrategyKind::Diloco.to_wire(),
            steps: 50,
            outer_momentum: Some(0.0),
            step_time_ms: 10,
            ..TrainJob::default()
        };
        let cfg = train_config(&job).unwrap();
        assert_eq!(cfg.strategy.kind, StrategyKind::Diloco);
        assert_eq!(cfg.strategy.outer_momentum, 0.0);
        assert_eq!(cfg.strategy.outer_lr, 0.7);
        assert_eq!(cfg.step_time, Duration::from_millis(10));
        let params = cfg.model.param_count().unwrap();
        assert_eq!(params as u64, job.parameter_count());
        let unset = TrainJob {
            strategy: 0,
            ..job.clone()
        };
        assert!(train_config(&unset).is_err());
        let bad = TrainJob {
            strategy: 17,
            ..job
        };
        assert_eq!(
            train_config(&bad).unwrap_err().to_string(),
            "train spec: strategy: unknown value 17"
        );
    }
}
