//! The defaults of a train job, in the one place both sides read them: the controller (to cut
//! parameter shards of the right length) and the node (to build the model it trains).

use crate::v1::TrainJob;
use crate::wire_enum::WireEnum;

/// Defaults a zero (or empty) field of a [`TrainJob`] takes.
pub mod defaults {
    /// Student hidden width.
    pub const WIDTH: u32 = 32;
    /// Student hidden layers.
    pub const DEPTH: u32 = 2;
    /// Input features of the synthetic task.
    pub const INPUT_DIM: u32 = 32;
    /// Outputs of the synthetic task.
    pub const OUTPUT_DIM: u32 = 8;
    /// Teacher hidden width.
    pub const TEACHER_WIDTH: u32 = 32;
    /// Teacher hidden layers.
    pub const TEACHER_DEPTH: u32 = 1;
    /// Samples per step per rank.
    pub const BATCH_SIZE: u32 = 32;
    /// Synthetic samples across the cluster.
    pub const DATASET_SAMPLES: u64 = 65_536;
    /// DiLoCo inner steps H.
    pub const INNER_STEPS: u32 = 100;
    /// AdamW learning rate.
    pub const LR: f32 = 0.01;
    /// Outer Nesterov learning rate (DiLoCo papers).
    pub const OUTER_LR: f32 = 0.7;
    /// Outer Nesterov momentum (DiLoCo papers).
    pub const OUTER_MOMENTUM: f32 = 0.9;
    /// Student activation (an unset `hidden_activation`).
    pub const ACTIVATION: crate::train_names::Activation = crate::train_names::Activation::Relu;
    /// Sync and sharded evaluate every this many steps.
    pub const EVAL_EVERY: u32 = 5;
    /// Held-out samples per evaluation.
    pub const EVAL_SAMPLES: u32 = 512;
    /// Sync and sharded commit every this many steps.
    pub const COMMIT_EVERY: u32 = 10;
    /// Collective algorithm of the world group (an unset `collective_algorithm`).
    pub const ALGORITHM: crate::algorithm::AlgorithmName = crate::algorithm::AlgorithmName::Auto;
    /// The model.
    pub const MODEL: &str = "mlp";
    /// Streaming DiLoCo fragments.
    pub const FRAGMENTS: u32 = 1;
    /// Bits per value of a compressed outer gradient.
    pub const COMPRESS_BITS: u32 = 32;
    /// Characters of training text in the committed corpus (`node/data/shakespeare.txt`: the
    /// first 90 % of 1,093,727); the node checks its corpus against this.
    pub const LM_TRAIN_CHARS: u64 = 984_354;
    /// Distinct characters of the committed corpus (the tokenizer's vocabulary).
    pub const LM_VOCAB: u32 = 74;
}

/// A transformer LM preset: the shape and batch a `model` name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LmPreset {
    /// The name in `TrainJob.model`.
    pub name: &'static str,
    /// Transformer blocks.
    pub layers: u32,
    /// Attention heads per block.
    pub heads: u32,
    /// Embedding width.
    pub embd: u32,
    /// Context length.
    pub ctx: u32,
    /// Windows per step per rank.
    pub batch: u32,
}

/// The transformer presets: nanoGPT's CPU Shakespeare configuration (≈0.8 M parameters);
/// `lm-small`, the default of the strategy comparison (≈0.1 M parameters, small enough that
/// eight ranks train it for hundreds of steps on a 2-core machine in minutes); `lm-tiny`
/// for tests.
pub const LM_PRESETS: &[LmPreset] = &[
    LmPreset {
        name: "nanogpt-cpu",
        layers: 4,
        heads: 4,
        embd: 128,
        ctx: 64,
        batch: 12,
    },
    LmPreset {
        name: "lm-small",
        layers: 2,
        heads: 2,
        embd: 64,
        ctx: 32,
        batch: 8,
    },
    LmPreset {
        name: "lm-tiny",
        layers: 1,
        heads: 2,
        embd: 16,
        ctx: 8,
        batch: 4,
    },
];

impl LmPreset {
    /// The preset called `name`, if any.
    pub fn find(name: &str) -> Option<&'static Self> {
        LM_PRESETS.iter().find(|p| p.name == name)
    }

    /// Parameters of the preset's model over a `vocab`-token vocabulary (nanoGPT's GPT without
    /// biases, output head tied to the token embedding): embeddings, 12·embd² + 2·embd per
    /// block, the final LayerNorm.
    pub fn parameter_count(&self, vocab: u32) -> u64 {
        let e = u64::from(self.embd);
        u64::from(vocab) * e
            + u64::from(self.ctx) * e
            + u64::from(self.layers) * (12 * e * e + 2 * e)
            + e
    }

    /// Model FLOPs of one training token, forward and backward (PaLM's estimate):
    /// `6·N + 12·layers·embd·ctx`, N without the position embedding.
    pub fn flops_per_token(&self, vocab: u32) -> f64 {
        let n = self.parameter_count(vocab) - u64::from(self.ctx) * u64::from(self.embd);
        6.0 * n as f64 + 12.0 * f64::from(self.layers) * f64::from(self.embd) * f64::from(self.ctx)
    }
}

/// An accelerator preset for declared compute: peak dense BF16 throughput (vendor data sheets)
/// and the model FLOPs utilisation assumed for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accelerator {
    /// The name in `TrainJob.accelerator`.
    pub name: &'static str,
    /// Peak dense BF16 FLOP/s.
    pub peak_flops: f64,
    /// Model FLOPs utilisation (fraction of peak a training step achieves).
    pub mfu: f64,
}

/// The accelerator presets (dense BF16 peaks, no sparsity; MFU 0.4, a typical well-tuned
/// large-model figure: small models reach less, so these times are optimistic).
pub const ACCELERATORS: &[Accelerator] = &[
    Accelerator {
        name: "a100",
        peak_flops: 312e12,
        mfu: 0.4,
    },
    Accelerator {
        name: "h100",
        peak_flops: 989e12,
        mfu: 0.4,
    },
    Accelerator {
        name: "b200",
        peak_flops: 2.25e15,
        mfu: 0.4,
    },
    Accelerator {
        name: "mi300x",
        peak_flops: 1.307e15,
        mfu: 0.4,
    },
];

impl Accelerator {
    /// The preset called `name`, if any.
    pub fn find(name: &str) -> Option<&'static Self> {
        ACCELERATORS.iter().find(|a| a.name == name)
    }

    /// Seconds one step of `flops` model FLOPs takes.
    pub fn step_seconds(&self, flops: f64) -> f64 {
        flops / (self.peak_flops * self.mfu)
    }
}

fn or<T: PartialEq + Default>(value: T, default: T) -> T {
    if value == T::default() {
        default
    } else {
        value
    }
}

fn or_str(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_string()
}

impl TrainJob {
    /// The job with every zero field replaced by its default from [`defaults`]
    /// (`outer_lr` and `outer_momentum` only when absent: an explicit 0 momentum stays 0).
    pub fn resolved(&self) -> Self {
        let mut r = Self {
            strategy: self.strategy,
            steps: self.steps,
            target_loss: self.target_loss,
            step_time_ms: self.step_time_ms,
            width: or(self.width, defaults::WIDTH),
            depth: or(self.depth, defaults::DEPTH),
            inner_steps: or(self.inner_steps, defaults::INNER_STEPS),
            seed: self.seed,
            batch_size: or(self.batch_size, defaults::BATCH_SIZE),
            dataset_samples: or(self.dataset_samples, defaults::DATASET_SAMPLES),
            input_dim: or(self.input_dim, defaults::INPUT_DIM),
            output_dim: or(self.output_dim, defaults::OUTPUT_DIM),
            lr: or(self.lr, defaults::LR),
            outer_lr: Some(self.outer_lr.unwrap_or(defaults::OUTER_LR)),
            outer_momentum: Some(self.outer_momentum.unwrap_or(defaults::OUTER_MOMENTUM)),
            hidden_activation: or(self.hidden_activation, defaults::ACTIVATION.to_wire()),
            teacher_width: or(self.teacher_width, defaults::TEACHER_WIDTH),
            teacher_depth: or(self.teacher_depth, defaults::TEACHER_DEPTH),
            eval_every: or(self.eval_every, defaults::EVAL_EVERY),
            eval_samples: or(self.eval_samples, defaults::EVAL_SAMPLES),
            commit_every: or(self.commit_every, defaults::COMMIT_EVERY),
            collective_algorithm: or(self.collective_algorithm, defaults::ALGORITHM.to_wire()),
            model: or_str(&self.model, defaults::MODEL),
            warmup_steps: self.warmup_steps,
            lr_decay_steps: self.lr_decay_steps,
            min_lr_ratio: self.min_lr_ratio,
            grad_clip: self.grad_clip,
            weight_decay: self.weight_decay,
            fragments: or(self.fragments, defaults::FRAGMENTS),
            overlap_steps: self.overlap_steps,
            mixing: self.mixing,
            compress_density: self.compress_density,
            compress_bits: or(self.compress_bits, defaults::COMPRESS_BITS),
            error_feedback: Some(self.error_feedback.unwrap_or(true)),
            accelerator: self.accelerator.clone(),
        };
        // A transformer trains on characters of the committed corpus, in its preset's batch.
        if let Some(p) = r.lm_preset() {
            r.dataset_samples = or(self.dataset_samples, defaults::LM_TRAIN_CHARS);
            r.batch_size = or(self.batch_size, p.batch);
        }
        r
    }

    /// The transformer preset the job's `model` names (`None` for the MLP or an unknown name).
    pub fn lm_preset(&self) -> Option<&'static LmPreset> {
        let name = if self.model.is_empty() {
            defaults::MODEL
        } else {
            &self.model
        };
        LmPreset::find(name)
    }

    /// Model FLOPs of one training step on one rank (forward and backward; the MLP's:
    /// 6 × parameters × samples).
    pub fn flops_per_step(&self) -> f64 {
        let r = self.resolved();
        match r.lm_preset() {
            Some(p) => {
                p.flops_per_token(defaults::LM_VOCAB) * f64::from(p.ctx) * f64::from(r.batch_size)
            }
            None => 6.0 * r.parameter_count() as f64 * f64::from(r.batch_size),
        }
    }

    /// Parameters of the model the resolved job trains: the transformer preset's, or the
    /// student MLP's: `input → width`, `depth − 1` hidden `width → width` layers,
    /// `width → output`, each with a bias.
    pub fn parameter_count(&self) -> u64 {
        if let Some(p) = self.lm_preset() {
            return p.parameter_count(defaults::LM_VOCAB);
        }
        let j = self.resolved();
        let (input, width, depth, output) = (
            u64::from(j.input_dim),
            u64::from(j.width),
            u64::from(j.depth),
            u64::from(j.output_dim),
        );
        let first = input * width + width;
        let hidden = depth.saturating_sub(1) * (width * width + width);
        let last = width * output + output;
        first + hidden + last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_take_defaults_and_explicit_zero_momentum_stays() {
        let job = TrainJob {
            outer_momentum: Some(0.0),
            width: 3,
            ..TrainJob::default()
        };
        let r = job.resolved();
        assert_eq!(r.width, 3);
        assert_eq!(r.depth, defaults::DEPTH);
        assert_eq!(r.outer_momentum, Some(0.0));
        assert_eq!(r.outer_lr, Some(defaults::OUTER_LR));
        assert_eq!(
            r.collective_algorithm,
            crate::v1::Algorithm::Auto as i32,
            "unset means auto, as the empty string did"
        );
        assert_eq!(r.hidden_activation, crate::v1::Activation::Relu as i32);
    }

    #[test]
    fn a_transformer_job_counts_characters_and_its_preset_parameters() {
        let job = TrainJob {
            model: "nanogpt-cpu".into(),
            ..TrainJob::default()
        };
        let r = job.resolved();
        assert_eq!(r.dataset_samples, defaults::LM_TRAIN_CHARS);
        assert_eq!(r.batch_size, 12);
        // nanoGPT reports 0.80 M without the position embedding (64 × 128).
        assert_eq!(
            job.parameter_count() - 64 * 128,
            128 * 74 + 4 * (12 * 128 * 128 + 256) + 128
        );
        assert!(job.flops_per_step() > 6.0 * 0.79e6 * 768.0);
        let h100 = Accelerator::find("h100").unwrap();
        let s = h100.step_seconds(job.flops_per_step());
        assert!(s > 1e-6 && s < 1e-4, "{s}");
        assert_eq!(TrainJob::default().resolved().model, "mlp");
        assert!(TrainJob::default().lm_preset().is_none());
    }

    #[test]
    fn parameter_count_matches_a_hand_count() {
        // 2→3 (6+3), 3→3 (9+3), 3→1 (3+1)
        let job = TrainJob {
            input_dim: 2,
            width: 3,
            depth: 2,
            output_dim: 1,
            ..TrainJob::default()
        };
        assert_eq!(job.parameter_count(), 25);
    }
}
