//! Training strategies: how the ranks of a job keep one model while each trains on its own
//! data shard, and what they send each other to do it.
//!
//! - `sync`: every step, all-reduce (mean) the gradients, then every rank takes the same
//!   optimiser step — data-parallel SGD/AdamW; one collective per step.
//! - `sharded`: every step, reduce-scatter the gradients; each rank updates only its own
//!   parameter shard (and keeps optimiser state only for it), then all-gather the parameters.
//! - `diloco`: H local (inner, AdamW) steps, then all-reduce the parameter delta
//!   `global − local` and take an outer Nesterov step on the global model (lr 0.7, μ 0.9 in
//!   the DiLoCo papers); one collective per H steps.
//! - `hierarchical`: sync inside a site every step (fast local links), DiLoCo across sites:
//!   at each outer step the site leaders all-reduce their site's delta over the slow links and
//!   broadcast it inside their site.
//!
//! Strategies talk to their peers only through [`GradientSync`], a group of ranks offering the
//! four collectives they need; `fabric::CollectiveGroup` adapts the collective module's `Exchange` to
//! it. Large steps compute on tokio's blocking pool so a node's network I/O is never starved
//! by its matrix multiplications (small ones inline). `step_time` adds a *declared* compute
//! time per step on top of the real computation (slept on the tokio clock before the node
//! next talks to its peers, so timer rounding is paid once per collective, not per step): a
//! run on a slow machine can stand for fast hardware; the report keeps real and declared
//! compute apart.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use spacefabric_proto::time_dilation::TimeDilation;
use tracing::Instrument;

use super::checkpoint::{Checkpoint, CommitSink};
use super::compress::{CompressionConfig, Compressor, mean_of_payloads};
use super::optim::{LrSchedule, Optimizer, OptimizerConfig, OptimizerState, clip_grad_norm};
use super::plan;
use super::workload::{Evaluation, ModelConfig, Workload};
use super::{ConfigError, ShapeError, SyncMissing, TrainError};

/// The collectives a strategy needs from a group of ranks. Every member of the group calls
/// the same operations in the same order with vectors of the same length.
pub trait GradientSync: Send + Sync {
    /// This member's index in the group.
    fn rank(&self) -> usize;
    /// Members in the group.
    fn world_size(&self) -> usize;
    /// The slice of a `len`-element vector this member owns after
    /// [`reduce_scatter_mean`](Self::reduce_scatter_mean) and contributes to
    /// [`all_gather`](Self::all_gather): the contract's
    /// [`shard_of_len`](spacefabric_proto::shard::shard_of_len), which is also the collectives'
    /// reduce-scatter span and the parameter shard the controller's plan hands out.
    fn shard_range(&self, len: usize) -> Range<usize> {
        spacefabric_proto::shard::shard_of_len(len, self.world_size(), self.rank())
    }
    /// Replaces `data` with the element-wise mean over the group.
    fn all_reduce_mean(
        &self,
        data: &mut [f32],
    ) -> impl Future<Output = Result<(), TrainError>> + Send;
    /// Leaves the group mean of this member's [`shard_range`](Self::shard_range) in that
    /// range of `data`; the rest of `data` is unspecified afterwards.
    fn reduce_scatter_mean(
        &self,
        data: &mut [f32],
    ) -> impl Future<Output = Result<(), TrainError>> + Send;
    /// Each member contributes its shard range of `data`; afterwards every member holds all
    /// of them.
    fn all_gather(&self, data: &mut [f32]) -> impl Future<Output = Result<(), TrainError>> + Send;
    /// Replaces `data` with member `root`'s.
    fn broadcast(
        &self,
        root: usize,
        data: &mut [f32],
    ) -> impl Future<Output = Result<(), TrainError>> + Send;
}

/// Bytes sent so far per link class (e.g. `earth-moon`, `intra-earth`), for loss-vs-bytes.
pub trait TrafficMeter: Send + Sync {
    /// A snapshot of the counters, one entry per link class.
    fn snapshot(&self) -> Vec<(String, u64)>;
}

/// Which strategy: the job vocabulary's [`Strategy`](spacefabric_proto::train_names::Strategy)
/// (names, alias and meaning said once, in the proto crate).
pub use spacefabric_proto::train_names::Strategy as StrategyKind;

/// A strategy and its hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyConfig {
    /// Which strategy.
    pub kind: StrategyKind,
    /// The per-step (inner) optimiser.
    pub inner: OptimizerConfig,
    /// H: inner steps per outer step (DiLoCo, hierarchical).
    pub inner_steps: u64,
    /// Outer Nesterov learning rate (DiLoCo: 0.7).
    pub outer_lr: f32,
    /// Outer Nesterov momentum (DiLoCo: 0.9).
    pub outer_momentum: f32,
    /// Sync and sharded commit their state every this many steps (outer strategies commit
    /// at every outer step).
    pub commit_every: u64,
    /// Learning-rate schedule of the inner optimiser (default: constant).
    pub schedule: LrSchedule,
    /// Clip the gradient's L2 norm to this before the inner step (0 = off). Sharded clips
    /// each rank's shard of the gradient (no extra collective for the global norm).
    pub grad_clip: f32,
    /// Streaming: parameter fragments (contiguous, equal ranges of the flat vector), one
    /// synchronised every `inner_steps / fragments` steps.
    pub fragments: usize,
    /// Streaming: τ, inner steps a fragment's synchronisation overlaps before it is merged
    /// (must be below `inner_steps / fragments`).
    pub overlap: u64,
    /// Streaming: α, the local fragment's weight when merging (0 = take the global one).
    pub mixing: f32,
    /// Compressed outer gradients (diloco, hier, streaming, delayed); `None` = plain f32.
    pub compression: Option<CompressionConfig>,
}

impl StrategyConfig {
    /// `kind` with AdamW(lr) inner steps and DiLoCo's outer defaults (H = 50, lr 0.7,
    /// μ 0.9); commits every 10 steps for sync and sharded.
    pub fn new(kind: StrategyKind, inner_lr: f32) -> Self {
        Self {
            kind,
            inner: OptimizerConfig::adamw(inner_lr),
            inner_steps: 50,
            outer_lr: 0.7,
            outer_momentum: 0.9,
            commit_every: 10,
            schedule: LrSchedule::default(),
            grad_clip: 0.0,
            fragments: 1,
            overlap: 0,
            mixing: 0.0,
            compression: None,
        }
    }
}

/// A training job as one node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The model and its data (the MLP on the teacher task, or the transformer LM on the
    /// corpus).
    pub model: ModelConfig,
    /// Samples (MLP) or windows of `ctx` tokens (LM) per step on each node.
    pub batch: usize,
    /// Training samples (MLP) or characters of training text (LM) in the whole job, split
    /// into data shards by [`plan::data_shard`].
    pub total_samples: u64,
    /// Steps (inner steps for the outer strategies) to run.
    pub steps: u64,
    /// Strategy and hyper-parameters.
    pub strategy: StrategyConfig,
    /// Declared compute time added to every step (zero = real compute only).
    pub step_time: Duration,
    /// Sync and sharded evaluate every this many steps (outer strategies at every outer step).
    pub eval_every: u64,
    /// Held-out samples (MLP) or validation windows (LM) used for the evaluation loss.
    pub eval_samples: usize,
    /// Seed of the initial parameters (identical on every node).
    pub init_seed: u64,
}

/// The groups one node belongs to.
#[derive(Debug)]
pub struct Groups<S> {
    /// Every rank of the job.
    pub world: S,
    /// The ranks of this node's site (hierarchical only; this node's index in it must be 0
    /// for the site leader).
    pub site: Option<S>,
    /// One rank per site, present only on site leaders (hierarchical only).
    pub leaders: Option<S>,
}

/// What a node brings besides the job: where commits go, how bytes are counted, whether it
/// evaluates, and the state to resume from.
#[derive(Default)]
pub struct NodeContext {
    /// This node evaluates the held-out loss (one node per job is enough: the synchronised
    /// model is the same everywhere).
    pub evaluate: bool,
    /// Receives this node's commits.
    pub commits: Option<Arc<dyn CommitSink>>,
    /// Counts bytes per link class.
    pub meter: Option<Arc<dyn TrafficMeter>>,
    /// Resume from this commit instead of step 0.
    pub resume: Option<Checkpoint>,
    /// This node's data shard (sample indices) as the controller's plan hands it out; `None`:
    /// [`plan::data_shard`] of the job's samples over the world, the same arithmetic.
    pub data_shard: Option<Range<u64>>,
    /// The sharded strategy's parameter shard (indices into the flat parameter vector) as the
    /// controller's plan hands it out; `None`: [`GradientSync::shard_range`] of the world
    /// group, the same contract function. Unused by the other strategies.
    pub param_shard: Option<Range<usize>>,
    /// Receives the step, the last commit and the latest losses as training goes.
    pub progress: Option<tokio::sync::watch::Sender<TrainProgress>>,
    /// The cluster's time dilation K (default 1): declared compute is slept K times longer
    /// on the wall clock, and every measured time in the report is divided by K
    /// ([`NodeReport::measured_in_emulated_time`]).
    pub time_dilation: TimeDilation,
}

/// Where a node's training is, published on [`NodeContext::progress`] after every step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrainProgress {
    /// Steps completed.
    pub step: u64,
    /// Steps the last commit holds.
    pub committed_step: u64,
    /// Training loss of the last step.
    pub train_loss: f64,
    /// Last held-out loss (evaluating node only; NaN before the first evaluation).
    pub eval_loss: f64,
}

impl std::fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContext")
            .field("evaluate", &self.evaluate)
            .field("commits", &self.commits.is_some())
            .field("meter", &self.meter.is_some())
            .field("resume", &self.resume.as_ref().map(|c| c.step))
            .field("data_shard", &self.data_shard)
            .field("param_shard", &self.param_shard)
            .field("progress", &self.progress.is_some())
            .field("time_dilation", &self.time_dilation)
            .finish()
    }
}

/// One evaluation of the synchronised model.
#[derive(Debug, Clone, PartialEq)]
pub struct LossPoint {
    /// Steps completed.
    pub step: u64,
    /// Time since this node started training (emulated time: tokio's clock divided by the
    /// time dilation K).
    pub elapsed: Duration,
    /// Held-out mean squared error.
    pub loss: f64,
    /// Bytes sent so far per link class (from the meter; empty without one).
    pub bytes: Vec<(String, u64)>,
}

/// What one node measured.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    /// Steps completed (including resumed ones).
    pub steps: u64,
    /// Collective rounds this node took part in (all-reduces, reduce-scatter + all-gather
    /// pairs, outer syncs).
    pub syncs: u64,
    /// Held-out loss curve (only on the evaluating node).
    pub curve: Vec<LossPoint>,
    /// Bytes sent so far per link class at every curve step (every node with a meter), so a
    /// client can add up the cluster's bytes at each point of the evaluating node's curve.
    pub bytes_curve: Vec<(u64, Vec<(String, u64)>)>,
    /// Mean training loss over the last outer step / eval interval, per curve point.
    pub train_loss: Vec<f64>,
    /// Real computation (forward, backward, optimiser) on this machine.
    pub real_compute: Duration,
    /// Declared compute added by `step_time`.
    pub declared_compute: Duration,
    /// Time spent in collectives.
    pub comm: Duration,
    /// Time spent evaluating.
    pub eval: Duration,
    /// Total time of the run on this node.
    pub wall: Duration,
    /// The final synchronised parameters.
    pub params: Vec<f32>,
}

impl NodeReport {
    /// Time at which the held-out loss first reached `target`.
    pub fn time_to(&self, target: f64) -> Option<Duration> {
        self.curve
            .iter()
            .find(|p| p.loss <= target)
            .map(|p| p.elapsed)
    }

    /// The last evaluated loss.
    pub fn final_loss(&self) -> Option<f64> {
        self.curve.last().map(|p| p.loss)
    }

    /// The report with every time measured on tokio's or the host's clock (compute,
    /// collectives, evaluation, the run, the curve's instants) divided by the time dilation
    /// K: under dilation the host is K times faster in emulated time. Declared compute is
    /// emulated time already and stays.
    pub fn measured_in_emulated_time(mut self, k: TimeDilation) -> Self {
        self.real_compute = k.emulated(self.real_compute);
        self.comm = k.emulated(self.comm);
        self.eval = k.emulated(self.eval);
        self.wall = k.emulated(self.wall);
        for p in &mut self.curve {
            p.elapsed = k.emulated(p.elapsed);
        }
        self
    }
}

/// The state that moves between the async task and the blocking compute pool.
#[derive(Debug)]
struct Worker {
    work: Workload,
    batch: usize,
    params: Vec<f32>,
    grad: Vec<f32>,
    inner: Optimizer,
    inner_range: Range<usize>,
    schedule: LrSchedule,
    grad_clip: f32,
    /// Compute on the async task itself (small steps) rather than the blocking pool.
    inline: bool,
}

impl Worker {
    fn compute_grad(&mut self, step: u64) -> Result<f64, TrainError> {
        self.work
            .loss_and_grad(&self.params, step, self.batch, &mut self.grad)
    }

    fn apply_inner(&mut self) -> Result<(), TrainError> {
        let r = self.inner_range.clone();
        clip_grad_norm(&mut self.grad[r.clone()], self.grad_clip);
        let scale = self.schedule.factor(self.inner.state().t + 1);
        self.inner
            .step_scaled(&mut self.params[r.clone()], &self.grad[r], scale)
    }
}

/// Runs `f` on the worker: inline when a step is small (a blocking-pool hand-off would cost
/// more than the work), on tokio's blocking pool otherwise so the node's network I/O is never
/// starved by its matrix multiplications.
async fn on_blocking<R, F>(mut worker: Box<Worker>, f: F) -> Result<(Box<Worker>, R), TrainError>
where
    R: Send + 'static,
    F: FnOnce(&mut Worker) -> R + Send + 'static,
{
    if worker.inline {
        let r = f(&mut worker);
        return Ok((worker, r));
    }
    tokio::task::spawn_blocking(move || {
        let mut worker = worker;
        let r = f(&mut worker);
        (worker, r)
    })
    .await
    .map_err(TrainError::Join)
}

/// Runs `cfg` on this node over `groups` until `cfg.steps` steps are done; returns what it
/// measured. Every node of the job calls this with the same `cfg`.
pub async fn train_node<S: GradientSync>(
    cfg: &TrainConfig,
    groups: &Groups<S>,
    ctx: NodeContext,
) -> Result<NodeReport, TrainError> {
    let span = tracing::info_span!(
        "train",
        rank = groups.world.rank(),
        strategy = cfg.strategy.kind.name()
    );
    train_node_inner(cfg, groups, ctx).instrument(span).await
}

async fn train_node_inner<S: GradientSync>(
    cfg: &TrainConfig,
    groups: &Groups<S>,
    mut ctx: NodeContext,
) -> Result<NodeReport, TrainError> {
    let kind = cfg.strategy.kind;
    let world = &groups.world;
    let (rank, world_size) = (world.rank(), world.world_size());
    if cfg.batch == 0 || (kind.has_outer_step() && cfg.strategy.inner_steps == 0) {
        return Err(ConfigError::StepSizes {
            batch: cfg.batch,
            inner_steps: cfg.strategy.inner_steps,
        }
        .into());
    }
    let site = match (kind, &groups.site) {
        (StrategyKind::Hierarchical, Some(site)) => Some(site),
        (StrategyKind::Hierarchical, None) => {
            return Err(ConfigError::NoSiteGroup.into());
        }
        _ => None,
    };
    tracing::info!(init_seed = cfg.init_seed, world_size, "training starts");

    let shard_range = ctx
        .data_shard
        .clone()
        .unwrap_or_else(|| plan::data_shard(cfg.total_samples, world_size, rank));
    if shard_range.is_empty() {
        return Err(ConfigError::EmptyRankShard {
            rank,
            samples: cfg.total_samples,
            world: world_size,
        }
        .into());
    }
    let (work, mut evaluator) = Workload::build(
        &cfg.model,
        shard_range,
        ctx.evaluate.then_some(cfg.eval_samples),
    )?;
    let len = work.param_count();

    let inner_range = if kind == StrategyKind::Sharded {
        let planned = ctx.param_shard.take();
        let shard = planned.clone().unwrap_or_else(|| world.shard_range(len));
        if shard.start > shard.end || shard.end > len {
            return Err(ConfigError::ParamShard {
                rank,
                shard,
                params: len,
            }
            .into());
        }
        // The world's reduce-scatter leaves the mean in `shard_range`; the plan is cut by the
        // same contract function, so a planned shard is that range.
        debug_assert!(
            planned.is_none_or(|p| p == world.shard_range(len)),
            "rank {rank}: the planned parameter shard {shard:?} is not the collectives' cut {:?}",
            world.shard_range(len)
        );
        shard
    } else {
        0..len
    };
    let outer_len = if kind.has_outer_step() { len } else { 0 };
    // The outer optimiser's fragments: one for the whole vector, or streaming's.
    let fragments = if kind == StrategyKind::Streaming {
        let p = cfg.strategy.fragments.max(1);
        if p > len || u64::try_from(p).map_or(true, |p| p > cfg.strategy.inner_steps) {
            return Err(ConfigError::Fragments {
                fragments: p,
                inner_steps: cfg.strategy.inner_steps,
                params: len,
            }
            .into());
        }
        plan::even_split(len as u64, p)
            .into_iter()
            .map(|r| r.start as usize..r.end as usize)
            .collect::<Vec<_>>()
    } else {
        std::iter::once(0..outer_len).collect()
    };
    let stride = cfg.strategy.inner_steps / fragments.len() as u64;
    if kind == StrategyKind::Streaming && cfg.strategy.overlap >= stride {
        return Err(ConfigError::Overlap {
            overlap: cfg.strategy.overlap,
            stride,
        }
        .into());
    }
    let outer_cfg = OptimizerConfig::nesterov(cfg.strategy.outer_lr, cfg.strategy.outer_momentum);
    let mut outer: Vec<Optimizer> = fragments
        .iter()
        .map(|r| Optimizer::new(outer_cfg, r.len()))
        .collect();
    let mut compressors = match (&cfg.strategy.compression, kind.has_outer_step()) {
        (Some(c), true) => fragments
            .iter()
            .map(|r| Compressor::new(*c, r.len()))
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let mut inner = Optimizer::new(cfg.strategy.inner, inner_range.len());
    let mut step = 0u64;
    let params = match ctx.resume.take() {
        Some(ck) => {
            if ck.params.len() != len {
                return Err(ShapeError::ResumeParams {
                    checkpoint: ck.params.len(),
                    model: len,
                }
                .into());
            }
            let mut state = ck.inner;
            // Sharded commits hold the whole (gathered) inner state; take this rank's shard,
            // which may differ from the committing rank's after a re-plan.
            if kind == StrategyKind::Sharded && state.first.len() == len {
                state.first = state.first[inner_range.clone()].to_vec();
                if state.second.len() == len {
                    state.second = state.second[inner_range.clone()].to_vec();
                }
            }
            inner.restore(state)?;
            if let Some(o) = ck.outer {
                restore_outer(&mut outer, &fragments, o)?;
            }
            step = ck.step;
            tracing::info!(step, "resuming from commit");
            ck.params
        }
        None => work.init_params(cfg.init_seed),
    };
    let mut global = if kind.has_outer_step() {
        params.clone()
    } else {
        Vec::new()
    };
    let mut delta = vec![0.0f32; outer_len];
    // The MLP's small steps compute inline; the transformer always on the blocking pool.
    let inline =
        len.saturating_mul(cfg.batch) < INLINE_WORK && matches!(cfg.model, ModelConfig::Mlp { .. });
    let mut worker = Box::new(Worker {
        work,
        batch: cfg.batch,
        grad: vec![0.0; len],
        params,
        inner,
        inner_range,
        schedule: cfg.strategy.schedule,
        grad_clip: cfg.strategy.grad_clip,
        inline,
    });

    // Start together: data generation and setup take different times on different nodes,
    // and that skew must not count as training time.
    world.all_reduce_mean(&mut [0.0]).await?;
    let mut report = NodeReport::default();
    let start = tokio::time::Instant::now();
    let mut progress = TrainProgress {
        step,
        committed_step: step,
        train_loss: f64::NAN,
        eval_loss: f64::NAN,
    };
    let mut train_losses = Vec::new();
    // The curve starts with the model we start from.
    evaluate(
        &mut evaluator,
        &mut report,
        &ctx,
        step,
        start,
        if kind.has_outer_step() {
            &global
        } else {
            &worker.params
        },
        f64::NAN,
    )?;

    // Declared compute not yet slept (see `settle`).
    let mut owed = Duration::ZERO;
    // Streaming / delayed: the outer synchronisation running under the inner steps.
    let mut inflight: Option<InFlight<'_>> = None;
    // Delayed: the point this round's delta is measured from.
    let mut anchor = if kind == StrategyKind::Delayed {
        worker.params.clone()
    } else {
        Vec::new()
    };
    while step < cfg.steps {
        let s = step;
        let (w, (loss, real)) = alongside(
            &mut inflight,
            on_blocking(worker, move |w| {
                let t0 = std::time::Instant::now();
                let loss = w.compute_grad(s);
                (loss, t0.elapsed())
            }),
        )
        .await?;
        worker = w;
        let loss = loss?;
        train_losses.push(loss);
        progress.train_loss = loss;
        report.real_compute += real;
        // Declared compute is emulated time: K times longer on tokio's clock.
        owed += ctx.time_dilation.wall(cfg.step_time);
        report.declared_compute += cfg.step_time;
        step += 1;
        let last = step == cfg.steps;

        let mut outer_boundary = false;
        match kind {
            StrategyKind::Sync => {
                settle(&mut owed).await;
                let t0 = tokio::time::Instant::now();
                world.all_reduce_mean(&mut worker.grad).await?;
                report.comm += t0.elapsed();
                report.syncs += 1;
                worker = apply_inner(worker, &mut report).await?;
            }
            StrategyKind::Sharded => {
                settle(&mut owed).await;
                let t0 = tokio::time::Instant::now();
                world.reduce_scatter_mean(&mut worker.grad).await?;
                report.comm += t0.elapsed();
                worker = apply_inner(worker, &mut report).await?;
                let t0 = tokio::time::Instant::now();
                world.all_gather(&mut worker.params).await?;
                report.comm += t0.elapsed();
                report.syncs += 1;
            }
            StrategyKind::Diloco | StrategyKind::Hierarchical => {
                if let Some(site) = site {
                    settle(&mut owed).await;
                    let t0 = tokio::time::Instant::now();
                    site.all_reduce_mean(&mut worker.grad).await?;
                    report.comm += t0.elapsed();
                }
                worker = apply_inner(worker, &mut report).await?;
                if step.is_multiple_of(cfg.strategy.inner_steps) || last {
                    outer_boundary = true;
                    for ((d, g), l) in delta.iter_mut().zip(&global).zip(&worker.params) {
                        *d = g - l;
                    }
                    settle(&mut owed).await;
                    let t0 = tokio::time::Instant::now();
                    match site {
                        None => match compressors.first_mut() {
                            None => world.all_reduce_mean(&mut delta).await?,
                            Some(c) => {
                                let out = Outgoing::prepare(std::mem::take(&mut delta), Some(c))?;
                                delta = out.exchange(world).await?;
                            }
                        },
                        Some(site) => {
                            if let Some(leaders) = &groups.leaders {
                                // Weight each site by its share of the ranks, so the result
                                // is the mean over all ranks even with unequal sites.
                                let w = (site.world_size() * leaders.world_size()) as f32
                                    / world_size as f32;
                                if w != 1.0 {
                                    delta.iter_mut().for_each(|d| *d *= w);
                                }
                                match compressors.first_mut() {
                                    None => leaders.all_reduce_mean(&mut delta).await?,
                                    Some(c) => {
                                        let out =
                                            Outgoing::prepare(std::mem::take(&mut delta), Some(c))?;
                                        delta = out.exchange(leaders).await?;
                                    }
                                }
                            }
                            site.broadcast(0, &mut delta).await?;
                        }
                    }
                    report.comm += t0.elapsed();
                    report.syncs += 1;
                    let t0 = std::time::Instant::now();
                    outer[0].step(&mut global, &delta)?;
                    worker.params.copy_from_slice(&global);
                    report.real_compute += t0.elapsed();
                }
            }
            StrategyKind::Streaming => {
                worker = alongside(&mut inflight, apply_inner(worker, &mut report)).await?;
                // A fragment whose overlap has run out is merged.
                if inflight.as_ref().is_some_and(|f| f.due <= step) || (last && inflight.is_some())
                {
                    finish_fragment(
                        &mut inflight,
                        &mut owed,
                        &fragments,
                        &mut outer,
                        &mut global,
                        &mut worker.params,
                        cfg.strategy.mixing,
                        &mut report,
                    )
                    .await?;
                }
                let due: Vec<usize> = if last {
                    // The end: every fragment once more, nothing left in flight.
                    (0..fragments.len()).collect()
                } else {
                    (0..fragments.len())
                        .filter(|&p| {
                            step % cfg.strategy.inner_steps
                                == ((p as u64 + 1) * stride) % cfg.strategy.inner_steps
                        })
                        .collect()
                };
                for p in due {
                    // Declared compute up to now happens before the fragment can leave.
                    alongside(&mut inflight, settle(&mut owed)).await;
                    let r = fragments[p].clone();
                    let d: Vec<f32> = global[r.clone()]
                        .iter()
                        .zip(&worker.params[r])
                        .map(|(g, l)| g - l)
                        .collect();
                    let out = Outgoing::prepare(d, compressors.get_mut(p))?;
                    report.syncs += 1;
                    inflight = Some(InFlight::start(world, out, p, step + cfg.strategy.overlap));
                    if cfg.strategy.overlap == 0 || last {
                        finish_fragment(
                            &mut inflight,
                            &mut owed,
                            &fragments,
                            &mut outer,
                            &mut global,
                            &mut worker.params,
                            cfg.strategy.mixing,
                            &mut report,
                        )
                        .await?;
                    }
                }
                outer_boundary = step.is_multiple_of(cfg.strategy.inner_steps) || last;
            }
            StrategyKind::Delayed => {
                worker = alongside(&mut inflight, apply_inner(worker, &mut report)).await?;
                if step.is_multiple_of(cfg.strategy.inner_steps) || last {
                    outer_boundary = true;
                    for ((d, a), l) in delta.iter_mut().zip(&anchor).zip(&worker.params) {
                        *d = a - l;
                    }
                    // Last round's average arrives (it ran under this round's steps) and is
                    // applied one outer step late.
                    if inflight.is_some() {
                        let avg = wait_inflight(&mut inflight, &mut owed, &mut report).await?;
                        outer[0].step(&mut global, &avg.1)?;
                    }
                    let out = Outgoing::prepare(delta.clone(), compressors.first_mut())?;
                    report.syncs += 1;
                    inflight = Some(InFlight::start(world, out, 0, step));
                    if last {
                        let avg = wait_inflight(&mut inflight, &mut owed, &mut report).await?;
                        outer[0].step(&mut global, &avg.1)?;
                        worker.params.copy_from_slice(&global);
                    } else {
                        // Go on from the new global model plus this rank's own progress of the
                        // round (its stand-in for the average still on the wire).
                        for ((p, g), d) in worker.params.iter_mut().zip(&global).zip(&delta) {
                            *p = g - d;
                        }
                        anchor.copy_from_slice(&worker.params);
                    }
                }
            }
        }

        let at_boundary = if kind.has_outer_step() {
            outer_boundary
        } else {
            step.is_multiple_of(cfg.eval_every.max(1)) || step == cfg.steps
        };
        if at_boundary {
            let mean_train = train_losses.iter().sum::<f64>() / train_losses.len().max(1) as f64;
            train_losses.clear();
            let synced = if kind.has_outer_step() {
                &global
            } else {
                &worker.params
            };
            evaluate(
                &mut evaluator,
                &mut report,
                &ctx,
                step,
                start,
                synced,
                mean_train,
            )?;
        }
        let commit_now = if kind.has_outer_step() {
            outer_boundary
        } else {
            step.is_multiple_of(cfg.strategy.commit_every.max(1)) || step == cfg.steps
        };
        if commit_now && let Some(sink) = &ctx.commits {
            let mut inner_state = worker.inner.state().clone();
            if kind == StrategyKind::Sharded {
                // Each rank holds the optimiser state of its shard only; gather the whole of
                // it, so the commit survives the loss of any rank and a re-plan's new shards.
                let t0 = tokio::time::Instant::now();
                inner_state.first =
                    gather_shards(world, len, &worker.inner_range, &inner_state.first).await?;
                if !inner_state.second.is_empty() {
                    inner_state.second =
                        gather_shards(world, len, &worker.inner_range, &inner_state.second).await?;
                }
                report.comm += t0.elapsed();
            }
            let ck = Checkpoint {
                step,
                params: if kind.has_outer_step() {
                    global.clone()
                } else {
                    worker.params.clone()
                },
                inner: inner_state,
                outer: kind.has_outer_step().then(|| outer_state(&outer)),
            };
            sink.commit(rank, &ck)?;
            progress.committed_step = step;
        }
        progress.step = step;
        if let Some(last) = report.curve.last() {
            progress.eval_loss = last.loss;
        }
        if let Some(tx) = &ctx.progress {
            tx.send_replace(progress);
        }
    }

    settle(&mut owed).await;
    report.steps = step;
    report.wall = start.elapsed();
    report.params = if kind.has_outer_step() {
        global
    } else {
        std::mem::take(&mut worker.params)
    };
    tracing::info!(
        steps = report.steps,
        final_loss = report.final_loss(),
        wall_s = report.wall.as_secs_f64(),
        "training done"
    );
    Ok(report.measured_in_emulated_time(ctx.time_dilation))
}

/// An outer gradient ready to leave: plain f32, or a compressed payload.
enum Outgoing {
    Plain(Vec<f32>),
    Compressed {
        payload: Vec<u32>,
        words: usize,
        bits: u32,
        len: usize,
    },
}

impl Outgoing {
    /// Compresses `delta` with `compressor` (updating its error feedback), or leaves it plain.
    fn prepare(delta: Vec<f32>, compressor: Option<&mut Compressor>) -> Result<Self, TrainError> {
        match compressor {
            None => Ok(Self::Plain(delta)),
            Some(c) => Ok(Self::Compressed {
                payload: c.encode(&delta)?,
                words: c.payload_words(),
                bits: c.config().bits,
                len: delta.len(),
            }),
        }
    }

    /// The group mean: an all-reduce of the plain vector, or an all-gather of every rank's
    /// payload (one fixed-size slot each, so the wire carries exactly the compressed words)
    /// decoded and averaged in rank order.
    async fn exchange<S: GradientSync>(self, group: &S) -> Result<Vec<f32>, TrainError> {
        match self {
            Self::Plain(mut v) => {
                group.all_reduce_mean(&mut v).await?;
                Ok(v)
            }
            Self::Compressed {
                payload,
                words,
                bits,
                len,
            } => {
                let n = group.world_size();
                let mut slots = vec![0.0f32; words * n];
                let mine = group.shard_range(slots.len());
                if mine.len() != words || payload.len() != words {
                    return Err(ShapeError::CompressedSlot {
                        slot: mine.len(),
                        payload: payload.len(),
                        words,
                    }
                    .into());
                }
                for (d, w) in slots[mine].iter_mut().zip(&payload) {
                    *d = f32::from_bits(*w);
                }
                group.all_gather(&mut slots).await?;
                let words_in: Vec<u32> = slots.iter().map(|v| v.to_bits()).collect();
                let mut mean = vec![0.0f32; len];
                mean_of_payloads(&words_in, words, n, bits, &mut mean)?;
                Ok(mean)
            }
        }
    }
}

type SyncFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Vec<f32>, TrainError>> + Send + 'a>>;

/// An outer synchronisation in flight under the inner steps (streaming, delayed).
struct InFlight<'a> {
    fut: Option<SyncFuture<'a>>,
    result: Option<Result<Vec<f32>, TrainError>>,
    /// The fragment it carries.
    fragment: usize,
    /// The step at which it is merged.
    due: u64,
}

impl<'a> InFlight<'a> {
    fn start<S: GradientSync>(group: &'a S, out: Outgoing, fragment: usize, due: u64) -> Self {
        Self {
            fut: Some(Box::pin(out.exchange(group))),
            result: None,
            fragment,
            due,
        }
    }
}

/// Runs `work` while driving the synchronisation in flight (if any) alongside it.
async fn alongside<T>(inflight: &mut Option<InFlight<'_>>, work: impl Future<Output = T>) -> T {
    let Some(f) = inflight.as_mut() else {
        return work.await;
    };
    let Some(fut) = f.fut.as_mut() else {
        return work.await;
    };
    let mut work = std::pin::pin!(work);
    let first = tokio::select! {
        out = &mut work => Ok(out),
        r = fut => Err(r),
    };
    match first {
        Ok(out) => out,
        Err(r) => {
            f.result = Some(r);
            f.fut = None;
            work.await
        }
    }
}

/// Sleeps the declared compute owed (the synchronisation in flight runs during it), then
/// waits for the synchronisation: the wait is the exposed communication time.
async fn wait_inflight(
    inflight: &mut Option<InFlight<'_>>,
    owed: &mut Duration,
    report: &mut NodeReport,
) -> Result<(usize, Vec<f32>), TrainError> {
    alongside(inflight, settle(owed)).await;
    let Some(mut f) = inflight.take() else {
        return Err(TrainError::Sync(SyncMissing::NotInFlight));
    };
    let t0 = tokio::time::Instant::now();
    let r = match (f.result.take(), f.fut.take()) {
        (Some(r), _) => r,
        (None, Some(fut)) => fut.await,
        (None, None) => Err(TrainError::Sync(SyncMissing::Lost)),
    };
    report.comm += t0.elapsed();
    Ok((f.fragment, r?))
}

/// Streaming: waits for the fragment in flight, takes the outer step on its slice of the
/// global model and merges it into the local one (`local ← α·local + (1 − α)·global`).
#[allow(clippy::too_many_arguments)]
async fn finish_fragment(
    inflight: &mut Option<InFlight<'_>>,
    owed: &mut Duration,
    fragments: &[Range<usize>],
    outer: &mut [Optimizer],
    global: &mut [f32],
    params: &mut [f32],
    mixing: f32,
    report: &mut NodeReport,
) -> Result<(), TrainError> {
    let (p, avg) = wait_inflight(inflight, owed, report).await?;
    let r = fragments[p].clone();
    let t0 = std::time::Instant::now();
    outer[p].step(&mut global[r.clone()], &avg)?;
    if mixing == 0.0 {
        params[r.clone()].copy_from_slice(&global[r]);
    } else {
        for (l, g) in params[r.clone()].iter_mut().zip(&global[r]) {
            *l = mixing * *l + (1.0 - mixing) * g;
        }
    }
    report.real_compute += t0.elapsed();
    Ok(())
}

/// The outer optimisers' states as one (fragments concatenated), for a commit.
fn outer_state(outer: &[Optimizer]) -> OptimizerState {
    let mut state = OptimizerState {
        t: 0,
        first: Vec::new(),
        second: Vec::new(),
    };
    for o in outer {
        state.t = state.t.max(o.state().t);
        state.first.extend_from_slice(&o.state().first);
        state.second.extend_from_slice(&o.state().second);
    }
    state
}

/// Splits a committed outer state over the fragments' optimisers.
fn restore_outer(
    outer: &mut [Optimizer],
    fragments: &[Range<usize>],
    state: OptimizerState,
) -> Result<(), TrainError> {
    for (o, r) in outer.iter_mut().zip(fragments) {
        let part = OptimizerState {
            t: state.t,
            first: state.first.get(r.clone()).unwrap_or_default().to_vec(),
            second: state.second.get(r.clone()).unwrap_or_default().to_vec(),
        };
        o.restore(part)?;
    }
    Ok(())
}

/// The whole `len`-element vector whose `range` this rank holds in `shard`, gathered from
/// every rank of `world` (each holds [`GradientSync::shard_range`]).
async fn gather_shards<S: GradientSync>(
    world: &S,
    len: usize,
    range: &Range<usize>,
    shard: &[f32],
) -> Result<Vec<f32>, TrainError> {
    if shard.len() != range.len() {
        return Err(ShapeError::OptimizerShard {
            shard: shard.len(),
            range: range.len(),
        }
        .into());
    }
    let mut full = vec![0.0f32; len];
    full[range.clone()].copy_from_slice(shard);
    world.all_gather(&mut full).await?;
    Ok(full)
}

/// Steps below this many multiply-adds per sample batch (parameters × batch, well under a
/// millisecond) run inline.
const INLINE_WORK: usize = 1 << 18;

/// Sleeps the declared compute time owed so far (once, before the node next talks to its
/// peers or finishes), so a step's declared time is added in full without paying a timer's
/// rounding on every step.
async fn settle(owed: &mut Duration) {
    if !owed.is_zero() {
        tokio::time::sleep(*owed).await;
        *owed = Duration::ZERO;
    }
}

async fn apply_inner(
    worker: Box<Worker>,
    report: &mut NodeReport,
) -> Result<Box<Worker>, TrainError> {
    let (worker, (r, real)) = on_blocking(worker, |w| {
        let t0 = std::time::Instant::now();
        let r = w.apply_inner();
        (r, t0.elapsed())
    })
    .await?;
    r?;
    report.real_compute += real;
    Ok(worker)
}

fn evaluate(
    evaluator: &mut Option<Evaluation>,
    report: &mut NodeReport,
    ctx: &NodeContext,
    step: u64,
    start: tokio::time::Instant,
    params: &[f32],
    train_loss: f64,
) -> Result<(), TrainError> {
    let bytes = ctx.meter.as_ref().map(|m| m.snapshot()).unwrap_or_default();
    if ctx.meter.is_some() {
        report.bytes_curve.push((step, bytes.clone()));
    }
    let Some(ev) = evaluator else {
        return Ok(());
    };
    let t0 = std::time::Instant::now();
    let loss = ev.loss(params)?;
    report.eval += t0.elapsed();
    tracing::debug!(step, loss, "eval");
    report.curve.push(LossPoint {
        step,
        elapsed: start.elapsed(),
        loss,
        bytes,
    });
    report.train_loss.push(train_loss);
    Ok(())
}
