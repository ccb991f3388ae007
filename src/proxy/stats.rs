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

/// One shard's counters (each shard has its own, summed when read). Aligned to its own
/// cache lines: two shards' records, allocated alike, may otherwise sit side by side
/// and share a line that both write on every request.
#[derive(Debug, Default)]
#[repr(align(128))]
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
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// Access log lines lost to a failed write (only the writer thread counts these,
    /// in the first shard's stats).
    pub access_log_unwritten: Counter,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub responses: [Counter; 5],
    /// Bytes read from clients (heads and bodies).
    pub client_bytes_in: Counter,
    /// Response body bytes queued to clients.
    pub client_body_bytes_out: Counter,
    /// Stale stored responses served (while revalidating, or on an origin's error).
    pub cache_stale: Counter,
    /// By how many bytes distilled bodies were smaller than their originals.
    pub distill_saved_bytes: Counter,
    /// Jobs that sent the original, by why (`DECLINE_REASONS`).
    pub distill_declined: [Counter; 6],
    /// Upstream failures by kind (`UPSTREAM_ERROR_KINDS`).
    pub upstream_failures: [Counter; 5],
    /// Requests forwarded to the node that owns their key.
    pub cluster_forwarded: Counter,
    /// Requests peers forwarded here.
    pub cluster_served_for_peers: Counter,
    /// Forwards that failed before a response (the peer then passed over).
    pub cluster_peer_failures: Counter,
    /// Forwarded requests from a node whose node list differs from ours.
    pub cluster_digest_mismatch: Counter,
    /// Requests sent to a key's next candidate because its owner was over its bound.
    pub cluster_spilled: Counter,
    /// Forward-proxy requests from clients outside `forward.clients_allowed` (403).
    pub forward_clients_refused: Counter,
    /// Forward-proxy requests to a port or an address the destination rules deny (403).
    pub forward_destinations_refused: Counter,
    /// Reverse-proxy requests from clients outside their route's `clients_allowed` (403).
    pub route_clients_refused: Counter,
    /// CONNECT tunnels opened (the destination connected, 200 sent).
    pub forward_tunnels: Counter,
    /// Requests and connections refused with 429: the client was over
    /// `forward.client_requests_per_s` or `forward.client_connections_max`.
    pub client_limited: Counter,
    /// Proxy credentials checked and found wrong (407).
    pub auth_failures: Counter,
    /// Requests sent past a peer that is ramping up (its share of keys not yet back).
    pub cluster_ramped: Counter,
    /// Misses filled from the key's previous owner (while this node warms).
    pub cluster_warm_fills: Counter,
    /// Misses the previous owner did not have either (then fetched from the origin).
    pub cluster_warm_misses: Counter,
    /// Requests answered from the near-cache (no hop to the owner).
    pub cluster_near_hits: Counter,
    /// Owners' answers kept in the near-cache.
    pub cluster_near_stores: Counter,
}

/// The `reason` label of `distill_declined`, in its order.
pub const DECLINE_REASONS: [&str; 6] = [
    "image_error",
    "text_error",
    "not_smaller",
    "pool_full",
    "overdue",
    "crashed",
];

/// The `kind` label of `upstream_failures`, in its order.
pub const UPSTREAM_ERROR_KINDS: [&str; 5] = ["resolve", "connect", "closed", "invalid", "timeout"];

/// Indexes of `upstream_failures`.
pub mod upstream_kind {
    pub const RESOLVE: usize = 0;
    pub const CONNECT: usize = 1;
    pub const CLOSED: usize = 2;
    pub const INVALID: usize = 3;
    pub const TIMEOUT: usize = 4;
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).saturating_add(n),
            Ordering::Relaxed,
        );
    }
}

impl Stats {
    /// Counts a response by its status class.
    pub fn response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        if let Some(c) = self.responses.get(class) {
            c.incr();
        }
    }

    pub fn upstream_failed(&self, kind: usize) {
        self.upstream_errors.incr();
        if let Some(c) = self.upstream_failures.get(kind) {
            c.incr();
        }
    }

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

    /// The cluster's line: this shard's forwarding counters, the placement's digest
    /// (which node list it is) and each peer's state as this node sees it.
    pub fn log_cluster(
        &self,
        shard: usize,
        c: &crate::config::cluster::ClusterConfig,
        now: std::time::Instant,
    ) {
        let peers: Vec<String> = c
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != c.me)
            .map(|(i, n)| {
                let state = if c.health.is_up(i, now) { "up" } else { "down" };
                format!("{}={state}", n.id)
            })
            .collect();
        tracing::info!(
            target: "stats",
            shard,
            node = c.node.as_str(),
            digest = format!("{:016x}", c.digest),
            peers = peers.join(","),
            forwarded = self.cluster_forwarded.get(),
            served_for_peers = self.cluster_served_for_peers.get(),
            spilled = self.cluster_spilled.get(),
            ramped = self.cluster_ramped.get(),
            peer_failures = self.cluster_peer_failures.get(),
            digest_mismatch = self.cluster_digest_mismatch.get(),
            near_hits = self.cluster_near_hits.get(),
            near_stores = self.cluster_near_stores.get(),
            warm_fills = self.cluster_warm_fills.get(),
            warm_misses = self.cluster_warm_misses.get(),
            "cluster stats"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_shards_counters_never_share_a_cache_line() {
        assert!(std::mem::align_of::<Stats>() >= 128);
        let shards: Vec<std::sync::Arc<Stats>> = (0..4).map(|_| Default::default()).collect();
        for pair in shards.windows(2) {
            let (a, b) = (
                std::sync::Arc::as_ptr(&pair[0]) as usize,
                std::sync::Arc::as_ptr(&pair[1]) as usize,
            );
            assert!(a.abs_diff(b) >= std::mem::size_of::<Stats>());
            assert_eq!((a % 128, b % 128), (0, 0));
        }
    }
}
