//! The per-link random number generator: xoshiro256++ seeded through SplitMix64.
//!
//! Written here rather than taken from a crate so the verdict sequence of a seed can never
//! change under a dependency upgrade: a recorded run stays reproducible.

/// Derives the seed of the link `from → to` from the profile seed: independent streams per
/// directed link, identical in every process.
pub fn link_seed(profile_seed: u64, from: &str, to: &str) -> u64 {
    // FNV-1a over "from\0to", then mixed with the profile seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in from.bytes().chain(std::iter::once(0)).chain(to.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut s = profile_seed ^ h.rotate_left(17);
    splitmix64(&mut s)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, fast, seedable generator (xoshiro256++).
#[derive(Debug, Clone)]
pub struct LinkRng {
    s: [u64; 4],
    /// The second normal of the last Box-Muller pair, if not yet used.
    spare_normal: Option<f64>,
}

impl LinkRng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        Self {
            s: [
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
            ],
            spare_normal: None,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.s;
        let result = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let mut s = [s0, s1, s2, s3];
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        self.s = s;
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (no draw is consumed when `p` is 0 or 1, so adding a
    /// zero-probability feature never shifts the other draws of a link).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.next_f64() < p
        }
    }

    /// Standard normal (Box-Muller: each pair of uniforms gives two normals; the second is
    /// kept for the next call).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        let radius = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare_normal = Some(radius * sin);
        radius * cos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_links_differ() {
        let mut a = LinkRng::new(7);
        let mut b = LinkRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(link_seed(1, "earth", "moon"), link_seed(1, "moon", "earth"));
        assert_ne!(link_seed(1, "earth", "moon"), link_seed(2, "earth", "moon"));
        assert_ne!(link_seed(1, "ab", "c"), link_seed(1, "a", "bc"));
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = LinkRng::new(3);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| r.next_normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
    }

    #[test]
    fn uniform_mean_is_half() {
        let mut r = LinkRng::new(1);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }
}
