//! What a rank trains: the MLP on its shard of the synthetic teacher task, or the transformer
//! LM on its shard of the Shakespeare corpus — behind one face (a flat parameter vector, a
//! gradient function of the step, a held-out loss), so the strategies never see which.

use std::ops::Range;

use super::data::{Samples, TaskSpec, Teacher};
use super::model::{Mlp, MlpSpec, Workspace};
use super::text::{Corpus, TextShard};
use super::transformer::{Transformer, TransformerSpec};
use super::{ConfigError, TrainError};

/// Which model a job trains, with what it needs besides the strategy.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// The student MLP on the synthetic teacher task.
    Mlp {
        /// The student.
        spec: MlpSpec,
        /// The teacher task (its seed fixes the data).
        task: TaskSpec,
    },
    /// The transformer LM on the committed corpus.
    Lm {
        /// The shape (its `vocab` must be the corpus tokenizer's).
        spec: TransformerSpec,
        /// Seeds the batch windows.
        data_seed: u64,
    },
}

impl ModelConfig {
    /// A transformer preset by name over the committed corpus's vocabulary, and its batch.
    pub fn lm_preset(name: &str, data_seed: u64) -> Result<(Self, usize), TrainError> {
        let p = spacefabric_proto::train_job::LmPreset::find(name).ok_or_else(|| {
            TrainError::from(ConfigError::UnknownModel {
                name: name.to_string(),
                presets: spacefabric_proto::train_job::LM_PRESETS
                    .iter()
                    .map(|p| p.name)
                    .collect(),
            })
        })?;
        let spec = TransformerSpec {
            vocab: spacefabric_proto::train_job::defaults::LM_VOCAB as usize,
            ctx: p.ctx as usize,
            layers: p.layers as usize,
            heads: p.heads as usize,
            embd: p.embd as usize,
        };
        Ok((Self::Lm { spec, data_seed }, p.batch as usize))
    }

    /// Length of the model's flat parameter vector.
    pub fn param_count(&self) -> Result<usize, TrainError> {
        Ok(match self {
            Self::Mlp { spec, .. } => Mlp::new(spec.clone())?.param_count(),
            Self::Lm { spec, .. } => Transformer::new(*spec)?.param_count(),
        })
    }

    /// Tokens (LM) or samples (MLP) one step of `batch` consumes.
    pub fn tokens_per_step(&self, batch: usize) -> u64 {
        match self {
            Self::Mlp { .. } => batch as u64,
            Self::Lm { spec, .. } => (batch * spec.ctx) as u64,
        }
    }
}

/// The model and this rank's data: computes the gradient of a step's batch.
#[derive(Debug)]
pub(crate) enum Workload {
    Mlp {
        mlp: Mlp,
        shard: Samples,
        ws: Workspace,
        x: Vec<f32>,
        y: Vec<f32>,
    },
    Lm {
        model: Transformer,
        shard: TextShard,
        x: Vec<u32>,
        y: Vec<u32>,
    },
}

/// The held-out set and the model that scores it.
#[derive(Debug)]
pub(crate) enum Evaluation {
    Mlp {
        mlp: Mlp,
        set: Samples,
        ws: Workspace,
    },
    Lm {
        model: Transformer,
        x: Vec<u32>,
        y: Vec<u32>,
        windows: usize,
    },
}

/// Validation windows scored per call of the transformer (bounds the memory of one forward).
const EVAL_CHUNK: usize = 64;

impl Workload {
    /// The workload of the rank whose data shard is `shard`; with `eval_samples` > 0 also the
    /// held-out evaluation.
    pub(crate) fn build(
        model: &ModelConfig,
        shard: Range<u64>,
        eval_samples: Option<usize>,
    ) -> Result<(Self, Option<Evaluation>), TrainError> {
        match model {
            ModelConfig::Mlp { spec, task } => {
                let mlp = Mlp::new(spec.clone())?;
                let teacher = Teacher::new(task.clone())?;
                let samples = teacher.shard(shard.clone())?;
                if samples.is_empty() {
                    return Err(ConfigError::EmptyDataShard {
                        shard: shard.clone(),
                    }
                    .into());
                }
                let eval = match eval_samples {
                    Some(n) => Some(Evaluation::Mlp {
                        mlp: mlp.clone(),
                        set: teacher.eval_set(n)?,
                        ws: Workspace::default(),
                    }),
                    None => None,
                };
                Ok((
                    Self::Mlp {
                        mlp,
                        shard: samples,
                        ws: Workspace::default(),
                        x: Vec::new(),
                        y: Vec::new(),
                    },
                    eval,
                ))
            }
            ModelConfig::Lm { spec, data_seed } => {
                let corpus = Corpus::shakespeare()?;
                if corpus.tokenizer().vocab_size() != spec.vocab {
                    return Err(ConfigError::VocabMismatch {
                        model: spec.vocab,
                        corpus: corpus.tokenizer().vocab_size(),
                    }
                    .into());
                }
                let model = Transformer::new(*spec)?;
                let text = corpus.shard(shard, spec.ctx, *data_seed)?;
                let eval = match eval_samples {
                    Some(n) => {
                        let (x, y) = corpus.eval_windows(n, spec.ctx)?;
                        Some(Evaluation::Lm {
                            model: model.clone(),
                            x,
                            y,
                            windows: n,
                        })
                    }
                    None => None,
                };
                Ok((
                    Self::Lm {
                        model,
                        shard: text,
                        x: Vec::new(),
                        y: Vec::new(),
                    },
                    eval,
                ))
            }
        }
    }

    pub(crate) fn param_count(&self) -> usize {
        match self {
            Self::Mlp { mlp, .. } => mlp.param_count(),
            Self::Lm { model, .. } => model.param_count(),
        }
    }

    pub(crate) fn init_params(&self, seed: u64) -> Vec<f32> {
        match self {
            Self::Mlp { mlp, .. } => mlp.init_params(seed),
            Self::Lm { model, .. } => model.init_params(seed),
        }
    }

    /// Loss of the batch of `step` and its gradient, written into `grad`.
    pub(crate) fn loss_and_grad(
        &mut self,
        params: &[f32],
        step: u64,
        batch: usize,
        grad: &mut [f32],
    ) -> Result<f64, TrainError> {
        match self {
            Self::Mlp {
                mlp,
                shard,
                ws,
                x,
                y,
            } => {
                shard.batch_into(step, batch, x, y);
                mlp.loss_and_grad(params, x, y, batch, grad, ws)
            }
            Self::Lm { model, shard, x, y } => {
                shard.batch_into(step, batch, x, y);
                model.loss_and_grad(params, x, y, batch, grad)
            }
        }
    }
}

impl Evaluation {
    /// The held-out loss of `params` (MSE for the MLP, nats per character for the LM).
    pub(crate) fn loss(&mut self, params: &[f32]) -> Result<f64, TrainError> {
        match self {
            Self::Mlp { mlp, set, ws } => {
                let n = set.len();
                mlp.loss(params, &set.inputs, &set.targets, n, ws)
            }
            Self::Lm {
                model,
                x,
                y,
                windows,
            } => {
                let ctx = model.spec().ctx;
                let mut total = 0.0;
                let mut done = 0usize;
                while done < *windows {
                    let n = EVAL_CHUNK.min(*windows - done);
                    let r = done * ctx..(done + n) * ctx;
                    total += model.loss(params, &x[r.clone()], &y[r], n)? * n as f64;
                    done += n;
                }
                Ok(total / (*windows).max(1) as f64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::text::Corpus;

    #[test]
    fn the_corpus_matches_the_shared_job_defaults() {
        // The controller cuts data shards and parameter shards from these constants.
        let c = Corpus::shakespeare().unwrap();
        let d = spacefabric_proto::train_job::defaults::LM_TRAIN_CHARS;
        assert_eq!(c.train_len(), d);
        assert_eq!(
            c.tokenizer().vocab_size(),
            spacefabric_proto::train_job::defaults::LM_VOCAB as usize
        );
        for p in spacefabric_proto::train_job::LM_PRESETS {
            let (m, batch) = ModelConfig::lm_preset(p.name, 0).unwrap();
            assert_eq!(
                m.param_count().unwrap() as u64,
                p.parameter_count(spacefabric_proto::train_job::defaults::LM_VOCAB)
            );
            assert_eq!(batch, p.batch as usize);
        }
        assert!(ModelConfig::lm_preset("gpt-5", 0).is_err());
    }
}
