//! Per-shard counters. One shard writes them (a plain load+store, no locked
//! instruction); anyone may read them, and a node total is the sum over shards.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn incr(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    pub requests: Counter,
    pub local_responses: Counter,
    pub bad_requests: Counter,
    pub client_timeouts: Counter,
    pub upstream_connects: Counter,
    pub upstream_reuses: Counter,
    pub upstream_retries: Counter,
    pub upstream_errors: Counter,
    pub upstream_timeouts: Counter,
    pub truncated_responses: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_stores: Counter,
    pub cache_revalidated: Counter,
    pub cache_collapsed: Counter,
    pub cache_invalidations: Counter,
    pub cache_purges: Counter,
    pub distilled: Counter,
    pub distill_passed: Counter,
    /// Responses streamed unheld or unstored because the node's held-body budget was
    /// spent (`limits.held_bytes_max`).
    pub held_budget_full: Counter,
}

impl Stats {
    /// One log line with this shard's counters and its open connections, and the
    /// node's held response bytes.
    pub fn log(&self, shard: usize, driver: &str, open: (usize, usize), held_bytes: u64) {
        let (clients_open, upstreams_open) = open;
        tracing::info!(
            target: "stats",
            shard,
            driver,
            clients_open,
            upstreams_open,
            held_bytes,
            accepted = self.connections_accepted.get(),
            refused = self.connections_refused.get(),
            requests = self.requests.get(),
            bad_requests = self.bad_requests.get(),
            upstream_connects = self.upstream_connects.get(),
            upstream_reuses = self.upstream_reuses.get(),
            upstream_errors = self.upstream_errors.get(),
            upstream_timeouts = self.upstream_timeouts.get(),
            truncated = self.truncated_responses.get(),
            cache_hits = self.cache_hits.get(),
            cache_misses = self.cache_misses.get(),
            cache_stores = self.cache_stores.get(),
            cache_revalidated = self.cache_revalidated.get(),
            cache_collapsed = self.cache_collapsed.get(),
            cache_invalidations = self.cache_invalidations.get(),
            cache_purges = self.cache_purges.get(),
            distilled = self.distilled.get(),
            distill_passed = self.distill_passed.get(),
            held_budget_full = self.held_budget_full.get(),
            "shard stats"
        );
    }
}
