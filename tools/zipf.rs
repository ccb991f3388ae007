//! Seeded randomness for repeatable runs (load generation, cache simulations): SplitMix64,
//! and a Zipf(s) sampler over ranks
//! 0..n by inverse CDF (precomputed once, then a binary search per draw).

/// SplitMix64: tiny, fast, and good enough to pick targets; the seed makes runs repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// P(rank k) proportional to 1 / (k+1)^s.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 0..n {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in cdf.iter_mut() {
            *c /= total;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let z = Zipf::new(100, 0.9);
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..50).map(|_| z.sample(&mut r)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn frequencies_follow_the_law() {
        let (n, s, draws) = (1000, 0.9, 400_000);
        let z = Zipf::new(n, s);
        let mut r = Rng::new(42);
        let mut counts = vec![0u64; n];
        for _ in 0..draws {
            counts[z.sample(&mut r)] += 1;
        }
        let h: f64 = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).sum();
        for k in [0usize, 1, 9, 99] {
            let expected = draws as f64 / ((k + 1) as f64).powf(s) / h;
            let got = counts[k] as f64;
            let tolerance = 4.0 * expected.sqrt() + 0.01 * expected;
            assert!(
                (got - expected).abs() < tolerance,
                "rank {k}: {got} vs {expected}"
            );
        }
        assert!(
            counts.iter().all(|&c| c > 0 || n > 500),
            "every rank reachable"
        );
    }

    #[test]
    fn uniform_when_s_is_zero() {
        let z = Zipf::new(4, 0.0);
        let mut r = Rng::new(1);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[z.sample(&mut r)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }
}
