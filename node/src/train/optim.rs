//! Optimisers over flat `f32` slices: SGD with (optionally Nesterov) momentum and AdamW with
//! decoupled weight decay.
//!
//! An [`Optimizer`] updates any slice it was sized for: the whole model (sync, DiLoCo inner and
//! outer steps) or one rank's parameter shard (sharded strategy). Its whole state is a step
//! counter and two buffers, so a strategy can commit it in a checkpoint and restore it.

use super::TrainError;

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
            return Err(TrainError::Shape(format!(
                "optimizer state: buffers of {} / {} values, expected {} / {}",
                state.first.len(),
                state.second.len(),
                self.state.first.len(),
                self.state.second.len()
            )));
        }
        self.state = state;
        Ok(())
    }

    /// One update of `params` along `grad` (both the length the optimiser was sized for).
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) -> Result<(), TrainError> {
        if params.len() != self.state.first.len() || grad.len() != params.len() {
            return Err(TrainError::Shape(format!(
                "optimizer step: {} parameters and {} gradients, optimizer sized for {}",
                params.len(),
                grad.len(),
                self.state.first.len()
            )));
        }
        self.state.t += 1;
        match self.config {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
