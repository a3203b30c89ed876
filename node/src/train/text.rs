//! The text a transformer language model trains on: the committed Shakespeare corpus
//! (`node/data/shakespeare.txt`, see the README there), a character-level tokenizer, the fixed
//! train/validation split, and each rank's shard of the training text.
//!
//! Everything here is a pure function of the corpus and the job's seed, so every node cuts the
//! same split, the controller's plan hands out character ranges of the training text
//! ([`Corpus::train_len`] is the job's "dataset samples"), and two runs see the same batches.
//! A training window of `ctx + 1` characters lies wholly inside the rank's shard, so ranks
//! never read each other's text.

use std::ops::Range;

use netem_profiles::rng::LinkRng;

use super::{ConfigError, TrainError};

/// The committed corpus (≈1.09 MB of ASCII): eight Shakespeare plays from Project Gutenberg.
pub const SHAKESPEARE: &str = include_str!("../../data/shakespeare.txt");

/// Fraction of the corpus, from its start, that is training text (the rest is validation),
/// as in nanoGPT's `prepare.py`.
pub const TRAIN_FRACTION: f64 = 0.9;

/// A character-level tokenizer: one token per distinct character of the corpus, in byte
/// order (nanoGPT's `shakespeare_char` does the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharTokenizer {
    /// `chars[token]` is the character of `token`.
    chars: Vec<char>,
    /// `index[byte]` is the token of an ASCII byte, or `u32::MAX`.
    index: [u32; 128],
}

impl CharTokenizer {
    /// The vocabulary of `text`; only ASCII is accepted (the committed corpus is ASCII).
    pub fn from_text(text: &str) -> Result<Self, TrainError> {
        let mut seen = [false; 128];
        for (i, b) in text.bytes().enumerate() {
            let Some(slot) = seen.get_mut(usize::from(b)) else {
                return Err(ConfigError::CorpusNotAscii { byte: b, offset: i }.into());
            };
            *slot = true;
        }
        let mut chars = Vec::new();
        let mut index = [u32::MAX; 128];
        for (b, _) in seen.iter().enumerate().filter(|(_, s)| **s) {
            index[b] = chars.len() as u32;
            chars.push(char::from(b as u8));
        }
        Ok(Self { chars, index })
    }

    /// Distinct tokens.
    pub fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    /// The tokens of `text`; a character outside the vocabulary is an error naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        text.bytes()
            .enumerate()
            .map(|(i, b)| {
                self.index
                    .get(usize::from(b))
                    .copied()
                    .filter(|&t| t != u32::MAX)
                    .ok_or_else(|| {
                        TrainError::from(ConfigError::NotInVocabulary { byte: b, offset: i })
                    })
            })
            .collect()
    }

    /// The text of `tokens` (unknown tokens become `?`).
    pub fn decode(&self, tokens: &[u32]) -> String {
        tokens
            .iter()
            .map(|&t| self.chars.get(t as usize).copied().unwrap_or('?'))
            .collect()
    }
}

/// The tokenized corpus and its split.
#[derive(Debug, Clone)]
pub struct Corpus {
    tokenizer: CharTokenizer,
    tokens: Vec<u32>,
    train_len: usize,
}

impl Corpus {
    /// The committed Shakespeare corpus.
    pub fn shakespeare() -> Result<Self, TrainError> {
        Self::from_text(SHAKESPEARE)
    }

    /// Any ASCII text, split [`TRAIN_FRACTION`] / rest.
    pub fn from_text(text: &str) -> Result<Self, TrainError> {
        let tokenizer = CharTokenizer::from_text(text)?;
        let tokens = tokenizer.encode(text)?;
        let train_len = (tokens.len() as f64 * TRAIN_FRACTION) as usize;
        Ok(Self {
            tokenizer,
            tokens,
            train_len,
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &CharTokenizer {
        &self.tokenizer
    }

    /// Characters of training text (what the plan's data shards divide).
    pub fn train_len(&self) -> u64 {
        self.train_len as u64
    }

    /// The training tokens.
    pub fn train(&self) -> &[u32] {
        &self.tokens[..self.train_len]
    }

    /// The validation tokens.
    pub fn val(&self) -> &[u32] {
        &self.tokens[self.train_len..]
    }

    /// The training text of `range` (one rank's data shard) for windows of `ctx` tokens; a
    /// range outside the training text or too short for one window is an error naming it.
    pub fn shard(&self, range: Range<u64>, ctx: usize, seed: u64) -> Result<TextShard, TrainError> {
        let start = usize::try_from(range.start).unwrap_or(usize::MAX);
        let end = usize::try_from(range.end).unwrap_or(usize::MAX);
        if start > end || end > self.train_len {
            return Err(ConfigError::ShardOutsideText {
                shard: range,
                train_len: self.train_len,
            }
            .into());
        }
        if end - start < ctx + 1 {
            return Err(ConfigError::ShardShorterThanWindow {
                shard: range,
                chars: end - start,
                window: ctx + 1,
            }
            .into());
        }
        Ok(TextShard {
            range: range.clone(),
            tokens: self.tokens[start..end].to_vec(),
            ctx,
            seed,
        })
    }

    /// `n` validation windows of `ctx + 1` tokens, evenly spaced over the validation text (the
    /// same for every node and every evaluation): `(inputs, targets)`, `[n][ctx]` each.
    pub fn eval_windows(&self, n: usize, ctx: usize) -> Result<(Vec<u32>, Vec<u32>), TrainError> {
        let val = self.val();
        if val.len() < ctx + 1 || n == 0 {
            return Err(ConfigError::ValidationWindows {
                chars: val.len(),
                windows: n,
                window: ctx + 1,
            }
            .into());
        }
        let last = val.len() - ctx - 1;
        let (mut x, mut y) = (Vec::with_capacity(n * ctx), Vec::with_capacity(n * ctx));
        for i in 0..n {
            let s = if n == 1 { 0 } else { last * i / (n - 1) };
            x.extend_from_slice(&val[s..s + ctx]);
            y.extend_from_slice(&val[s + 1..s + ctx + 1]);
        }
        Ok((x, y))
    }
}

/// One rank's shard of the training text and its batches.
#[derive(Debug, Clone)]
pub struct TextShard {
    /// The character range of the training text this shard is.
    pub range: Range<u64>,
    tokens: Vec<u32>,
    ctx: usize,
    seed: u64,
}

impl TextShard {
    /// Characters in the shard.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the shard is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Start offsets (within the shard) of the `batch` windows of `step`: drawn uniformly
    /// from every position a whole window fits, from a generator seeded by (job seed, shard
    /// start, step), as nanoGPT's `get_batch` draws random offsets.
    pub fn window_starts(&self, step: u64, batch: usize) -> Vec<usize> {
        let positions = (self.tokens.len() - self.ctx) as u64;
        let mut rng = LinkRng::new(
            self.seed.rotate_left(17)
                ^ self.range.start.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ step.wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
        );
        (0..batch)
            .map(|_| (rng.next_u64() % positions) as usize)
            .collect()
    }

    /// The inputs and next-character targets of the batch of `step`, `[batch][ctx]` each.
    pub fn batch_into(&self, step: u64, batch: usize, x: &mut Vec<u32>, y: &mut Vec<u32>) {
        x.clear();
        y.clear();
        for s in self.window_starts(step, batch) {
            x.extend_from_slice(&self.tokens[s..s + self.ctx]);
            y.extend_from_slice(&self.tokens[s + 1..s + self.ctx + 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::plan;

    #[test]
    fn the_corpus_tokenizes_and_round_trips() {
        let c = Corpus::shakespeare().unwrap();
        assert_eq!(c.tokenizer().vocab_size(), 74);
        assert_eq!(c.tokens.len(), 1_093_727);
        let head = &c.train()[..200];
        assert_eq!(c.tokenizer().decode(head), SHAKESPEARE[..200]);
        assert!(c.tokenizer().encode("Hamlet\u{e9}").is_err());
        assert!(CharTokenizer::from_text("caf\u{e9}").is_err());
    }

    #[test]
    fn shards_cover_the_training_text_exactly_once_and_windows_stay_inside() {
        let c = Corpus::shakespeare().unwrap();
        let total = c.train_len();
        for world in [1usize, 3, 8] {
            let mut covered = 0u64;
            let mut next = 0u64;
            for rank in 0..world {
                let r = plan::data_shard(total, world, rank);
                assert_eq!(r.start, next, "shards are contiguous and disjoint");
                next = r.end;
                covered += r.end - r.start;
                let shard = c.shard(r.clone(), 64, 7).unwrap();
                // The shard's text is the training text of its range.
                assert_eq!(
                    shard.tokens[..],
                    c.train()[r.start as usize..r.end as usize]
                );
                for step in 0..20 {
                    for s in shard.window_starts(step, 12) {
                        assert!(s + 64 < shard.len(), "window inside the shard");
                    }
                }
            }
            assert_eq!(next, total);
            assert_eq!(covered, total);
        }
        // Nothing of the validation text is reachable from a shard.
        assert!(c.shard(0..total + 1, 64, 0).is_err());
        assert!(c.shard(0..10, 64, 0).is_err());
    }

    #[test]
    fn batches_are_shifted_by_one_and_deterministic() {
        let c = Corpus::shakespeare().unwrap();
        let shard = c.shard(1000..50_000, 8, 3).unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        shard.batch_into(5, 4, &mut x, &mut y);
        assert_eq!(x.len(), 32);
        assert_eq!(x[1..8], y[..7]);
        let (mut x2, mut y2) = (Vec::new(), Vec::new());
        shard.batch_into(5, 4, &mut x2, &mut y2);
        assert_eq!((x.clone(), y), (x2.clone(), y2));
        shard.batch_into(6, 4, &mut x2, &mut Vec::new());
        assert_ne!(x, x2);
        let (ex, ey) = c.eval_windows(10, 8).unwrap();
        assert_eq!((ex.len(), ey.len()), (80, 80));
        assert_eq!(ex[1..8], ey[..7]);
    }
}
