//! Compressed outer gradients (SparseLoCo / MuLoCo style): keep the top-k entries by
//! magnitude, quantise them to 2, 4 or 8 bits (or keep 32-bit floats), and remember what was
//! dropped (error feedback) so it is sent later instead of lost.
//!
//! A payload is a fixed number of 32-bit words for a given (length, density, bits), so every
//! rank contributes a slot of the same size to one all-gather and the bytes on the wire are
//! the slots themselves (the fabric's meters count them). Layout: `[k, scale]`, then `k`
//! ascending indices (left out when every entry is kept), then the values packed `bits` at a
//! time. Quantisation is symmetric and uniform over `[-scale, scale]` with `2^bits` levels
//! including both ends (scale = the largest kept magnitude), rounded to the nearest level.
//! Pure arithmetic, no I/O.

use super::{ConfigError, PayloadFault, ShapeError, TrainError};

/// How outer gradients are compressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressionConfig {
    /// Fraction of entries kept (top-k by magnitude), in (0, 1].
    pub density: f32,
    /// Bits per kept value: 2, 4, 8 or 32 (32 = the f32 itself).
    pub bits: u32,
    /// Add what compression dropped to the next outer gradient.
    pub error_feedback: bool,
}

impl CompressionConfig {
    /// Checks the density and bit width.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.density > 0.0 && self.density <= 1.0) {
            return Err(ConfigError::CompressionDensity {
                density: self.density,
            }
            .into());
        }
        if ![2, 4, 8, 32].contains(&self.bits) {
            return Err(ConfigError::CompressionBits { bits: self.bits }.into());
        }
        Ok(())
    }

    /// Entries kept of a `len`-entry vector (at least one).
    pub fn kept(&self, len: usize) -> usize {
        // Less a hair, so 0.05 × 1000 (0.05f32 is a little above 0.05) keeps 50, not 51.
        ((f64::from(self.density) * len as f64 - 1e-3).ceil() as usize).clamp(1.min(len), len)
    }

    /// Words of one payload for a `len`-entry vector.
    pub fn payload_words(&self, len: usize) -> usize {
        let k = self.kept(len);
        let indices = if k == len { 0 } else { k };
        2 + indices + (k * self.bits as usize).div_ceil(32)
    }
}

/// One rank's compressor for a vector of fixed length: the error-feedback residual.
#[derive(Debug, Clone)]
pub struct Compressor {
    config: CompressionConfig,
    residual: Vec<f32>,
    scratch: Vec<f32>,
}

impl Compressor {
    /// A compressor for `len`-entry vectors.
    pub fn new(config: CompressionConfig, len: usize) -> Result<Self, TrainError> {
        config.validate()?;
        Ok(Self {
            config,
            residual: vec![0.0; len],
            scratch: vec![0.0; len],
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CompressionConfig {
        &self.config
    }

    /// What error feedback holds back for later (zero without error feedback).
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }

    /// Words of this compressor's payloads.
    pub fn payload_words(&self) -> usize {
        self.config.payload_words(self.residual.len())
    }

    /// Compresses `delta` (plus the residual, with error feedback) into a payload; the
    /// residual becomes what the payload does not carry.
    pub fn encode(&mut self, delta: &[f32]) -> Result<Vec<u32>, TrainError> {
        let len = self.residual.len();
        if delta.len() != len {
            return Err(ShapeError::Compressor {
                got: delta.len(),
                len,
            }
            .into());
        }
        let v = &mut self.scratch;
        for ((s, d), r) in v.iter_mut().zip(delta).zip(&self.residual) {
            *s = if self.config.error_feedback {
                d + r
            } else {
                *d
            };
        }
        let k = self.config.kept(len);
        let mut idx: Vec<u32> = (0..len as u32).collect();
        if k < len {
            // Largest magnitudes first, ties by index: the same choice on every machine.
            let order = |a: &u32, b: &u32| {
                v[*b as usize]
                    .abs()
                    .total_cmp(&v[*a as usize].abs())
                    .then(a.cmp(b))
            };
            idx.select_nth_unstable_by(k - 1, order);
            idx.truncate(k);
            idx.sort_unstable();
        }
        let scale = idx
            .iter()
            .map(|&i| v[i as usize].abs())
            .fold(0.0f32, f32::max);
        let mut out = Vec::with_capacity(self.config.payload_words(len));
        out.push(k as u32);
        out.push(scale.to_bits());
        if k < len {
            out.extend_from_slice(&idx);
        }
        let bits = self.config.bits;
        let mut packer = BitPacker::new(bits, &mut out);
        let levels = ((1u64 << bits) - 1) as f32;
        for &i in &idx {
            let x = v[i as usize];
            let q = if bits == 32 {
                x.to_bits()
            } else if scale > 0.0 {
                (((x / scale + 1.0) * 0.5 * levels)
                    .round()
                    .clamp(0.0, levels)) as u32
            } else {
                0
            };
            packer.push(q);
        }
        packer.finish();
        // Residual: what was to be sent minus what the payload carries.
        if self.config.error_feedback {
            self.residual.copy_from_slice(v);
            decode_add(&out, len, bits, &mut self.residual, -1.0)?;
        }
        Ok(out)
    }
}

/// Adds `weight ×` the vector a payload carries to `out` (a `len`-entry vector).
pub fn decode_add(
    payload: &[u32],
    len: usize,
    bits: u32,
    out: &mut [f32],
    weight: f32,
) -> Result<(), TrainError> {
    let bad = |fault| TrainError::Shape(ShapeError::Payload(fault));
    if out.len() != len {
        return Err(bad(PayloadFault::OutputLength));
    }
    let [k, scale, rest @ ..] = payload else {
        return Err(bad(PayloadFault::NoHeader));
    };
    let k = *k as usize;
    let scale = f32::from_bits(*scale);
    if k > len {
        return Err(bad(PayloadFault::TooManyEntries));
    }
    let (idx, packed) = if k == len {
        (None, rest)
    } else {
        if rest.len() < k {
            return Err(bad(PayloadFault::IndicesShort));
        }
        let (i, p) = rest.split_at(k);
        (Some(i), p)
    };
    if packed.len() < (k * bits as usize).div_ceil(32) {
        return Err(bad(PayloadFault::ValuesShort));
    }
    let levels = ((1u64 << bits) - 1) as f32;
    let mut unpacker = BitUnpacker::new(bits, packed);
    for j in 0..k {
        let i = match idx {
            Some(idx) => idx[j] as usize,
            None => j,
        };
        let q = unpacker.next();
        let x = if bits == 32 {
            f32::from_bits(q)
        } else {
            (q as f32 / levels * 2.0 - 1.0) * scale
        };
        let Some(o) = out.get_mut(i) else {
            return Err(bad(PayloadFault::IndexOutside));
        };
        *o += weight * x;
    }
    Ok(())
}

/// The element-wise mean of the payloads in `slots` (one per rank, in rank order, each
/// `words` long inside the flat `slots`) into `out`: summed in rank order, then divided, the
/// same arithmetic as an uncompressed mean.
pub fn mean_of_payloads(
    slots: &[u32],
    words: usize,
    ranks: usize,
    bits: u32,
    out: &mut [f32],
) -> Result<(), TrainError> {
    if slots.len() != words * ranks || ranks == 0 {
        return Err(ShapeError::CompressedExchange {
            words_total: slots.len(),
            ranks,
            words,
        }
        .into());
    }
    out.fill(0.0);
    let len = out.len();
    for slot in slots.chunks_exact(words) {
        decode_add(slot, len, bits, out, 1.0)?;
    }
    let n = ranks as f32;
    out.iter_mut().for_each(|v| *v /= n);
    Ok(())
}

struct BitPacker<'a> {
    bits: u32,
    acc: u64,
    filled: u32,
    out: &'a mut Vec<u32>,
}

impl<'a> BitPacker<'a> {
    fn new(bits: u32, out: &'a mut Vec<u32>) -> Self {
        Self {
            bits,
            acc: 0,
            filled: 0,
            out,
        }
    }

    fn push(&mut self, v: u32) {
        if self.bits == 32 {
            self.out.push(v);
            return;
        }
        self.acc |= u64::from(v) << self.filled;
        self.filled += self.bits;
        if self.filled >= 32 {
            self.out.push(self.acc as u32);
            self.acc >>= 32;
            self.filled -= 32;
        }
    }

    fn finish(self) {
        if self.filled > 0 {
            self.out.push(self.acc as u32);
        }
    }
}

struct BitUnpacker<'a> {
    bits: u32,
    words: &'a [u32],
    pos: usize,
    acc: u64,
    filled: u32,
}

impl<'a> BitUnpacker<'a> {
    fn new(bits: u32, words: &'a [u32]) -> Self {
        Self {
            bits,
            words,
            pos: 0,
            acc: 0,
            filled: 0,
        }
    }

    fn next(&mut self) -> u32 {
        if self.filled < self.bits {
            let w = self.words.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            self.acc |= u64::from(w) << self.filled;
            self.filled += 32;
        }
        let mask = if self.bits == 32 {
            u64::from(u32::MAX)
        } else {
            (1u64 << self.bits) - 1
        };
        let v = (self.acc & mask) as u32;
        self.acc >>= self.bits;
        self.filled -= self.bits;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netem_profiles::rng::LinkRng;

    fn random(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = LinkRng::new(seed);
        (0..n).map(|_| rng.next_normal() as f32).collect()
    }

    fn cfg(density: f32, bits: u32, error_feedback: bool) -> CompressionConfig {
        CompressionConfig {
            density,
            bits,
            error_feedback,
        }
    }

    #[test]
    fn full_density_and_32_bits_is_exact() {
        let v = random(1, 1001);
        let mut c = Compressor::new(cfg(1.0, 32, true), v.len()).unwrap();
        let p = c.encode(&v).unwrap();
        assert_eq!(p.len(), c.payload_words());
        assert_eq!(p.len(), 2 + 1001, "dense: no indices");
        let mut out = vec![0.0; v.len()];
        decode_add(&p, v.len(), 32, &mut out, 1.0).unwrap();
        assert_eq!(out, v);
        assert!(c.residual().iter().all(|&r| r == 0.0));
    }

    #[test]
    fn top_k_keeps_the_largest_and_quantisation_error_is_bounded() {
        let v = random(2, 1000);
        for bits in [2u32, 4, 8] {
            let mut c = Compressor::new(cfg(0.05, bits, false), v.len()).unwrap();
            let p = c.encode(&v).unwrap();
            assert_eq!(p.len(), c.payload_words());
            // 50 kept: 2 header + 50 indices + 50·bits/32 value words.
            assert_eq!(p.len(), 2 + 50 + (50 * bits as usize).div_ceil(32));
            let mut out = vec![0.0; v.len()];
            decode_add(&p, v.len(), bits, &mut out, 1.0).unwrap();
            let mut mags: Vec<f32> = v.iter().map(|x| x.abs()).collect();
            mags.sort_by(|a, b| b.total_cmp(a));
            let threshold = mags[49];
            let scale = mags[0];
            let step = 2.0 * scale / ((1u32 << bits) - 1) as f32;
            for (o, x) in out.iter().zip(&v) {
                if x.abs() >= threshold {
                    assert!(
                        (o - x).abs() <= step / 2.0 + 1e-5,
                        "{bits} bits: {o} vs {x}"
                    );
                } else {
                    assert_eq!(*o, 0.0);
                }
            }
        }
    }

    #[test]
    fn error_feedback_accumulates_what_top_k_dropped() {
        // Over many rounds, what was sent plus what is held back equals everything that was
        // to be sent: nothing is lost. Without error feedback the dropped mass is gone.
        let n = 200;
        let rounds = 100;
        let inputs: Vec<Vec<f32>> = (0..rounds).map(|r| random(10 + r, n)).collect();
        let total: Vec<f32> = (0..n).map(|i| inputs.iter().map(|v| v[i]).sum()).collect();
        let run = |ef: bool| {
            let mut c = Compressor::new(cfg(0.1, 4, ef), n).unwrap();
            let mut sent = vec![0.0f32; n];
            for v in &inputs {
                let p = c.encode(v).unwrap();
                decode_add(&p, n, 4, &mut sent, 1.0).unwrap();
            }
            (sent, c.residual().to_vec())
        };
        let (sent, residual) = run(true);
        let err_ef = (0..n)
            .map(|i| (sent[i] + residual[i] - total[i]).abs())
            .fold(0.0f32, f32::max);
        assert!(err_ef < 1e-3, "sent + residual = total, off by {err_ef}");
        // The residual stays bounded (it is sent once it grows large), far below the total.
        let res_norm: f32 = residual.iter().map(|r| r * r).sum::<f32>().sqrt();
        let sent_ef_err: f32 = (0..n)
            .map(|i| (sent[i] - total[i]).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!((res_norm - sent_ef_err).abs() < 1e-2);
        let (sent_plain, residual_plain) = run(false);
        assert!(residual_plain.iter().all(|&r| r == 0.0));
        let err_plain: f32 = (0..n)
            .map(|i| (sent_plain[i] - total[i]).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!(
            sent_ef_err < 0.5 * err_plain,
            "with error feedback {sent_ef_err}, without {err_plain}"
        );
    }

    #[test]
    fn the_mean_of_payloads_matches_a_plain_mean_at_full_density() {
        let ranks: Vec<Vec<f32>> = (0..4).map(|r| random(30 + r, 77)).collect();
        let c = cfg(1.0, 32, true);
        let words = c.payload_words(77);
        let mut slots = Vec::new();
        for v in &ranks {
            slots.extend(Compressor::new(c, 77).unwrap().encode(v).unwrap());
        }
        let mut out = vec![0.0; 77];
        mean_of_payloads(&slots, words, 4, 32, &mut out).unwrap();
        for i in 0..77 {
            let mut s = 0.0f32;
            for v in &ranks {
                s += v[i];
            }
            assert_eq!(out[i], s / 4.0);
        }
    }

    #[test]
    fn bad_configs_and_payloads_are_errors() {
        assert!(Compressor::new(cfg(0.0, 4, true), 10).is_err());
        assert!(Compressor::new(cfg(0.5, 3, true), 10).is_err());
        let mut out = vec![0.0; 10];
        assert!(decode_add(&[5], 10, 4, &mut out, 1.0).is_err());
        assert!(decode_add(&[11, 0], 10, 4, &mut out, 1.0).is_err());
        assert!(decode_add(&[2, 0, 1, 99, 0], 10, 4, &mut out, 1.0).is_err());
    }
}
