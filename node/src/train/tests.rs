//! Strategy tests over an in-memory group (a rendezvous of N tasks in one process): the
//! strategies' arithmetic, independent of any transport.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Barrier;

use super::data::Teacher;
use super::model::{Activation, Mlp, MlpSpec, Workspace};
use super::optim::{LrSchedule, Optimizer, OptimizerConfig};
use super::plan;
use super::*;

/// N members meeting at a barrier; every member reduces the deposited vectors itself, in rank
/// order, so all members get bit-identical results.
struct Shared {
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

struct LocalMember {
    rank: usize,
    n: usize,
    shared: Arc<Shared>,
}

fn local_group(n: usize) -> Vec<LocalMember> {
    let shared = Arc::new(Shared {
        slots: Mutex::new(vec![Vec::new(); n]),
        barrier: Barrier::new(n),
    });
    (0..n)
        .map(|rank| LocalMember {
            rank,
            n,
            shared: shared.clone(),
        })
        .collect()
}

impl LocalMember {
    async fn deposit(&self, data: &[f32]) {
        self.shared.slots.lock().unwrap()[self.rank] = data.to_vec();
        self.shared.barrier.wait().await;
    }
    async fn done(&self) {
        self.shared.barrier.wait().await;
    }
    fn mean_into(&self, data: &mut [f32], range: std::ops::Range<usize>) {
        let slots = self.shared.slots.lock().unwrap();
        for i in range {
            let mut s = 0.0f32;
            for slot in slots.iter() {
                s += slot[i];
            }
            data[i] = s / self.n as f32;
        }
    }
}

impl GradientSync for LocalMember {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.n
    }
    async fn all_reduce_mean(&self, data: &mut [f32]) -> Result<(), TrainError> {
        self.deposit(data).await;
        self.mean_into(data, 0..data.len());
        self.done().await;
        Ok(())
    }
    async fn reduce_scatter_mean(&self, data: &mut [f32]) -> Result<(), TrainError> {
        self.deposit(data).await;
        let r = self.shard_range(data.len());
        self.mean_into(data, r);
        self.done().await;
        Ok(())
    }
    async fn all_gather(&self, data: &mut [f32]) -> Result<(), TrainError> {
        self.deposit(data).await;
        {
            let slots = self.shared.slots.lock().unwrap();
            for (member, slot) in slots.iter().enumerate() {
                let r = spacefabric_proto::shard::shard_of_len(data.len(), self.n, member);
                data[r.clone()].copy_from_slice(&slot[r]);
            }
        }
        self.done().await;
        Ok(())
    }
    async fn broadcast(&self, root: usize, data: &mut [f32]) -> Result<(), TrainError> {
        self.deposit(data).await;
        {
            let slots = self.shared.slots.lock().unwrap();
            data.copy_from_slice(&slots[root]);
        }
        self.done().await;
        Ok(())
    }
}

fn small_config(kind: StrategyKind, inner: OptimizerConfig, steps: u64) -> TrainConfig {
    TrainConfig {
        model: ModelConfig::Mlp {
            spec: MlpSpec {
                input: 8,
                width: 16,
                depth: 2,
                output: 2,
                activation: Activation::Tanh,
            },
            task: TaskSpec {
                seed: 5,
                input: 8,
                output: 2,
                teacher_width: 8,
                teacher_depth: 1,
                noise: 0.0,
            },
        },
        batch: 4,
        total_samples: 256,
        steps,
        strategy: StrategyConfig {
            inner,
            ..StrategyConfig::new(kind, 0.01)
        },
        step_time: Duration::ZERO,
        eval_every: 5,
        eval_samples: 64,
        init_seed: 9,
    }
}

/// The MLP and teacher of an MLP config.
fn mlp_of(cfg: &TrainConfig) -> (Mlp, Teacher) {
    let ModelConfig::Mlp { spec, task } = &cfg.model else {
        panic!("not an MLP config");
    };
    (
        Mlp::new(spec.clone()).unwrap(),
        Teacher::new(task.clone()).unwrap(),
    )
}

/// Runs `cfg` on `n` in-memory nodes (flat world); returns every node's report.
async fn run_flat(cfg: &TrainConfig, n: usize) -> Vec<NodeReport> {
    run_flat_from(cfg, n, &|_| None, None).await
}

/// Runs `cfg` hierarchically on `sites` sites of `per_site` in-memory nodes each.
async fn run_hier(cfg: &TrainConfig, sites: usize, per_site: usize) -> Vec<NodeReport> {
    let world = local_group(sites * per_site);
    let mut site_groups: Vec<Vec<LocalMember>> =
        (0..sites).map(|_| local_group(per_site)).collect();
    let mut leaders = local_group(sites);
    let mut tasks = Vec::new();
    for (rank, member) in world.into_iter().enumerate().rev() {
        let (s, i) = (rank / per_site, rank % per_site);
        let site = site_groups[s].pop().unwrap();
        assert_eq!(site.rank, i);
        let leader = if i == 0 { leaders.pop() } else { None };
        if let Some(l) = &leader {
            assert_eq!(l.rank, s);
        }
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = NodeContext {
                evaluate: rank == 0,
                ..NodeContext::default()
            };
            let groups = Groups {
                world: member,
                site: Some(site),
                leaders: leader,
            };
            train_node(&cfg, &groups, ctx).await.unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks.into_iter().rev() {
        out.push(t.await.unwrap());
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every report's model is within `tolerance` of `reference` (max |Δ|).
fn assert_close(reference: &[f32], reports: &[NodeReport], tolerance: f32, what: &str) {
    for r in reports {
        let diff = max_abs_diff(reference, &r.params);
        assert!(diff < tolerance, "{what}: max |Δ| = {diff}");
    }
}

/// An outer step that is no step: one inner step per round, outer learning rate 1, no
/// momentum. DiLoCo, hierarchical and streaming then reduce to plain sync.
fn with_unit_outer_step(mut cfg: TrainConfig) -> TrainConfig {
    cfg.strategy.inner_steps = 1;
    cfg.strategy.outer_lr = 1.0;
    cfg.strategy.outer_momentum = 0.0;
    cfg
}

/// Step `step`'s batches of every shard, concatenated in rank order: the batch of the one-node
/// reference that a synchronous job of `shards.len()` ranks must equal.
fn union_of_batches<S, T: Clone>(
    shards: &[S],
    mut batch_into: impl FnMut(&S, &mut Vec<T>, &mut Vec<T>),
) -> (Vec<T>, Vec<T>) {
    let (mut x, mut y, mut bx, mut by) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for shard in shards {
        batch_into(shard, &mut bx, &mut by);
        x.extend_from_slice(&bx);
        y.extend_from_slice(&by);
    }
    (x, y)
}

#[tokio::test]
async fn sync_on_n_nodes_equals_one_node_on_the_combined_batch() {
    let n = 4;
    let cfg = small_config(StrategyKind::Sync, OptimizerConfig::sgd(0.05, 0.9), 12);
    let reports = run_flat(&cfg, n).await;
    // Every node ends with the same model.
    for r in &reports[1..] {
        assert_eq!(r.params, reports[0].params);
    }

    // The single-node reference: one model, each step's batch = the union of the nodes'
    // batches of that step (4 × 4 samples), one optimiser.
    let (mlp, teacher) = mlp_of(&cfg);
    let shards: Vec<_> = (0..n)
        .map(|r| {
            teacher
                .shard(plan::data_shard(cfg.total_samples, n, r))
                .unwrap()
        })
        .collect();
    let mut params = mlp.init_params(cfg.init_seed);
    let mut opt = Optimizer::new(cfg.strategy.inner, params.len());
    let mut grad = vec![0.0; params.len()];
    let mut ws = Workspace::default();
    for step in 0..cfg.steps {
        let (x, y) = union_of_batches(&shards, |s, bx, by| s.batch_into(step, cfg.batch, bx, by));
        mlp.loss_and_grad(&params, &x, &y, cfg.batch * n, &mut grad, &mut ws)
            .unwrap();
        opt.step(&mut params, &grad).unwrap();
    }
    assert_close(&params, &reports, 1e-5, "one node on the combined batch");
    // And training moved the model: the reference is not the initial point.
    assert!(max_abs_diff(&params, &mlp.init_params(cfg.init_seed)) > 1e-2);
}

#[tokio::test]
async fn diloco_with_h1_outer_lr1_no_momentum_equals_sync() {
    let inner = OptimizerConfig::sgd(0.05, 0.0);
    let sync = run_flat(&small_config(StrategyKind::Sync, inner, 10), 4).await;
    let cfg = with_unit_outer_step(small_config(StrategyKind::Diloco, inner, 10));
    let diloco = run_flat(&cfg, 4).await;
    assert_close(&sync[0].params, &diloco, 1e-5, "diloco");
    assert_eq!(diloco[0].syncs, 10);
}

#[tokio::test]
async fn hierarchical_with_h1_outer_lr1_equals_sync() {
    // Two sites of two: site mean, then the leaders' mean of site means = global mean.
    let inner = OptimizerConfig::sgd(0.05, 0.0);
    let sync = run_flat(&small_config(StrategyKind::Sync, inner, 8), 4).await;
    let cfg = with_unit_outer_step(small_config(StrategyKind::Hierarchical, inner, 8));
    let hier = run_hier(&cfg, 2, 2).await;
    assert_close(&sync[0].params, &hier, 1e-5, "hierarchical");
}

#[tokio::test]
async fn sharded_equals_sync_with_adamw() {
    let inner = OptimizerConfig::adamw(0.01);
    let sync = run_flat(&small_config(StrategyKind::Sync, inner, 10), 4).await;
    let sharded = run_flat(&small_config(StrategyKind::Sharded, inner, 10), 4).await;
    assert_close(&sync[0].params, &sharded, 1e-6, "sharded");
}

#[tokio::test]
async fn every_strategy_learns_the_task() {
    for kind in [
        StrategyKind::Sync,
        StrategyKind::Sharded,
        StrategyKind::Diloco,
    ] {
        let mut cfg = small_config(kind, OptimizerConfig::adamw(0.01), 120);
        cfg.strategy.inner_steps = 10;
        let r = run_flat(&cfg, 2).await;
        let first = r[0].curve.first().unwrap().loss;
        let last = r[0].final_loss().unwrap();
        assert!(last < 0.6 * first, "{kind:?}: {first} → {last}");
    }
}

#[tokio::test]
async fn resuming_from_a_commit_reproduces_the_uninterrupted_run() {
    for kind in [
        StrategyKind::Sync,
        StrategyKind::Sharded,
        StrategyKind::Diloco,
    ] {
        let mut full = small_config(kind, OptimizerConfig::adamw(0.01), 20);
        full.strategy.inner_steps = 5;
        full.strategy.commit_every = 5;
        let reference = run_flat(&full, 2).await;

        // Run to step 10 committing, then restart both ranks from their commits.
        let commits = Arc::new(MemoryCommits::default());
        let mut first = full.clone();
        first.steps = 10;
        run_flat_from(&first, 2, &|_| None, Some(commits.clone())).await;
        for rank in 0..2 {
            assert_eq!(commits.latest(rank).unwrap().step, 10);
        }
        for resumed in run_flat_from(&full, 2, &|rank| commits.latest(rank), None).await {
            assert_eq!(resumed.steps, 20);
            assert_eq!(resumed.params, reference[0].params, "{kind:?}");
        }
    }
}

/// Runs `cfg` on `n` in-memory nodes, rank r resuming from `resume(r)` (if any) and every
/// rank committing into `commits` (if any); returns every node's report.
async fn run_flat_from(
    cfg: &TrainConfig,
    n: usize,
    resume: &dyn Fn(usize) -> Option<Checkpoint>,
    commits: Option<Arc<MemoryCommits>>,
) -> Vec<NodeReport> {
    let tasks: Vec<_> = local_group(n)
        .into_iter()
        .map(|member| {
            let (cfg, resume, commits) = (cfg.clone(), resume(member.rank), commits.clone());
            tokio::spawn(async move {
                let ctx = NodeContext {
                    evaluate: member.rank == 0,
                    resume,
                    commits: commits.map(|c| c as Arc<dyn CommitSink>),
                    ..NodeContext::default()
                };
                let groups = Groups {
                    world: member,
                    site: None,
                    leaders: None,
                };
                train_node(&cfg, &groups, ctx).await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_sharded_commit_resumes_on_fewer_ranks_with_its_optimizer_state() {
    // Sharded with AdamW equals sync step for step. Commit both at step 10 on 3 ranks, then
    // resume both on 2 ranks (a node died): the shards change (3 → 2), and sharded can only
    // stay equal to sync if its commit held every rank's optimizer state and the survivors
    // re-cut it for their new shards.
    let inner = OptimizerConfig::adamw(0.01);
    let mut results = Vec::new();
    for kind in [StrategyKind::Sync, StrategyKind::Sharded] {
        let mut cfg = small_config(kind, inner, 10);
        cfg.strategy.commit_every = 10;
        let commits = Arc::new(MemoryCommits::default());
        run_flat_from(&cfg, 3, &|_| None, Some(commits.clone())).await;
        let ck = commits.latest(1).unwrap();
        assert_eq!(ck.step, 10);
        assert_eq!(
            ck.inner.first.len(),
            ck.params.len(),
            "{kind:?} commit is whole"
        );
        cfg.steps = 20;
        results.push(run_flat_from(&cfg, 2, &|_| Some(ck.clone()), None).await);
    }
    assert_close(
        &results[0][0].params,
        &results[1],
        1e-6,
        "resumed on fewer ranks",
    );
}

#[tokio::test(start_paused = true)]
async fn declared_compute_is_added_and_reported_apart_from_real_compute() {
    let mut cfg = small_config(StrategyKind::Sync, OptimizerConfig::sgd(0.01, 0.0), 4);
    cfg.step_time = Duration::from_secs(3);
    let r = run_flat(&cfg, 2).await;
    assert_eq!(r[0].declared_compute, Duration::from_secs(12));
    assert!(r[0].wall >= Duration::from_secs(12));
    assert!(r[0].real_compute < Duration::from_secs(12));
}

#[tokio::test]
async fn hierarchical_without_a_site_group_is_a_config_error() {
    let cfg = small_config(StrategyKind::Hierarchical, OptimizerConfig::adamw(0.01), 2);
    let member = local_group(1).pop().unwrap();
    let groups = Groups {
        world: member,
        site: None,
        leaders: None,
    };
    let err = train_node(&cfg, &groups, NodeContext::default())
        .await
        .unwrap_err();
    assert!(matches!(err, TrainError::Config(_)), "{err}");
}

mod over_collectives {
    //! The same strategies over the collective module's schedules and an in-memory fabric.
    use super::*;
    use crate::collective::{Algorithm, MemoryFabric};
    use crate::train::fabric::{LinkBytes, MeteredExchange, job_groups};

    async fn run_fabric(
        cfg: &TrainConfig,
        sites: &[usize],
        algorithm: Algorithm,
    ) -> (Vec<NodeReport>, Arc<LinkBytes>) {
        let profile =
            spacefabric_testkit::profiles::two_sites("two-sites", "earth", "moon", 1280.0, None)
                .profile();
        let names: Vec<String> = sites
            .iter()
            .map(|&s| profile.sites[s].name.clone())
            .collect();
        let meter = Arc::new(LinkBytes::new(&names));
        let fabric = MemoryFabric::new(sites.len());
        let hier = cfg.strategy.kind == StrategyKind::Hierarchical;
        let tasks: Vec<_> = fabric
            .endpoints()
            .into_iter()
            .map(|ep| {
                let rank = ep.rank_for_test();
                let ex = Arc::new(MeteredExchange::new(ep, meter.clone()));
                let groups = job_groups(ex, &profile, sites, hier, algorithm).unwrap();
                let (cfg, meter) = (cfg.clone(), meter.clone());
                tokio::spawn(async move {
                    let ctx = NodeContext {
                        evaluate: rank == 0,
                        meter: Some(meter),
                        ..NodeContext::default()
                    };
                    train_node(&cfg, &groups, ctx).await.unwrap()
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        (out, meter)
    }

    trait RankForTest {
        fn rank_for_test(&self) -> usize;
    }
    impl<E: crate::collective::Exchange> RankForTest for E {
        fn rank_for_test(&self) -> usize {
            self.rank()
        }
    }

    #[tokio::test]
    async fn every_strategy_over_real_schedules_matches_the_reference() {
        let sites = [0, 0, 1, 1];
        let inner = OptimizerConfig::sgd(0.05, 0.0);
        let reference = run_flat(&small_config(StrategyKind::Sync, inner, 6), 4).await;
        for algorithm in [Algorithm::Ring, Algorithm::Hierarchical, Algorithm::Auto] {
            for kind in [
                StrategyKind::Sync,
                StrategyKind::Sharded,
                StrategyKind::Diloco,
                StrategyKind::Hierarchical,
            ] {
                let cfg = with_unit_outer_step(small_config(kind, inner, 6));
                let (reports, _) = run_fabric(&cfg, &sites, algorithm).await;
                let what = format!("{kind:?} over {algorithm:?}");
                assert_close(&reference[0].params, &reports, 1e-5, &what);
            }
        }
    }

    #[tokio::test]
    async fn diloco_crosses_the_slow_link_h_times_less_than_sync() {
        let sites = [0, 0, 1, 1];
        let inner = OptimizerConfig::adamw(0.01);
        let (_, sync_bytes) = run_fabric(
            &small_config(StrategyKind::Sync, inner, 20),
            &sites,
            Algorithm::Ring,
        )
        .await;
        let mut cfg = small_config(StrategyKind::Diloco, inner, 20);
        cfg.strategy.inner_steps = 10;
        let (_, diloco_bytes) = run_fabric(&cfg, &sites, Algorithm::Ring).await;
        let cross = |m: &LinkBytes| {
            m.snapshot()
                .into_iter()
                .find(|(c, _)| c == "earth-moon")
                .unwrap()
                .1
        };
        // The start barrier (one tiny all-reduce) crosses too: measure it with zero steps.
        let (_, barrier_bytes) = run_fabric(
            &small_config(StrategyKind::Sync, inner, 0),
            &sites,
            Algorithm::Ring,
        )
        .await;
        let barrier = cross(&barrier_bytes);
        assert!(cross(&sync_bytes) > barrier);
        assert_eq!(
            cross(&sync_bytes) - barrier,
            10 * (cross(&diloco_bytes) - barrier)
        );
        // Hierarchical: only the two leaders cross, once per outer step.
        let mut cfg = small_config(StrategyKind::Hierarchical, inner, 20);
        cfg.strategy.inner_steps = 10;
        let (_, hier_bytes) = run_fabric(&cfg, &sites, Algorithm::Ring).await;
        assert!(cross(&hier_bytes) < cross(&diloco_bytes));
        assert!(cross(&hier_bytes) > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_steps_run_on_the_blocking_pool_with_the_same_result() {
    // 8 → 128 × 2 → 2 with batch 16 is above the inline threshold.
    let mut cfg = small_config(StrategyKind::Sync, OptimizerConfig::adamw(0.01), 3);
    if let ModelConfig::Mlp { spec, .. } = &mut cfg.model {
        spec.width = 128;
    }
    cfg.batch = 16;
    let (mlp, _) = mlp_of(&cfg);
    assert!(mlp.param_count() * cfg.batch >= 1 << 18);
    let r = run_flat(&cfg, 2).await;
    assert_eq!(r[0].params, r[1].params);
    assert!(max_abs_diff(&r[0].params, &mlp.init_params(cfg.init_seed)) > 1e-3);
    // Same job with a batch small enough to run inline: same arithmetic path, same kind of
    // result (both nodes agree).
    cfg.batch = 1;
    let r = run_flat(&cfg, 2).await;
    assert_eq!(r[0].params, r[1].params);
}

// ---- The transformer LM and the streaming / delayed / compressed strategies (issue 14) ----

/// `lm-tiny` (1 block, 16 wide, context 8, 4 windows per rank) on the first 100,000
/// characters of the corpus.
fn lm_config(kind: StrategyKind, inner: OptimizerConfig, steps: u64) -> TrainConfig {
    let (model, batch) = ModelConfig::lm_preset("lm-tiny", 3).unwrap();
    TrainConfig {
        model,
        batch,
        total_samples: 100_000,
        steps,
        strategy: StrategyConfig {
            inner,
            ..StrategyConfig::new(kind, 0.01)
        },
        step_time: Duration::ZERO,
        eval_every: 5,
        eval_samples: 16,
        init_seed: 9,
    }
}

#[tokio::test]
async fn transformer_sync_on_n_nodes_equals_one_node_on_the_combined_batch() {
    use super::text::Corpus;
    use super::transformer::Transformer;
    let n = 3;
    let mut cfg = lm_config(StrategyKind::Sync, OptimizerConfig::adamw(0.01), 6);
    cfg.strategy.grad_clip = 1.0;
    cfg.strategy.schedule = LrSchedule {
        warmup: 2,
        decay_steps: 6,
        min_ratio: 0.1,
    };
    let reports = run_flat(&cfg, n).await;
    for r in &reports[1..] {
        assert_eq!(r.params, reports[0].params);
    }
    let ModelConfig::Lm { spec, data_seed } = cfg.model else {
        panic!("not an LM config");
    };
    let model = Transformer::new(spec).unwrap();
    let corpus = Corpus::shakespeare().unwrap();
    let shards: Vec<_> = (0..n)
        .map(|r| {
            corpus
                .shard(
                    plan::data_shard(cfg.total_samples, n, r),
                    spec.ctx,
                    data_seed,
                )
                .unwrap()
        })
        .collect();
    let mut params = model.init_params(cfg.init_seed);
    let mut opt = Optimizer::new(cfg.strategy.inner, params.len());
    let mut grad = vec![0.0; params.len()];
    for step in 0..cfg.steps {
        let (x, y) = union_of_batches(&shards, |s, bx, by| s.batch_into(step, cfg.batch, bx, by));
        model
            .loss_and_grad(&params, &x, &y, cfg.batch * n, &mut grad)
            .unwrap();
        optim::clip_grad_norm(&mut grad, 1.0);
        let scale = cfg.strategy.schedule.factor(step + 1);
        opt.step_scaled(&mut params, &grad, scale).unwrap();
    }
    assert_close(&params, &reports, 1e-5, "one node on the combined batch");
    assert!(max_abs_diff(&params, &model.init_params(cfg.init_seed)) > 1e-3);
}

#[tokio::test]
async fn transformer_diloco_with_h1_outer_lr1_no_momentum_equals_sync() {
    let inner = OptimizerConfig::sgd(0.5, 0.0);
    let sync = run_flat(&lm_config(StrategyKind::Sync, inner, 5), 3).await;
    let cfg = with_unit_outer_step(lm_config(StrategyKind::Diloco, inner, 5));
    let diloco = run_flat(&cfg, 3).await;
    assert_close(&sync[0].params, &diloco, 1e-6, "diloco");
    assert_eq!(diloco[0].syncs, 5);
}

#[tokio::test]
async fn the_transformer_learns_and_its_checkpoint_resumes_bit_for_bit() {
    for kind in [StrategyKind::Sync, StrategyKind::Diloco] {
        let mut full = lm_config(kind, OptimizerConfig::adamw(0.02), 20);
        full.strategy.inner_steps = 5;
        full.strategy.commit_every = 5;
        full.strategy.grad_clip = 1.0;
        full.strategy.schedule = LrSchedule {
            warmup: 3,
            decay_steps: 20,
            min_ratio: 0.1,
        };
        let reference = run_flat(&full, 2).await;
        let curve = &reference[0].curve;
        let (first, last) = (curve[0].loss, curve[curve.len() - 1].loss);
        // From ln(74) ≈ 4.3 nats per character, 20 steps of 4 windows learn the frequencies.
        assert!((first - 74f64.ln()).abs() < 0.2, "initial loss {first}");
        assert!(last < first - 0.3, "{kind:?}: {first} -> {last}");

        let commits = Arc::new(MemoryCommits::default());
        let mut part = full.clone();
        part.steps = 10;
        run_flat_from(&part, 2, &|_| None, Some(commits.clone())).await;
        for resumed in run_flat_from(&full, 2, &|rank| commits.latest(rank), None).await {
            assert_eq!(resumed.params, reference[0].params, "{kind:?}");
        }
    }
}

#[tokio::test]
async fn streaming_with_one_fragment_and_no_overlap_equals_diloco() {
    for steps in [20, 23] {
        let mut diloco = small_config(StrategyKind::Diloco, OptimizerConfig::adamw(0.01), steps);
        diloco.strategy.inner_steps = 5;
        let mut streaming = diloco.clone();
        streaming.strategy.kind = StrategyKind::Streaming;
        let a = run_flat(&diloco, 3).await;
        let b = run_flat(&streaming, 3).await;
        assert_eq!(a[0].params, b[0].params, "{steps} steps");
        assert_eq!(a[0].syncs, b[0].syncs);
        assert_eq!(
            a[0].curve.iter().map(|p| p.loss).collect::<Vec<_>>(),
            b[0].curve.iter().map(|p| p.loss).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn compression_at_full_density_and_32_bits_equals_none() {
    for kind in [
        StrategyKind::Diloco,
        StrategyKind::Streaming,
        StrategyKind::Delayed,
    ] {
        let mut plain = small_config(kind, OptimizerConfig::adamw(0.01), 20);
        plain.strategy.inner_steps = 4;
        plain.strategy.fragments = 2;
        let mut full = plain.clone();
        full.strategy.compression = Some(CompressionConfig {
            density: 1.0,
            bits: 32,
            error_feedback: true,
        });
        let a = run_flat(&plain, 3).await;
        let b = run_flat(&full, 3).await;
        assert_eq!(a[0].params, b[0].params, "{kind:?}");
    }
    // Hierarchical: the leaders' exchange is the compressed one.
    let mut plain = small_config(StrategyKind::Hierarchical, OptimizerConfig::adamw(0.01), 12);
    plain.strategy.inner_steps = 4;
    let mut full = plain.clone();
    full.strategy.compression = Some(CompressionConfig {
        density: 1.0,
        bits: 32,
        error_feedback: true,
    });
    let a = run_hier(&plain, 2, 2).await;
    let b = run_hier(&full, 2, 2).await;
    assert_eq!(a[0].params, b[0].params);
}

#[tokio::test]
async fn streaming_delayed_and_compressed_runs_agree_across_ranks_and_learn() {
    let mut base = small_config(StrategyKind::Streaming, OptimizerConfig::adamw(0.01), 60);
    base.strategy.inner_steps = 10;
    let mut runs = Vec::new();
    let mut streaming = base.clone();
    streaming.strategy.fragments = 3;
    streaming.strategy.overlap = 2;
    streaming.strategy.mixing = 0.5;
    runs.push(("streaming", streaming.clone()));
    let mut delayed = base.clone();
    delayed.strategy.kind = StrategyKind::Delayed;
    runs.push(("delayed", delayed.clone()));
    let mut compressed = base.clone();
    compressed.strategy.kind = StrategyKind::Diloco;
    compressed.strategy.compression = Some(CompressionConfig {
        density: 0.1,
        bits: 2,
        error_feedback: true,
    });
    runs.push(("diloco 10% 2-bit", compressed));
    let mut streaming_c = streaming;
    streaming_c.strategy.compression = Some(CompressionConfig {
        density: 0.25,
        bits: 4,
        error_feedback: true,
    });
    runs.push(("streaming 25% 4-bit", streaming_c));
    for (name, cfg) in runs {
        let r = run_flat(&cfg, 3).await;
        // Every rank ends on the same global model.
        assert_eq!(r[0].params, r[1].params, "{name}");
        assert_eq!(r[0].params, r[2].params, "{name}");
        let first = r[0].curve[0].loss;
        let last = r[0].final_loss().unwrap();
        assert!(last < 0.7 * first, "{name}: {first} -> {last}");
    }
}
