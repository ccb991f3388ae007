//! What the supervisor (`crate::appliance`) and the shards share while the node runs:
//! the config in force (replaced whole on a reload), whether the node is draining, and
//! each shard's health (when its loop last turned, how long turns take, its clients).
//!
//! Shards look at it once per tick (every 100 ms), so a reload or a stop reaches every
//! shard within a tick and costs the hit path nothing; the one per-turn write is the
//! heartbeat (a relaxed store and a histogram bucket, both the shard's own).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::histogram::Histogram;

/// How a draining node treats idle keep-alive connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Stopping: idle connections are closed at once; busy ones after their response.
    Stop,
    /// Handing over to a new process: each connection's next request is answered with
    /// `Connection: close`, so no idle connection is closed under a client's feet.
    Handover,
}

/// The node's shared state.
pub struct NodeControl {
    config: Mutex<Arc<Config>>,
    generation: AtomicU64,
    /// 0 = running, 1 = `Drain::Handover`, 2 = `Drain::Stop` (a stop outranks a
    /// hand-over under way).
    drain: AtomicU8,
    pub shards: Box<[ShardHealth]>,
    epoch: Instant,
}

impl NodeControl {
    pub fn new(config: Arc<Config>, shards: usize) -> Arc<NodeControl> {
        Arc::new(NodeControl {
            config: Mutex::new(config),
            generation: AtomicU64::new(0),
            drain: AtomicU8::new(0),
            shards: (0..shards).map(|_| ShardHealth::default()).collect(),
            epoch: Instant::now(),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `config` in force: each shard takes it at its next tick. Returns its
    /// generation (see `applied_everywhere`).
    pub fn publish(&self, config: Arc<Config>) -> u64 {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Every running shard has taken config `generation` (a stopped one never will).
    pub fn applied_everywhere(&self, generation: u64) -> bool {
        self.shards
            .iter()
            .all(|s| s.stopped() || s.applied.load(Ordering::Acquire) >= generation)
    }

    pub fn start_drain(&self, how: Drain) {
        let code = match how {
            Drain::Handover => 1,
            Drain::Stop => 2,
        };
        // A stop during a hand-over's drain turns it into a stop (idle connections
        // close); a hand-over never weakens a stop.
        self.drain.fetch_max(code, Ordering::AcqRel);
    }

    pub fn draining(&self) -> Option<Drain> {
        match self.drain.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Drain::Handover),
            _ => Some(Drain::Stop),
        }
    }

    /// Milliseconds since the node started: the clock heartbeats are kept in.
    pub fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    pub fn mark_stopped(&self, shard: usize) {
        if let Some(health) = self.shards.get(shard) {
            health.stopped.store(true, Ordering::Relaxed);
        }
    }

    /// Every shard's loop turned within `within` (and none has stopped).
    pub fn all_turning(&self, within: Duration) -> bool {
        let now = self.millis(Instant::now());
        let limit = within.as_millis() as u64;
        self.shards.iter().all(|s| s.turning(now, limit))
    }
}

/// Loop-turn durations: upper bounds in seconds (and +Inf).
const TURN_BUCKETS: [f64; 8] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1.0];

/// One shard's health, written by the shard alone. Aligned to its own cache lines (two
/// lines: the adjacent-line prefetcher pairs them): the shards' records sit side by side
/// in one array, and each is written on every loop turn.
#[repr(align(128))]
pub struct ShardHealth {
    last_turn_ms: AtomicU64,
    /// The loop has ended (drained, or failed).
    stopped: AtomicBool,
    pub clients: AtomicU64,
    /// The config generation this shard reads.
    applied: AtomicU64,
    /// How long the loop's turns take (events in to work done).
    pub turns: Histogram<8>,
}

impl Default for ShardHealth {
    fn default() -> ShardHealth {
        ShardHealth {
            last_turn_ms: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            clients: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            turns: Histogram::new(TURN_BUCKETS),
        }
    }
}

impl ShardHealth {
    /// Its loop turned within `within` and has not stopped.
    pub fn turning_within(&self, node: &NodeControl, within: Duration) -> bool {
        self.turning(node.millis(Instant::now()), within.as_millis() as u64)
    }

    fn turning(&self, now_ms: u64, limit_ms: u64) -> bool {
        !self.stopped.load(Ordering::Relaxed)
            && now_ms.saturating_sub(self.last_turn_ms.load(Ordering::Relaxed)) <= limit_ms
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// A shard's side of the node's control.
pub struct ShardControl {
    node: Arc<NodeControl>,
    id: usize,
    generation: u64,
    drain_seen: Option<Drain>,
    /// Test hooks, never set in service: `DISTILLD_TEST_STALL_SHARD=<shard>@<ms>` stops
    /// this shard's loop that long after start, as a stuck shard would;
    /// `DISTILLD_TEST_PANIC_SHARD=<shard>@<ms>` makes it panic, as a bug would.
    stall_at: Option<Instant>,
    panic_at: Option<Instant>,
    access_log: Option<crate::appliance::access_log::LogParts>,
}

/// What a tick brings a shard from the node.
pub struct Directives {
    /// A new config to take.
    pub config: Option<Arc<Config>>,
    /// The node began draining since the last tick.
    pub drain: Option<Drain>,
}

impl ShardControl {
    pub fn new(node: Arc<NodeControl>, id: usize) -> ShardControl {
        let generation = node.generation.load(Ordering::Acquire);
        ShardControl {
            stall_at: test_hook("DISTILLD_TEST_STALL_SHARD", id),
            panic_at: test_hook("DISTILLD_TEST_PANIC_SHARD", id),
            node,
            id,
            generation,
            drain_seen: None,
            access_log: None,
        }
    }

    /// This shard's end of the node's access log writer.
    pub fn with_access_log(mut self, parts: crate::appliance::access_log::LogParts) -> Self {
        self.access_log = Some(parts);
        self
    }

    /// The shard's access log: to the node's writer, or kept in memory when the node
    /// has none (a shard built on its own, in tests).
    pub fn take_access_log(
        &mut self,
        stats: &Arc<crate::proxy::stats::Stats>,
    ) -> crate::appliance::access_log::AccessLog {
        use crate::appliance::access_log::AccessLog;
        match self.access_log.take() {
            Some(parts) => parts.build(),
            None => AccessLog::in_memory(stats.clone()),
        }
    }

    /// The loop turned: `started` is when this turn's events arrived.
    pub fn turned(&self, started: Instant) {
        let now = Instant::now();
        let Some(health) = self.node.shards.get(self.id) else {
            return;
        };
        health
            .last_turn_ms
            .store(self.node.millis(now), Ordering::Relaxed);
        health.turns.observe(now.saturating_duration_since(started));
        if self.panic_at.is_some_and(|at| now >= at) {
            panic!("test hook: shard {} panics", self.id);
        }
        if self.stall_at.is_some_and(|at| now >= at) {
            tracing::warn!(
                shard = self.id,
                "test hook: this shard's loop stops turning"
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }

    /// What changed at the node since the last tick; `clients` is the shard's count.
    pub fn tick(&mut self, clients: usize) -> Directives {
        if let Some(health) = self.node.shards.get(self.id) {
            health.clients.store(clients as u64, Ordering::Relaxed);
        }
        let generation = self.node.generation.load(Ordering::Acquire);
        let config = (generation != self.generation).then(|| {
            self.generation = generation;
            self.node.config()
        });

        let now = self.node.draining();
        let drain = (now != self.drain_seen).then_some(now).flatten();
        self.drain_seen = now;
        Directives { config, drain }
    }

    pub fn draining(&self) -> bool {
        self.drain_seen.is_some()
    }

    /// The config the last tick brought is in force on this shard (its connections and
    /// its driver have it): the supervisor may say the reload is done.
    pub fn confirm_applied(&self) {
        if let Some(health) = self.node.shards.get(self.id) {
            health.applied.store(self.generation, Ordering::Release);
        }
    }

    /// The loop has ended.
    pub fn stopped(&self) {
        self.node.mark_stopped(self.id);
    }

    pub fn node(&self) -> Arc<NodeControl> {
        self.node.clone()
    }
}

fn test_hook(var: &str, id: usize) -> Option<Instant> {
    let spec = std::env::var(var).ok()?;
    let (shard, ms) = spec.split_once('@')?;
    (shard.parse::<usize>().ok()? == id).then_some(())?;
    Some(Instant::now() + Duration::from_millis(ms.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shards_health_has_its_own_cache_lines() {
        let health: Box<[ShardHealth]> = (0..3).map(|_| ShardHealth::default()).collect();
        for h in health.iter() {
            assert_eq!(std::ptr::from_ref(h) as usize % 128, 0);
        }
    }
}
