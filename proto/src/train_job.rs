//! The defaults of a train job, in the one place both sides read them: the controller (to cut
//! parameter shards of the right length) and the node (to build the model it trains).

use crate::v1::TrainJob;

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
    /// Student activation.
    pub const ACTIVATION: &str = "relu";
    /// Sync and sharded evaluate every this many steps.
    pub const EVAL_EVERY: u32 = 5;
    /// Held-out samples per evaluation.
    pub const EVAL_SAMPLES: u32 = 512;
    /// Sync and sharded commit every this many steps.
    pub const COMMIT_EVERY: u32 = 10;
    /// Collective algorithm of the world group.
    pub const ALGORITHM: &str = "auto";
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
        Self {
            strategies: self.strategies.clone(),
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
            activation: or_str(&self.activation, defaults::ACTIVATION),
            teacher_width: or(self.teacher_width, defaults::TEACHER_WIDTH),
            teacher_depth: or(self.teacher_depth, defaults::TEACHER_DEPTH),
            eval_every: or(self.eval_every, defaults::EVAL_EVERY),
            eval_samples: or(self.eval_samples, defaults::EVAL_SAMPLES),
            commit_every: or(self.commit_every, defaults::COMMIT_EVERY),
            algorithm: or_str(&self.algorithm, defaults::ALGORITHM),
        }
    }

    /// Parameters of the student MLP the resolved job trains: `input → width`, `depth − 1`
    /// hidden `width → width` layers, `width → output`, each with a bias.
    pub fn parameter_count(&self) -> u64 {
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
        assert_eq!(r.algorithm, "auto");
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
