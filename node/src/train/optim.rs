//! Optimisers over flat `f32` slices: SGD with (optionally Nesterov) momentum and AdamW with
//! decoupled weight decay.
//!
//! An [`Optimizer`] updates any slice it was sized for: the whole model (sync, DiLoCo inner and
//! outer steps) or one rank's parameter shard (sharded strategy). Its whole state is a step
//! counter and two buffers, so a strategy can commit it in a checkpoint and restore it.

use super::{ShapeError, TrainError};

/// Which optimiser, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerConfig {
    /// SGD: `buf = μ·buf + g`; step `lr·buf`, or `lr·(g + μ·buf)` with Nesterov (PyTorch's
    /// formulation). `weight_decay` is added to the gradient (coupled L2).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum μ (0 = plain SGD).
        momentum: f32,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
    },
    /// AdamW (Loshchilov & Hutter): Adam with bias correction and decoupled weight decay
    /// `p ← p·(1 − lr·wd)` before the Adam step.
    AdamW {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator epsilon.
        eps: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// AdamW with β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub fn adamw(lr: f32) -> Self {
        Self::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// Plain SGD with momentum `momentum`.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        Self::Sgd {
            lr,
            momentum,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// The DiLoCo outer optimiser: SGD with Nesterov momentum (DiLoCo: lr 0.7, μ 0.9).
    pub fn nesterov(lr: f32, momentum: f32) -> Self {
        Self::Sgd {
            lr,
            momentum,
            nesterov: true,
            weight_decay: 0.0,
        }
    }
}

/// Everything an optimiser remembers between steps.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Steps taken.
    pub t: u64,
    /// Momentum buffer (SGD) or first moment (AdamW).
    pub first: Vec<f32>,
    /// Second moment (AdamW); empty for SGD.
    pub second: Vec<f32>,
}

/// An optimiser sized for a slice of `len` parameters.
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    state: OptimizerState,
}

impl Optimizer {
    /// A fresh optimiser for `len` parameters.
    pub fn new(config: OptimizerConfig, len: usize) -> Self {
        let second = match config {
            OptimizerConfig::AdamW { .. } => vec![0.0; len],
            OptimizerConfig::Sgd { .. } => Vec::new(),
        };
        Self {
            config,
            state: OptimizerState {
                t: 0,
                first: vec![0.0; len],
                second,
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> OptimizerConfig {
        self.config
    }

    /// The state, for a checkpoint.
    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    /// Replaces the state with one from a checkpoint; its buffers must fit this optimiser.
    pub fn restore(&mut self, state: OptimizerState) -> Result<(), TrainError> {
        if state.first.len() != self.state.first.len()
            || state.second.len() != self.state.second.len()
        {
            return Err(ShapeError::OptimizerState {
                first: state.first.len(),
                second: state.second.len(),
                want_first: self.state.first.len(),
                want_second: self.state.second.len(),
            }
            .into());
        }
        self.state = state;
        Ok(())
    }

    /// One update of `params` along `grad` (both the length the optimiser was sized for).
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) -> Result<(), TrainError> {
        self.step_scaled(params, grad, 1.0)
    }

    /// One update with the learning rate multiplied by `lr_scale` (a schedule's factor; the
    /// decoupled weight decay scales with it, as in PyTorch).
    pub fn step_scaled(
        &mut self,
        params: &mut [f32],
        grad: &[f32],
        lr_scale: f32,
    ) -> Result<(), TrainError> {
        if params.len() != self.state.first.len() || grad.len() != params.len() {
            return Err(ShapeError::OptimizerStep {
                params: params.len(),
                grads: grad.len(),
                sized_for: self.state.first.len(),
            }
            .into());
        }
        self.state.t += 1;
        match self.config {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => {
                let lr = lr * lr_scale;
                for ((p, &g), buf) in params.iter_mut().zip(grad).zip(&mut self.state.first) {
                    let g = g + weight_decay * *p;
                    if momentum == 0.0 {
                        *p -= lr * g;
                        continue;
                    }
                    *buf = momentum * *buf + g;
                    let update = if nesterov { g + momentum * *buf } else { *buf };
                    *p -= lr * update;
                }
            }
            OptimizerConfig::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let lr = lr * lr_scale;
                let t = self.state.t.min(i32::MAX as u64) as i32;
                let bias1 = 1.0 - f64::from(beta1).powi(t);
                let bias2 = 1.0 - f64::from(beta2).powi(t);
                let step_size = (f64::from(lr) / bias1) as f32;
                let bias2_sqrt = bias2.sqrt() as f32;
                let decay = 1.0 - lr * weight_decay;
                for (((p, &g), m), v) in params
                    .iter_mut()
                    .zip(grad)
                    .zip(&mut self.state.first)
                    .zip(&mut self.state.second)
                {
                    *p *= decay;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    *p -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
                }
            }
        }
        Ok(())
    }
}

/// The learning-rate schedule of the per-step optimiser: linear warm-up, then cosine decay to
/// a floor (nanoGPT's `get_lr`); constant without warm-up and decay.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LrSchedule {
    /// Steps of linear warm-up.
    pub warmup: u64,
    /// Step at which the cosine reaches the floor (0 = no decay).
    pub decay_steps: u64,
    /// The floor as a fraction of the base learning rate.
    pub min_ratio: f32,
}

impl LrSchedule {
    /// The factor on the base learning rate for optimiser step `t` (1-based).
    pub fn factor(&self, t: u64) -> f32 {
        if t <= self.warmup && self.warmup > 0 {
            return t as f32 / self.warmup as f32;
        }
        if self.decay_steps == 0 {
            return 1.0;
        }
        if t >= self.decay_steps {
            return self.min_ratio;
        }
        let span = self.decay_steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = (t - self.warmup) as f64 / span;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (f64::from(self.min_ratio) + cosine * (1.0 - f64::from(self.min_ratio))) as f32
    }
}

/// Scales `grad` so its L2 norm is at most `max_norm` (no-op for `max_norm` ≤ 0); returns the
/// norm before clipping.
pub fn clip_grad_norm(grad: &mut [f32], max_norm: f32) -> f64 {
    let norm = grad
        .iter()
        .map(|&g| f64::from(g) * f64::from(g))
        .sum::<f64>()
        .sqrt();
    if max_norm > 0.0 && norm > f64::from(max_norm) {
        let scale = (f64::from(max_norm) / (norm + 1e-6)) as f32;
        grad.iter_mut().for_each(|g| *g *= scale);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = LrSchedule {
            warmup: 10,
            decay_steps: 110,
            min_ratio: 0.1,
        };
        assert!((s.factor(1) - 0.1).abs() < 1e-6);
        assert!((s.factor(10) - 1.0).abs() < 1e-6);
        assert!((s.factor(60) - 0.55).abs() < 1e-6);
        assert!((s.factor(110) - 0.1).abs() < 1e-6);
        assert!((s.factor(500) - 0.1).abs() < 1e-6);
        assert!(s.factor(30) > s.factor(40));
        assert_eq!(LrSchedule::default().factor(7), 1.0);
    }

    #[test]
    fn clipping_caps_the_norm_and_keeps_the_direction() {
        let mut g = [3.0f32, 4.0];
        assert!((clip_grad_norm(&mut g, 1.0) - 5.0).abs() < 1e-9);
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
        let mut small = [0.3f32, 0.4];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, [0.3, 0.4]);
    }

    #[test]
    fn sgd_with_momentum_matches_hand_computation() {
        let mut opt = Optimizer::new(OptimizerConfig::sgd(0.1, 0.9), 1);
        let mut p = [1.0f32];
        opt.step(&mut p, &[1.0]).unwrap(); // buf 1 → p 0.9
        opt.step(&mut p, &[1.0]).unwrap(); // buf 1.9 → p 0.71
        assert!((p[0] - 0.71).abs() < 1e-6);
    }

    #[test]
    fn nesterov_matches_pytorch_formulation() {
        let mut opt = Optimizer::new(OptimizerConfig::nesterov(0.7, 0.9), 1);
        let mut p = [0.0f32];
        opt.step(&mut p, &[1.0]).unwrap(); // buf 1, update 1 + 0.9 = 1.9 → −1.33
        assert!((p[0] + 1.33).abs() < 1e-6);
        opt.step(&mut p, &[1.0]).unwrap(); // buf 1.9, update 1 + 1.71 = 2.71 → −1.33 − 1.897
        assert!((p[0] + 1.33 + 1.897).abs() < 1e-5);
    }

    #[test]
    fn adamw_first_step_moves_by_lr_and_decays_weights() {
        let mut opt = Optimizer::new(
            OptimizerConfig::AdamW {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 0.0,
                weight_decay: 0.5,
            },
            2,
        );
        let mut p = [1.0f32, -1.0];
        opt.step(&mut p, &[3.0, -0.001]).unwrap();
        // decay: ×(1 − 0.005); bias-corrected Adam's first step is lr·sign(g).
        assert!((p[0] - (0.995 - 0.01)).abs() < 1e-6, "{}", p[0]);
        assert!((p[1] - (-0.995 + 0.01)).abs() < 1e-6, "{}", p[1]);
    }

    #[test]
    fn restore_checks_sizes_and_resumes_identically() {
        let mut a = Optimizer::new(OptimizerConfig::adamw(0.1), 3);
        let mut pa = [1.0f32, 2.0, 3.0];
        a.step(&mut pa, &[0.1, 0.2, 0.3]).unwrap();
        let mut b = Optimizer::new(OptimizerConfig::adamw(0.1), 3);
        b.restore(a.state().clone()).unwrap();
        let mut pb = pa;
        a.step(&mut pa, &[0.3, 0.2, 0.1]).unwrap();
        b.step(&mut pb, &[0.3, 0.2, 0.1]).unwrap();
        assert_eq!(pa, pb);
        assert!(
            b.restore(
                Optimizer::new(OptimizerConfig::adamw(0.1), 2)
                    .state()
                    .clone()
            )
            .is_err()
        );
    }
}
