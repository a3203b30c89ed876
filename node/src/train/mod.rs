//! Training over the fabric: a real model, real gradients, real optimiser steps, and the
//! strategies that keep the ranks of a job on one model (sync, sharded, DiLoCo, hierarchical).
//!
//! - [`model`]: an MLP with its parameters in one flat `Vec<f32>`, forward and backward passes.
//! - [`data`]: the synthetic teacher task every node generates from (seed, its shard).
//! - [`transformer`]: a decoder-only transformer LM (candle autograd) over a flat vector.
//! - [`text`]: the committed Shakespeare corpus, its character tokenizer, split and shards.
//! - [`error`]: [`TrainError`] and its typed refusals ([`ConfigError`], [`ShapeError`]).
//! - [`plan`]: data shards and parameter shards (pure arithmetic).
//! - [`optim`]: SGD with momentum / Nesterov, AdamW.
//! - [`strategy`]: the strategies over a [`strategy::GradientSync`] group, and the per-node
//!   training loop with its report (loss curve, real vs declared compute, communication).
//! - [`checkpoint`]: committed state and where it goes.
//! - [`compress`]: compressed outer gradients (top-k, low-bit, error feedback).
//! - [`recovery`]: a restarted job agreeing on its committed state; ranks without it (a
//!   replacement node) fetch it from a peer, preferably one in their own site.
//! - [`fabric`]: strategy groups over the collective module (sub-groups per site, byte
//!   meters per link class).

pub mod checkpoint;
pub mod compress;
pub mod data;
pub mod error;
pub mod fabric;
pub mod model;
pub mod optim;
pub mod plan;
pub mod recovery;
pub mod strategy;
pub mod text;
pub mod transformer;
pub mod workload;

pub use checkpoint::{Checkpoint, CheckpointError, CommitSink, DirCommits, MemoryCommits};
pub use compress::CompressionConfig;
pub use data::{TaskSpec, Teacher};
pub use error::{ConfigError, PayloadFault, ShapeError, SyncMissing, TrainError};
pub use model::{Activation, Mlp, MlpSpec};
pub use optim::{LrSchedule, Optimizer, OptimizerConfig};
pub use strategy::{
    GradientSync, Groups, LossPoint, NodeContext, NodeReport, StrategyConfig, StrategyKind,
    TrafficMeter, TrainConfig, TrainProgress, train_node,
};
pub use transformer::{Transformer, TransformerSpec};
pub use workload::ModelConfig;

#[cfg(test)]
mod tests;
