//! A fixed-bucket histogram of durations in atomics, readable while it is written (the
//! Prometheus exposition reads it on a scrape). Counts are added with `fetch_add`, so
//! any thread may observe; the buckets are few and fixed, so an observation is a short
//! scan and two adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds; an implicit last bucket is +Inf.
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    counts: [AtomicU64; N],
    over: AtomicU64,
    nanos: AtomicU64,
}

/// What a scrape reads: `(le, count in this bucket)` pairs ending with +Inf (f64::MAX; not
/// cumulative: the exposition's encoder sums them into `le` buckets), the count and the
/// sum in seconds.
pub struct Snapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [f64; N]) -> Histogram<N> {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            over: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        match self.bounds.iter().position(|&le| secs <= le) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(N + 1);
        for (le, c) in self.bounds.iter().zip(&self.counts) {
            let n = c.load(Ordering::Relaxed);
            total += n;
            buckets.push((*le, n));
        }
        let over = self.over.load(Ordering::Relaxed);
        total += over;
        // The exposition's encoder writes `le="+Inf"` for f64::MAX (for infinity it
        // would write "inf", which OpenMetrics parsers reject).
        buckets.push((f64::MAX, over));
        let sum = self.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        Snapshot {
            buckets,
            count: total,
            sum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_their_own_range_and_end_with_inf() {
        let h = Histogram::new([0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 1), (0.01, 2), (f64::MAX, 1)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 1.0105).abs() < 1e-9, "{}", s.sum);
    }
}
