//! What the admin listener reads about the node: the shards' counters and health, the
//! cache, and the rates the supervisor samples once a second.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::ErrorCounter;

use crate::cache::Store;
use crate::proxy::held::HeldBudget;
use crate::proxy::stats::{Counter, Stats};
use crate::shard::control::NodeControl;

/// A shard counts as healthy while its loop turned within this.
pub const TURN_RECENT: Duration = Duration::from_secs(2);

pub struct NodeView {
    pub control: Arc<NodeControl>,
    pub stats: Vec<Arc<Stats>>,
    pub cache: Option<Arc<Store>>,
    pub held: Arc<HeldBudget>,
    pub driver: &'static str,
    pub dropped_logs: ErrorCounter,
    pub pid: u32,
    /// Unix seconds.
    pub started_at: u64,
    rates: Mutex<Rates>,
}

/// Per-second rates from the last two samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub requests_per_s: f64,
    pub hit_ratio: f64,
    last: Option<(Instant, u64, u64, u64)>,
}

impl NodeView {
    pub fn new(
        control: Arc<NodeControl>,
        stats: Vec<Arc<Stats>>,
        cache: Option<Arc<Store>>,
        held: Arc<HeldBudget>,
        driver: &'static str,
        dropped_logs: ErrorCounter,
    ) -> NodeView {
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        NodeView {
            control,
            stats,
            cache,
            held,
            driver,
            dropped_logs,
            pid: std::process::id(),
            started_at,
            rates: Mutex::new(Rates::default()),
        }
    }

    /// A counter summed over shards.
    pub fn total(&self, pick: impl Fn(&Stats) -> &Counter) -> u64 {
        self.stats.iter().map(|s| pick(s).get()).sum()
    }

    /// Each shard is turning and none has stopped.
    pub fn healthy(&self) -> bool {
        self.control.all_turning(TURN_RECENT)
    }

    pub fn shard_healthy(&self, shard: usize) -> bool {
        let Some(h) = self.control.shards.get(shard) else {
            return false;
        };
        h.turning_within(&self.control, TURN_RECENT)
    }

    pub fn shard_clients(&self, shard: usize) -> u64 {
        self.control
            .shards
            .get(shard)
            .map_or(0, |h| h.clients.load(Ordering::Relaxed))
    }

    /// Takes a sample (the supervisor calls this once a second).
    pub fn sample(&self, now: Instant) {
        let requests = self.total(|s| &s.requests);
        let hits = self.total(|s| &s.cache_hits);
        let misses = self.total(|s| &s.cache_misses);
        let mut r = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((then, req0, hit0, miss0)) = r.last {
            let secs = now.saturating_duration_since(then).as_secs_f64();
            if secs > 0.0 {
                r.requests_per_s = requests.saturating_sub(req0) as f64 / secs;
                let (h, m) = (hits.saturating_sub(hit0), misses.saturating_sub(miss0));
                r.hit_ratio = if h + m > 0 {
                    h as f64 / (h + m) as f64
                } else {
                    0.0
                };
            }
        }
        r.last = Some((now, requests, hits, misses));
    }

    pub fn rates(&self) -> Rates {
        *self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }
}
