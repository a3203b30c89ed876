//! A decoder-only transformer language model (nanoGPT's GPT: pre-LayerNorm blocks of causal
//! multi-head self-attention and a GELU MLP, no biases, the output head tied to the token
//! embedding) whose parameters live in ONE flat `Vec<f32>`, like the MLP's.
//!
//! The forward pass is built from candle tensors and differentiated by candle's autograd
//! (`Tensor::backward`) on the CPU: each call wraps the slices of the flat vector as candle
//! variables, runs the batch, and copies every variable's gradient back into the flat gradient
//! vector. So the strategies keep seeing one flat vector and a gradient function, and the
//! collectives move the whole model as one `&mut [f32]`.
//!
//! Layout of the flat vector, in order: `wte [vocab][embd]`, `wpe [ctx][embd]`, then per
//! layer `ln1 [embd]`, `attn [3·embd][embd]`, `attn_proj [embd][embd]`, `ln2 [embd]`,
//! `fc [4·embd][embd]`, `fc_proj [embd][4·embd]`, and last `ln_f [embd]` (weights of linear
//! layers row-major as `[out][in]`, PyTorch's convention).

use candle_core::{D, DType, Device, Tensor, Var};
use netem_profiles::rng::LinkRng;

use super::{ConfigError, ShapeError, TrainError};

/// The shape of a transformer LM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformerSpec {
    /// Tokens in the vocabulary.
    pub vocab: usize,
    /// Context length (tokens per window).
    pub ctx: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads per block (must divide `embd`).
    pub heads: usize,
    /// Embedding width.
    pub embd: usize,
}

/// One named tensor of the flat vector.
#[derive(Debug, Clone)]
struct Slot {
    offset: usize,
    dims: Vec<usize>,
}

impl Slot {
    fn len(&self) -> usize {
        self.dims.iter().product()
    }
}

/// Slots of one block.
#[derive(Debug, Clone, Copy)]
struct Block {
    ln1: usize,
    attn: usize,
    attn_proj: usize,
    ln2: usize,
    fc: usize,
    fc_proj: usize,
}

/// A transformer LM: the layout of its flat parameter vector and the passes over it.
#[derive(Debug, Clone)]
pub struct Transformer {
    spec: TransformerSpec,
    slots: Vec<Slot>,
    blocks: Vec<Block>,
    param_count: usize,
    /// F32 for training; F64 makes the finite-difference test exact enough.
    dtype: DType,
}

const WTE: usize = 0;
const WPE: usize = 1;
const LN_EPS: f64 = 1e-5;

fn candle(e: candle_core::Error) -> TrainError {
    TrainError::Transformer(e)
}

impl Transformer {
    /// Lays out the parameters of `spec`; zero sizes, heads not dividing the width and
    /// overflowing counts are configuration errors.
    pub fn new(spec: TransformerSpec) -> Result<Self, TrainError> {
        let TransformerSpec {
            vocab,
            ctx,
            layers,
            heads,
            embd,
        } = spec;
        if vocab == 0 || ctx == 0 || layers == 0 || heads == 0 || embd == 0 {
            return Err(ConfigError::TransformerSize {
                vocab,
                ctx,
                layers,
                heads,
                embd,
            }
            .into());
        }
        if !embd.is_multiple_of(heads) {
            return Err(ConfigError::TransformerHeads { heads, embd }.into());
        }
        if embd > 1 << 16 || layers > 1 << 10 || vocab > 1 << 24 || ctx > 1 << 20 {
            return Err(ConfigError::TransformerTooLarge {
                vocab,
                ctx,
                layers,
                embd,
            }
            .into());
        }
        let mut slots = Vec::new();
        let mut offset = 0usize;
        let mut push = |dims: Vec<usize>| {
            let slot = Slot { offset, dims };
            offset += slot.len();
            slots.push(slot);
            slots.len() - 1
        };
        push(vec![vocab, embd]);
        push(vec![ctx, embd]);
        let mut blocks = Vec::with_capacity(layers);
        for _ in 0..layers {
            blocks.push(Block {
                ln1: push(vec![embd]),
                attn: push(vec![3 * embd, embd]),
                attn_proj: push(vec![embd, embd]),
                ln2: push(vec![embd]),
                fc: push(vec![4 * embd, embd]),
                fc_proj: push(vec![embd, 4 * embd]),
            });
        }
        push(vec![embd]);
        Ok(Self {
            spec,
            slots,
            blocks,
            param_count: offset,
            dtype: DType::F32,
        })
    }

    /// The same model computing in f64 (tests).
    pub fn in_f64(mut self) -> Self {
        self.dtype = DType::F64;
        self
    }

    /// The shape this model was built from.
    pub fn spec(&self) -> &TransformerSpec {
        &self.spec
    }

    /// Length of the flat parameter (and gradient) vector.
    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// Fresh parameters as nanoGPT initialises them: linear and embedding weights normal with
    /// σ 0.02 (the residual projections σ 0.02/√(2·layers)), LayerNorm gains 1. The same seed
    /// gives the same vector.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut params = vec![0.0f32; self.param_count];
        let mut rng = LinkRng::new(seed);
        let proj_std = 0.02 / (2.0 * self.spec.layers as f64).sqrt();
        let mut fill = |slot: &Slot, std: f64| {
            for p in &mut params[slot.offset..slot.offset + slot.len()] {
                *p = if std == 0.0 {
                    1.0
                } else {
                    (rng.next_normal() * std) as f32
                };
            }
        };
        fill(&self.slots[WTE], 0.02);
        fill(&self.slots[WPE], 0.02);
        for b in &self.blocks {
            fill(&self.slots[b.ln1], 0.0);
            fill(&self.slots[b.attn], 0.02);
            fill(&self.slots[b.attn_proj], proj_std);
            fill(&self.slots[b.ln2], 0.0);
            fill(&self.slots[b.fc], 0.02);
            fill(&self.slots[b.fc_proj], proj_std);
        }
        if let Some(last) = self.slots.last() {
            fill(last, 0.0);
        }
        params
    }

    fn check(&self, params: &[f32], x: &[u32], y: &[u32], batch: usize) -> Result<(), TrainError> {
        ShapeError::check_param_vector(
            "parameters",
            "transformer",
            params.len(),
            self.param_count,
        )?;
        let want = batch.saturating_mul(self.spec.ctx);
        if x.len() != want || y.len() != want || batch == 0 {
            return Err(ShapeError::Tokens {
                inputs: x.len(),
                targets: y.len(),
                batch,
                ctx: self.spec.ctx,
            }
            .into());
        }
        if let Some(t) = x.iter().chain(y).find(|&&t| t as usize >= self.spec.vocab) {
            return Err(ShapeError::TokenOutsideVocab {
                token: *t,
                vocab: self.spec.vocab,
            }
            .into());
        }
        Ok(())
    }

    fn vars(&self, params: &[f32]) -> Result<Vec<Var>, TrainError> {
        let dev = Device::Cpu;
        self.slots
            .iter()
            .map(|s| {
                let data = &params[s.offset..s.offset + s.len()];
                let v = match self.dtype {
                    DType::F64 => {
                        let d: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
                        Var::from_slice(&d, s.dims.as_slice(), &dev)
                    }
                    _ => Var::from_slice(data, s.dims.as_slice(), &dev),
                };
                v.map_err(candle)
            })
            .collect()
    }

    /// The mean cross-entropy (nats per token) of the batch as a candle scalar.
    fn forward(
        &self,
        vars: &[Var],
        x: &[u32],
        y: &[u32],
        batch: usize,
    ) -> candle_core::Result<Tensor> {
        let targets = Tensor::from_slice(y, batch * self.spec.ctx, &Device::Cpu)?;
        candle_nn::loss::cross_entropy(&self.logits_tensor(vars, x, batch)?, &targets)
    }

    /// The logits `[B·T, vocab]` of the batch.
    fn logits_tensor(&self, vars: &[Var], x: &[u32], batch: usize) -> candle_core::Result<Tensor> {
        let dev = Device::Cpu;
        let TransformerSpec {
            ctx, heads, embd, ..
        } = self.spec;
        let t = |i: usize| vars[i].as_tensor();
        let hs = embd / heads;
        let bt = batch * ctx;
        let ids = Tensor::from_slice(x, bt, &dev)?;
        // [B·T, E]: token embedding plus position embedding.
        let pos = t(WPE).unsqueeze(0)?.broadcast_as((batch, ctx, embd))?;
        let mut h = t(WTE)
            .embedding(&ids)?
            .reshape((batch, ctx, embd))?
            .add(&pos)?
            .reshape((bt, embd))?;
        // Causal mask: −∞ (a large negative) above the diagonal.
        let mask: Vec<f64> = (0..ctx * ctx)
            .map(|i| if i % ctx > i / ctx { -1e9 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (ctx, ctx), &dev)?.to_dtype(self.dtype)?;
        let scale = 1.0 / (hs as f64).sqrt();
        for b in &self.blocks {
            let a = layer_norm(&h, t(b.ln1))?;
            let qkv = a.matmul(&t(b.attn).t()?)?; // [B·T, 3E]
            let split = |i: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(1, i * embd, embd)?
                    .reshape((batch, ctx, heads, hs))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?); // [B, H, T, hs]
            let att = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let o = att
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((bt, embd))?;
            h = (h + o.matmul(&t(b.attn_proj).t()?)?)?;
            let m = layer_norm(&h, t(b.ln2))?;
            let m = m.matmul(&t(b.fc).t()?)?.gelu_erf()?;
            h = (h + m.matmul(&t(b.fc_proj).t()?)?)?;
        }
        let last = self.slots.len() - 1;
        let h = layer_norm(&h, t(last))?;
        h.matmul(&t(WTE).t()?) // tied head: [B·T, vocab]
    }

    /// The logits (`[batch][ctx][vocab]`, flattened) the model predicts for `x`.
    pub fn logits(&self, params: &[f32], x: &[u32], batch: usize) -> Result<Vec<f32>, TrainError> {
        self.check(params, x, x, batch)?;
        let vars = self.vars(params)?;
        self.logits_tensor(&vars, x, batch)
            .and_then(|l| l.flatten_all())
            .and_then(|l| l.to_dtype(DType::F32))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(candle)
    }

    /// Mean cross-entropy (nats per token) of the batch `x → y` (`[batch][ctx]` tokens each).
    pub fn loss(
        &self,
        params: &[f32],
        x: &[u32],
        y: &[u32],
        batch: usize,
    ) -> Result<f64, TrainError> {
        self.check(params, x, y, batch)?;
        let vars = self.vars(params)?;
        let loss = self.forward(&vars, x, y, batch).map_err(candle)?;
        scalar(&loss)
    }

    /// Mean cross-entropy of the batch and its gradient with respect to every parameter,
    /// written (not added) into `grad`.
    pub fn loss_and_grad(
        &self,
        params: &[f32],
        x: &[u32],
        y: &[u32],
        batch: usize,
        grad: &mut [f32],
    ) -> Result<f64, TrainError> {
        self.check(params, x, y, batch)?;
        ShapeError::check_param_vector("gradient", "transformer", grad.len(), self.param_count)?;
        let vars = self.vars(params)?;
        let loss = self.forward(&vars, x, y, batch).map_err(candle)?;
        let grads = loss.backward().map_err(candle)?;
        for (slot, var) in self.slots.iter().zip(&vars) {
            let dst = &mut grad[slot.offset..slot.offset + slot.len()];
            match grads.get(var.as_tensor()) {
                Some(g) => {
                    let g = g
                        .flatten_all()
                        .and_then(|g| g.to_dtype(DType::F32))
                        .and_then(|g| g.to_vec1::<f32>())
                        .map_err(candle)?;
                    dst.copy_from_slice(&g);
                }
                None => dst.fill(0.0),
            }
        }
        scalar(&loss)
    }
}

fn scalar(t: &Tensor) -> Result<f64, TrainError> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(candle)
}

/// LayerNorm over the last dimension with gain `w` and no bias (nanoGPT's `bias=False`).
fn layer_norm(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)?.broadcast_mul(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TransformerSpec {
        TransformerSpec {
            vocab: 7,
            ctx: 4,
            layers: 2,
            heads: 2,
            embd: 8,
        }
    }

    fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
        let mut rng = LinkRng::new(seed);
        (0..n)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect()
    }

    #[test]
    fn layout_counts_every_parameter_and_the_nanogpt_preset_is_0_8m() {
        let spec = tiny();
        let m = Transformer::new(spec).unwrap();
        assert_eq!(
            m.param_count(),
            7 * 8 + 4 * 8 + 2 * (8 + 24 * 8 + 64 + 8 + 32 * 8 + 8 * 32) + 8
        );
        let nano = TransformerSpec {
            vocab: 65,
            ctx: 64,
            layers: 4,
            heads: 4,
            embd: 128,
        };
        let n = Transformer::new(nano).unwrap().param_count();
        // nanoGPT prints 0.80M for tinyshakespeare's 65 characters (it leaves out the
        // position embedding).
        assert_eq!(n - 64 * 128, 795_904);
        assert!(Transformer::new(TransformerSpec { heads: 3, ..spec }).is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // In f64, so central differences of step 1e-4 are accurate to ~1e-6 relative.
        let spec = tiny();
        let m = Transformer::new(spec).unwrap().in_f64();
        let mut params = m.init_params(5);
        // Larger weights than the 0.02 init, so attention and GELU are properly non-linear,
        // and gains away from 1 so the LayerNorm gradients are exercised.
        let mut rng = LinkRng::new(9);
        for p in &mut params {
            *p = *p * 3.0 + 0.1 * rng.next_normal() as f32;
        }
        let batch = 3;
        let x = tokens(1, batch * spec.ctx, spec.vocab);
        let y = tokens(2, batch * spec.ctx, spec.vocab);
        let mut grad = vec![0.0; m.param_count()];
        let loss = m.loss_and_grad(&params, &x, &y, batch, &mut grad).unwrap();
        assert!(loss > 0.5 && loss.is_finite());
        let eps = 1e-4f32;
        let mut worst = 0.0f64;
        for i in 0..params.len() {
            let orig = params[i];
            params[i] = orig + eps;
            let up = m.loss(&params, &x, &y, batch).unwrap();
            params[i] = orig - eps;
            let down = m.loss(&params, &x, &y, batch).unwrap();
            params[i] = orig;
            let h = f64::from(orig + eps) - f64::from(orig - eps);
            let numeric = (up - down) / h;
            let analytic = f64::from(grad[i]);
            let err = (numeric - analytic).abs() / (1e-3 + numeric.abs().max(analytic.abs()));
            worst = worst.max(err);
            assert!(
                err < 1e-3,
                "param {i}: analytic {analytic} numeric {numeric}"
            );
        }
        assert!(worst < 1e-3);
        // And the check has teeth: a gradient off by 1 % in one weight fails it.
        let numeric = grad[20] as f64;
        assert!(((numeric * 1.01 + 1e-3) - numeric).abs() / (1e-3 + numeric.abs()) > 1e-3);
    }

    #[test]
    fn the_f32_gradient_agrees_with_the_f64_one() {
        let spec = tiny();
        let m32 = Transformer::new(spec).unwrap();
        let m64 = Transformer::new(spec).unwrap().in_f64();
        let params = m32.init_params(3);
        let x = tokens(3, 2 * spec.ctx, spec.vocab);
        let y = tokens(4, 2 * spec.ctx, spec.vocab);
        let (mut g32, mut g64) = (vec![0.0; params.len()], vec![0.0; params.len()]);
        let l32 = m32.loss_and_grad(&params, &x, &y, 2, &mut g32).unwrap();
        let l64 = m64.loss_and_grad(&params, &x, &y, 2, &mut g64).unwrap();
        assert!((l32 - l64).abs() < 1e-5);
        // At init the loss is about ln(vocab).
        assert!((l64 - (spec.vocab as f64).ln()).abs() < 0.1);
        let diff = g32
            .iter()
            .zip(&g64)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn attention_is_causal() {
        // Changing the last input token changes the last position's logits only.
        let spec = tiny();
        let m = Transformer::new(spec).unwrap();
        let mut params = m.init_params(8);
        params.iter_mut().for_each(|p| *p *= 20.0);
        let x = vec![1, 2, 3, 4];
        let mut x2 = x.clone();
        x2[3] = 6;
        let a = m.logits(&params, &x, 1).unwrap();
        let b = m.logits(&params, &x2, 1).unwrap();
        let v = spec.vocab;
        assert_eq!(a[..3 * v], b[..3 * v]);
        assert_ne!(a[3 * v..], b[3 * v..]);
        // Changing the first token changes every position.
        let mut x3 = x.clone();
        x3[0] = 0;
        let c = m.logits(&params, &x3, 1).unwrap();
        for pos in 0..4 {
            assert_ne!(a[pos * v..(pos + 1) * v], c[pos * v..(pos + 1) * v]);
        }
    }

    #[test]
    fn bad_shapes_and_tokens_are_errors() {
        let m = Transformer::new(tiny()).unwrap();
        let p = m.init_params(0);
        assert!(m.loss(&p, &[0; 4], &[0; 3], 1).is_err());
        assert!(m.loss(&p, &[0, 1, 2, 9], &[0; 4], 1).is_err());
        assert!(m.loss(&p[1..], &[0; 4], &[0; 4], 1).is_err());
    }
}
