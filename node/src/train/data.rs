//! The synthetic, learnable task: a fixed random *teacher* MLP generated from the job seed maps
//! random inputs to targets; the student model learns to imitate it.
//!
//! Sample `i` of a job is a pure function of `(seed, i)`: its input is drawn from a generator
//! seeded by the pair, its target is the teacher's output. So every node generates exactly its
//! own data shard (a range of sample indices handed out by the plan) without downloading
//! anything, and two runs with the same seed see the same data. Held-out evaluation samples
//! come from a disjoint index range far above any training index.

use std::ops::Range;

use netem_profiles::rng::LinkRng;

use super::model::{Activation, Mlp, MlpSpec, Workspace};
use super::{ConfigError, TrainError};

/// First index of the held-out evaluation samples; training indices must stay below it.
pub const EVAL_BASE: u64 = 1 << 62;

/// The task: input and output sizes, the teacher's shape, label noise, and the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The job seed: fixes the teacher and every sample.
    pub seed: u64,
    /// Input features per sample.
    pub input: usize,
    /// Outputs per sample.
    pub output: usize,
    /// Teacher hidden width.
    pub teacher_width: usize,
    /// Teacher hidden layers.
    pub teacher_depth: usize,
    /// Standard deviation of Gaussian noise added to training targets (0 = none); held-out
    /// targets are always clean.
    pub noise: f32,
}

impl Default for TaskSpec {
    /// 32 → 64 × 2 tanh → 8, no noise, seed 1.
    fn default() -> Self {
        Self {
            seed: 1,
            input: 32,
            output: 8,
            teacher_width: 64,
            teacher_depth: 2,
            noise: 0.0,
        }
    }
}

/// The fixed random teacher network of a job.
#[derive(Debug, Clone)]
pub struct Teacher {
    spec: TaskSpec,
    mlp: Mlp,
    params: Vec<f32>,
    /// Divides the teacher's raw outputs so targets have unit standard deviation.
    scale: f32,
}

fn mix(seed: u64, index: u64, stream: u64) -> u64 {
    // A cheap, well-spread combination; LinkRng runs it through SplitMix64 again.
    seed.rotate_left(29) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream
}

impl Teacher {
    /// Builds the teacher of `spec` (deterministic in `spec.seed`).
    pub fn new(spec: TaskSpec) -> Result<Self, TrainError> {
        let mlp = Mlp::new(MlpSpec {
            input: spec.input,
            width: spec.teacher_width,
            depth: spec.teacher_depth,
            output: spec.output,
            activation: Activation::Tanh,
        })?;
        let mut params = mlp.init_params(mix(spec.seed, 0, 0x7eac_4e12));
        // Larger-than-init weights make the teacher properly non-linear.
        params.iter_mut().for_each(|p| *p *= 1.5);
        let mut teacher = Self {
            spec,
            mlp,
            params,
            scale: 1.0,
        };
        // Normalise with 512 probe samples from the held-out range.
        let probe = teacher.generate(EVAL_BASE..EVAL_BASE + 512, false)?;
        let n = probe.targets.len() as f64;
        let mean = probe.targets.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = probe
            .targets
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        teacher.scale = var.sqrt().max(1e-6) as f32;
        Ok(teacher)
    }

    /// The task this teacher belongs to.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn generate(&self, range: Range<u64>, noisy: bool) -> Result<Samples, TrainError> {
        let n = usize::try_from(range.end.saturating_sub(range.start)).map_err(|_| {
            ConfigError::DataRangeTooLarge {
                range: range.clone(),
            }
        })?;
        let (d, k) = (self.spec.input, self.spec.output);
        let mut inputs = vec![0.0f32; n * d];
        for (row, index) in inputs.chunks_exact_mut(d).zip(range.clone()) {
            let mut rng = LinkRng::new(mix(self.spec.seed, index, 0x1a9e));
            row.iter_mut().for_each(|v| *v = rng.next_normal() as f32);
        }
        let mut targets = vec![0.0f32; n * k];
        let mut ws = Workspace::default();
        const CHUNK: usize = 256;
        for (c, (x, t)) in inputs
            .chunks(CHUNK * d)
            .zip(targets.chunks_mut(CHUNK * k))
            .enumerate()
        {
            let rows = x.len() / d;
            let y = self.mlp.forward(&self.params, x, rows, &mut ws)?;
            for (dst, src) in t.iter_mut().zip(y) {
                *dst = src / self.scale;
            }
            if noisy && self.spec.noise > 0.0 {
                for (r, trow) in t.chunks_exact_mut(k).enumerate() {
                    let index = range.start + (c * CHUNK + r) as u64;
                    let mut rng = LinkRng::new(mix(self.spec.seed, index, 0x40_15e));
                    trow.iter_mut()
                        .for_each(|v| *v += self.spec.noise * rng.next_normal() as f32);
                }
            }
        }
        Ok(Samples {
            range,
            inputs,
            targets,
        })
    }

    /// The training samples with indices in `range` (one node's data shard).
    pub fn shard(&self, range: Range<u64>) -> Result<Samples, TrainError> {
        if range.end > EVAL_BASE {
            return Err(ConfigError::ShardInHeldOut {
                shard: range,
                eval_base: EVAL_BASE,
            }
            .into());
        }
        self.generate(range, true)
    }

    /// `n` held-out evaluation samples (the same for every node).
    pub fn eval_set(&self, n: usize) -> Result<Samples, TrainError> {
        self.generate(EVAL_BASE..EVAL_BASE + n as u64, false)
    }
}

/// A block of generated samples: inputs `[n][input]`, targets `[n][output]`.
#[derive(Debug, Clone)]
pub struct Samples {
    /// The sample indices these rows are.
    pub range: Range<u64>,
    /// Inputs, row-major.
    pub inputs: Vec<f32>,
    /// Targets, row-major.
    pub targets: Vec<f32>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        usize::try_from(self.range.end - self.range.start).unwrap_or(usize::MAX)
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Copies the mini-batch of step `step` into `x` / `y` (`batch` rows each): rows
    /// `step·batch .. step·batch + batch` of the shard, wrapping around (epochs).
    pub fn batch_into(&self, step: u64, batch: usize, x: &mut Vec<f32>, y: &mut Vec<f32>) {
        let n = self.len();
        let d = self.inputs.len() / n.max(1);
        let k = self.targets.len() / n.max(1);
        x.clear();
        y.clear();
        if n == 0 {
            return;
        }
        let start = (step as u128 * batch as u128 % n as u128) as usize;
        for j in 0..batch {
            let r = (start + j) % n;
            x.extend_from_slice(&self.inputs[r * d..(r + 1) * d]);
            y.extend_from_slice(&self.targets[r * k..(r + 1) * k]);
        }
    }

    /// The sample indices the batch of `step` uses (for the coverage tests).
    pub fn batch_indices(&self, step: u64, batch: usize) -> Vec<u64> {
        let n = self.len() as u64;
        if n == 0 {
            return Vec::new();
        }
        let start = (u128::from(step) * batch as u128 % u128::from(n)) as u64;
        (0..batch as u64)
            .map(|j| self.range.start + (start + j) % n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_samples_and_shards_agree_with_the_whole() {
        let teacher = Teacher::new(TaskSpec::default()).unwrap();
        let whole = teacher.shard(0..100).unwrap();
        let part = teacher.shard(40..60).unwrap();
        let d = 32;
        assert_eq!(part.inputs[..], whole.inputs[40 * d..60 * d]);
        assert_eq!(part.targets[..], whole.targets[40 * 8..60 * 8]);
        let other = Teacher::new(TaskSpec {
            seed: 2,
            ..TaskSpec::default()
        })
        .unwrap();
        assert_ne!(other.shard(0..10).unwrap().inputs, whole.inputs[..10 * d]);
    }

    #[test]
    fn targets_are_normalised() {
        let teacher = Teacher::new(TaskSpec::default()).unwrap();
        let eval = teacher.eval_set(512).unwrap();
        let n = eval.targets.len() as f64;
        let mean: f64 = eval.targets.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var: f64 = eval
            .targets
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!((var - 1.0).abs() < 1e-3, "variance {var}");
    }

    #[test]
    fn a_shard_reaching_into_held_out_data_is_refused() {
        let teacher = Teacher::new(TaskSpec::default()).unwrap();
        assert!(teacher.shard(EVAL_BASE - 1..EVAL_BASE + 1).is_err());
    }
}
