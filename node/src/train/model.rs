//! A multilayer perceptron whose parameters live in ONE flat `Vec<f32>`.
//!
//! Keeping every weight and bias in a single contiguous vector is what lets the strategies hand
//! the whole model (or its gradient, or a DiLoCo parameter delta) to a collective as one
//! `&mut [f32]`, and lets the sharded strategy own a plain index range of it.
//!
//! Layout: layer after layer, each layer's weight matrix row-major as `[fan_out][fan_in]`,
//! followed by its `fan_out` biases. Forward and backward passes are plain Rust with the inner
//! loops running over contiguous rows (dot products and `axpy`s the compiler vectorises), no
//! `unsafe`. Hidden layers use ReLU or tanh; the output layer is linear; the loss is the mean
//! squared error over every output of every sample, accumulated in `f64`.

use netem_profiles::rng::LinkRng;

use super::{ConfigError, ShapeError, TrainError};

/// The non-linearity of the hidden layers: the job vocabulary's
/// [`Activation`](spacefabric_proto::train_names::Activation), said once in the proto crate.
pub use spacefabric_proto::train_names::Activation;

/// The shape of an MLP: `input → width (× depth hidden layers) → output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlpSpec {
    /// Features per sample.
    pub input: usize,
    /// Units per hidden layer.
    pub width: usize,
    /// Number of hidden layers (0 = a linear model).
    pub depth: usize,
    /// Outputs per sample.
    pub output: usize,
    /// Non-linearity of the hidden layers.
    pub activation: Activation,
}

impl MlpSpec {
    /// The layer sizes, input first, output last.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = Vec::with_capacity(self.depth + 2);
        sizes.push(self.input);
        sizes.extend(std::iter::repeat_n(self.width, self.depth));
        sizes.push(self.output);
        sizes
    }
}

/// Where one layer's weights and biases sit in the flat parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layer {
    fan_in: usize,
    fan_out: usize,
    /// Offset of the `[fan_out][fan_in]` weight matrix.
    weights: usize,
    /// Offset of the `fan_out` biases.
    bias: usize,
}

/// An MLP: the layout of its flat parameter vector and the passes over it. The parameters
/// themselves are owned by the caller (a strategy), so several copies (local model, global
/// model, shards) can share one `Mlp`.
#[derive(Debug, Clone)]
pub struct Mlp {
    spec: MlpSpec,
    layers: Vec<Layer>,
    param_count: usize,
}

/// Scratch buffers for one batch size: the post-activation output of every layer and the
/// back-propagated error signals. Reused across steps so a step allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    batch: usize,
    /// `acts[l]` = output of layer `l` (post-activation for hidden layers), `[batch][fan_out]`.
    acts: Vec<Vec<f32>>,
    delta: Vec<f32>,
    delta_prev: Vec<f32>,
}

impl Mlp {
    /// Lays out the parameters of `spec`. Zero-sized layers and parameter counts that overflow
    /// are configuration errors.
    pub fn new(spec: MlpSpec) -> Result<Self, TrainError> {
        if spec.input == 0 || spec.output == 0 || (spec.depth > 0 && spec.width == 0) {
            return Err(ConfigError::MlpSize {
                input: spec.input,
                output: spec.output,
                width: spec.width,
            }
            .into());
        }
        let sizes = spec.sizes();
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        let mut offset = 0usize;
        for (layer, pair) in sizes.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let too_large = || ConfigError::MlpTooLarge {
                layer,
                fan_in,
                fan_out,
            };
            let weights = offset;
            let bias = fan_in
                .checked_mul(fan_out)
                .and_then(|w| weights.checked_add(w))
                .ok_or_else(too_large)?;
            offset = bias.checked_add(fan_out).ok_or_else(too_large)?;
            layers.push(Layer {
                fan_in,
                fan_out,
                weights,
                bias,
            });
        }
        Ok(Self {
            spec,
            layers,
            param_count: offset,
        })
    }

    /// The shape this model was built from.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// Length of the flat parameter (and gradient) vector.
    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// Fresh parameters: weights uniform in ±sqrt(6 / fan_in) for ReLU (He) or
    /// ±sqrt(3 / fan_in) for tanh (LeCun), biases zero. The same seed gives the same vector.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut params = vec![0.0f32; self.param_count];
        let mut rng = LinkRng::new(seed);
        let gain = match self.spec.activation {
            Activation::Relu => 6.0,
            Activation::Tanh => 3.0,
        };
        for layer in &self.layers {
            let bound = (gain / layer.fan_in as f64).sqrt();
            let weights = &mut params[layer.weights..layer.bias];
            for w in weights {
                *w = ((rng.next_f64() * 2.0 - 1.0) * bound) as f32;
            }
        }
        params
    }

    fn check(
        &self,
        params: &[f32],
        inputs: &[f32],
        targets: Option<&[f32]>,
        batch: usize,
    ) -> Result<(), TrainError> {
        ShapeError::check_param_vector("parameters", "model", params.len(), self.param_count)?;
        if inputs.len() != batch * self.spec.input {
            return Err(ShapeError::Inputs {
                got: inputs.len(),
                batch,
                features: self.spec.input,
            }
            .into());
        }
        if let Some(targets) = targets
            && targets.len() != batch * self.spec.output
        {
            return Err(ShapeError::Targets {
                got: targets.len(),
                batch,
                outputs: self.spec.output,
            }
            .into());
        }
        Ok(())
    }

    /// Runs the batch `inputs` (`[batch][input]`) through the model; returns the outputs
    /// (`[batch][output]`), which live in `ws`.
    pub fn forward<'w>(
        &self,
        params: &[f32],
        inputs: &[f32],
        batch: usize,
        ws: &'w mut Workspace,
    ) -> Result<&'w [f32], TrainError> {
        self.check(params, inputs, None, batch)?;
        self.forward_unchecked(params, inputs, batch, ws);
        Ok(ws.acts.last().map(Vec::as_slice).unwrap_or(&[]))
    }

    fn prepare(&self, batch: usize, ws: &mut Workspace) {
        if ws.batch != batch || ws.acts.len() != self.layers.len() {
            ws.batch = batch;
            ws.acts = self
                .layers
                .iter()
                .map(|l| vec![0.0; batch * l.fan_out])
                .collect();
            let widest = self.layers.iter().map(|l| l.fan_in.max(l.fan_out)).max();
            let widest = widest.unwrap_or(0) * batch;
            ws.delta = vec![0.0; widest];
            ws.delta_prev = vec![0.0; widest];
        }
    }

    fn forward_unchecked(&self, params: &[f32], inputs: &[f32], batch: usize, ws: &mut Workspace) {
        self.prepare(batch, ws);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            // Split so the previous layer's activations can be read while this one is written.
            let (before, rest) = ws.acts.split_at_mut(l);
            let x: &[f32] = if l == 0 { inputs } else { &before[l - 1] };
            let y = &mut rest[0];
            let weights = &params[layer.weights..layer.bias];
            let bias = &params[layer.bias..layer.bias + layer.fan_out];
            // o outer, b inner: the weight row stays in L1 while the batch streams past it.
            for (o, w_row) in weights.chunks_exact(layer.fan_in).enumerate() {
                for b in 0..batch {
                    let x_row = &x[b * layer.fan_in..(b + 1) * layer.fan_in];
                    y[b * layer.fan_out + o] = dot(w_row, x_row) + bias[o];
                }
            }
            if l != last {
                match self.spec.activation {
                    Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
                    Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
                }
            }
        }
    }

    /// Mean squared error of the model on a batch (no gradient).
    pub fn loss(
        &self,
        params: &[f32],
        inputs: &[f32],
        targets: &[f32],
        batch: usize,
        ws: &mut Workspace,
    ) -> Result<f64, TrainError> {
        self.check(params, inputs, Some(targets), batch)?;
        self.forward_unchecked(params, inputs, batch, ws);
        let out = ws.acts.last().map(Vec::as_slice).unwrap_or(&[]);
        Ok(mse(out, targets))
    }

    /// Mean squared error on a batch and its gradient with respect to every parameter, written
    /// (not added) into `grad`.
    pub fn loss_and_grad(
        &self,
        params: &[f32],
        inputs: &[f32],
        targets: &[f32],
        batch: usize,
        grad: &mut [f32],
        ws: &mut Workspace,
    ) -> Result<f64, TrainError> {
        self.check(params, inputs, Some(targets), batch)?;
        ShapeError::check_param_vector("gradient", "model", grad.len(), self.param_count)?;
        self.forward_unchecked(params, inputs, batch, ws);
        let Workspace {
            acts,
            delta,
            delta_prev,
            ..
        } = ws;
        let Some(out) = acts.last() else {
            return Ok(0.0);
        };
        let loss = mse(out, targets);

        // dL/d(output) for L = mean over batch × outputs of (y - t)².
        let scale = 2.0 / (out.len() as f32);
        let n_out = out.len();
        for ((d, y), t) in delta[..n_out].iter_mut().zip(out).zip(targets) {
            *d = scale * (y - t);
        }
        grad.fill(0.0);
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            let x: &[f32] = if l == 0 { inputs } else { &acts[l - 1] };
            let d = &delta[..batch * layer.fan_out];
            let (grad_w, grad_rest) =
                grad[layer.weights..].split_at_mut(layer.bias - layer.weights);
            let grad_b = &mut grad_rest[..layer.fan_out];
            let weights = &params[layer.weights..layer.bias];
            let need_dx = l > 0;
            let dx = &mut delta_prev[..batch * layer.fan_in];
            if need_dx {
                dx.fill(0.0);
            }
            for (o, (w_row, gw_row)) in weights
                .chunks_exact(layer.fan_in)
                .zip(grad_w.chunks_exact_mut(layer.fan_in))
                .enumerate()
            {
                let mut gb = 0.0f32;
                for b in 0..batch {
                    let g = d[b * layer.fan_out + o];
                    if g == 0.0 {
                        continue;
                    }
                    gb += g;
                    let range = b * layer.fan_in..(b + 1) * layer.fan_in;
                    axpy(gw_row, g, &x[range.clone()]);
                    if need_dx {
                        axpy(&mut dx[range], g, w_row);
                    }
                }
                grad_b[o] = gb;
            }
            if need_dx {
                // Through the previous hidden layer's non-linearity, using its stored output.
                let a = &acts[l - 1];
                match self.spec.activation {
                    Activation::Relu => {
                        for (g, a) in dx.iter_mut().zip(a) {
                            if *a <= 0.0 {
                                *g = 0.0;
                            }
                        }
                    }
                    Activation::Tanh => {
                        for (g, a) in dx.iter_mut().zip(a) {
                            *g *= 1.0 - a * a;
                        }
                    }
                }
                std::mem::swap(delta, delta_prev);
            }
        }
        Ok(loss)
    }
}

fn mse(out: &[f32], targets: &[f32]) -> f64 {
    if out.is_empty() {
        return 0.0;
    }
    let sum: f64 = out
        .iter()
        .zip(targets)
        .map(|(y, t)| {
            let e = f64::from(*y) - f64::from(*t);
            e * e
        })
        .sum();
    sum / out.len() as f64
}

/// Dot product with eight independent accumulators, so the loop vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a·x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_batch(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = LinkRng::new(seed);
        (0..n).map(|_| rng.next_normal() as f32).collect()
    }

    /// Central finite differences of the f64-accumulated loss against the analytic gradient.
    fn gradient_check(activation: Activation) {
        let spec = MlpSpec {
            input: 5,
            width: 7,
            depth: 2,
            output: 3,
            activation,
        };
        let mlp = Mlp::new(spec).unwrap();
        let batch = 4;
        let mut params = mlp.init_params(11);
        // Non-zero biases so they are exercised too.
        for (i, p) in params.iter_mut().enumerate() {
            if *p == 0.0 {
                *p = 0.05 * ((i % 7) as f32 - 3.0);
            }
        }
        let x = random_batch(1, batch * 5);
        let t = random_batch(2, batch * 3);
        let mut ws = Workspace::default();
        let mut grad = vec![0.0; mlp.param_count()];
        mlp.loss_and_grad(&params, &x, &t, batch, &mut grad, &mut ws)
            .unwrap();
        let eps = 1e-3f32;
        let mut worst = 0.0f64;
        for i in 0..params.len() {
            let orig = params[i];
            params[i] = orig + eps;
            let up = mlp.loss(&params, &x, &t, batch, &mut ws).unwrap();
            params[i] = orig - eps;
            let down = mlp.loss(&params, &x, &t, batch, &mut ws).unwrap();
            params[i] = orig;
            let numeric = (up - down) / (2.0 * f64::from(eps));
            let analytic = f64::from(grad[i]);
            let err = (numeric - analytic).abs() / (1e-2 + numeric.abs().max(analytic.abs()));
            worst = worst.max(err);
            assert!(
                err < 2e-2,
                "{activation:?} param {i}: analytic {analytic} numeric {numeric}"
            );
        }
        assert!(worst < 2e-2);
    }

    #[test]
    fn gradient_matches_finite_differences_tanh() {
        gradient_check(Activation::Tanh);
    }

    #[test]
    fn gradient_matches_finite_differences_relu() {
        gradient_check(Activation::Relu);
    }

    #[test]
    fn gradient_check_would_catch_a_wrong_gradient() {
        // The check above is only meaningful if a broken gradient fails it: perturb the
        // analytic gradient of one weight and confirm the relative error is large.
        let spec = MlpSpec {
            input: 3,
            width: 4,
            depth: 1,
            output: 2,
            activation: Activation::Tanh,
        };
        let mlp = Mlp::new(spec).unwrap();
        let params = mlp.init_params(3);
        let x = random_batch(4, 6);
        let t = random_batch(5, 4);
        let mut ws = Workspace::default();
        let mut grad = vec![0.0; mlp.param_count()];
        mlp.loss_and_grad(&params, &x, &t, 2, &mut grad, &mut ws)
            .unwrap();
        let mut p = params.clone();
        p[0] += 1e-3;
        let up = mlp.loss(&p, &x, &t, 2, &mut ws).unwrap();
        p[0] -= 2e-3;
        let down = mlp.loss(&p, &x, &t, 2, &mut ws).unwrap();
        let numeric = (up - down) / 2e-3;
        assert!((numeric - f64::from(grad[0])).abs() < 1e-3);
        assert!((numeric - f64::from(grad[0] * 2.0 + 0.1)).abs() > 1e-2);
    }

    #[test]
    fn layout_counts_every_weight_and_bias() {
        let mlp = Mlp::new(MlpSpec {
            input: 32,
            width: 64,
            depth: 2,
            output: 8,
            activation: Activation::Relu,
        })
        .unwrap();
        assert_eq!(mlp.param_count(), 32 * 64 + 64 + 64 * 64 + 64 + 64 * 8 + 8);
        let big = Mlp::new(MlpSpec {
            input: 1024,
            width: 4096,
            depth: 2,
            output: 1024,
            activation: Activation::Relu,
        })
        .unwrap();
        assert!(big.param_count() > 20_000_000);
    }

    #[test]
    fn shape_errors_are_reported_not_panicked() {
        let mlp = Mlp::new(MlpSpec {
            input: 2,
            width: 3,
            depth: 1,
            output: 1,
            activation: Activation::Tanh,
        })
        .unwrap();
        let params = mlp.init_params(0);
        let mut ws = Workspace::default();
        assert!(matches!(
            mlp.loss(&params, &[1.0; 3], &[0.0; 1], 1, &mut ws),
            Err(TrainError::Shape(_))
        ));
        assert!(
            Mlp::new(MlpSpec {
                input: 0,
                width: 3,
                depth: 1,
                output: 1,
                activation: Activation::Tanh
            })
            .is_err()
        );
    }
}
