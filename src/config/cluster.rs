//! `[cluster]`: this node's id and the node list. Without it a node runs alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cluster::near::NearCache;
use crate::cluster::ring::{Member, Ring};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    pub node: Option<String>,
    pub secret_file: Option<String>,
    pub peer_down_ms: Option<u64>,
    pub balance_factor: Option<f64>,
    pub rampup_ms: Option<u64>,
    pub near_cache_bytes: Option<u64>,
    pub near_ttl_s: Option<u64>,
    pub near_admit_after: Option<u8>,
    #[serde(default)]
    pub nodes: Vec<FileNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    pub id: String,
    pub http: String,
    pub gossip: Option<String>,
    pub weight: Option<u32>,
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// Where peers send it forwarded requests (its listener).
    pub http: SocketAddr,
    pub gossip: Option<SocketAddr>,
    pub weight: u32,
}

/// The cluster as this node sees it: the members, the placement table, and which
/// peers it found down. The peers' health belongs to this membership: a reload that
/// changes it starts with every peer up again.
#[derive(Clone)]
pub struct ClusterConfig {
    pub node: String,
    /// This node's index in `nodes` (and in the ring).
    pub me: usize,
    pub nodes: Vec<Node>,
    pub ring: Arc<Ring>,
    /// Identifies the node list and the hash parameters: two nodes whose digests differ
    /// place keys differently and do not forward to each other.
    pub digest: u64,
    /// How long a peer that failed is passed over.
    pub peer_down: Duration,
    /// Bounded load: a peer with more than this times the mean of the forwards in
    /// flight gets no new ones (they go to the next candidate); 0 = off.
    pub balance_factor: f64,
    pub health: Arc<PeerHealth>,
    /// A peer back from down gets its share of keys back over this long; and for this
    /// long after this membership began, this node fills its misses from each key's
    /// previous owner (the runner-up) before the origin.
    pub rampup: Duration,
    pub warm_until: Instant,
    /// Copies of hot objects owned elsewhere; None = off.
    pub near: Option<Arc<NearCache>>,
    /// Authenticates membership datagrams (read from `secret_file`).
    pub secret: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClusterConfig(node {}, {} nodes, digest {:016x})",
            self.node,
            self.nodes.len(),
            self.digest
        )
    }
}

/// Until when each peer is passed over (milliseconds since `epoch`; 0 = up), and
/// whether membership (SWIM) holds it alive.
pub struct PeerHealth {
    epoch: Instant,
    down_until: Vec<AtomicU64>,
    alive: Vec<std::sync::atomic::AtomicBool>,
    /// Requests this node has forwarded to each peer and not yet seen answered.
    inflight: Vec<AtomicU64>,
    /// When each peer came back (milliseconds since `epoch`; 0 = never away): its
    /// share of keys returns over the ramp-up from then.
    back_at: Vec<AtomicU64>,
}

/// One forward in flight to a peer: counted while it lives.
pub struct InFlight {
    health: Arc<PeerHealth>,
    node: usize,
}

impl InFlight {
    pub fn start(health: &Arc<PeerHealth>, node: usize) -> InFlight {
        if let Some(n) = health.inflight.get(node) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            health: health.clone(),
            node,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.health.inflight.get(self.node) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InFlight(node {})", self.node)
    }
}

impl PeerHealth {
    pub(crate) fn new(nodes: usize) -> PeerHealth {
        PeerHealth {
            epoch: Instant::now(),
            down_until: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            // Until membership says otherwise, a peer is tried (and passed over when
            // it fails).
            alive: (0..nodes)
                .map(|_| std::sync::atomic::AtomicBool::new(true))
                .collect(),
            inflight: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            back_at: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Bounded load (Mirrokni, Thorup & Zadimoghaddam): `node` may take one more
    /// forward while its load stays within `factor` times the mean over the peers up.
    /// Under `SPILL_FLOOR` forwards in flight a peer is never over: at low concurrency
    /// the bound would spill keys (each fetched and stored twice) with no hot spot to
    /// relieve (measured: 2 points of hit ratio lost on a Zipf(0.9) trace).
    pub fn within_bound(&self, node: usize, factor: f64, me: usize, now: Instant) -> bool {
        let load = self
            .inflight
            .get(node)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        if factor == 0.0 || load < SPILL_FLOOR {
            return true;
        }
        let up: Vec<u64> = self
            .inflight
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != me && self.is_up(i, now))
            .map(|(_, n)| n.load(Ordering::Relaxed))
            .collect();
        if up.is_empty() {
            return true;
        }
        let total: u64 = up.iter().sum();
        let bound = (factor * (total + 1) as f64 / up.len() as f64).ceil() as u64;
        load < bound.max(1)
    }

    /// Membership's verdict on a peer. One that was dead and is alive again ramps up.
    pub fn set_alive(&self, node: usize, alive: bool) {
        if let Some(a) = self.alive.get(node) {
            let was = a.swap(alive, Ordering::Relaxed);
            if alive
                && !was
                && let Some(b) = self.back_at.get(node)
            {
                b.store(self.millis(Instant::now()), Ordering::Relaxed);
            }
        }
    }

    /// Whether a key in `slot` goes to `node` yet while it ramps up: the share of its
    /// slots it has back grows from none to all over `rampup`, always the same slots
    /// first, so a key moves back once.
    pub fn ramped(&self, node: usize, slot: usize, rampup: Duration, now: Instant) -> bool {
        let back = self
            .back_at
            .get(node)
            .map_or(0, |b| b.load(Ordering::Relaxed));
        let span = rampup.as_millis() as u64;
        if back == 0 || span == 0 {
            return true;
        }
        let since = self.millis(now).saturating_sub(back);
        if since >= span {
            return true;
        }
        // The slot's place in [0, 1), spread by a multiplicative hash.
        let place =
            ((slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
        place < since as f64 / span as f64
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// The peer failed at `now`: pass it over for `for_`.
    pub fn mark_down(&self, node: usize, now: Instant, for_: Duration) {
        // Not a ramp-up when it is tried again: a local failure does not mean its cache
        // was lost (membership's dead-then-alive does).
        if let Some(d) = self.down_until.get(node) {
            d.store(self.millis(now + for_), Ordering::Relaxed);
        }
    }

    /// Membership holds the peer alive (whatever local failures say).
    pub fn is_alive(&self, node: usize) -> bool {
        self.alive
            .get(node)
            .is_none_or(|a| a.load(Ordering::Relaxed))
    }

    pub fn is_up(&self, node: usize, now: Instant) -> bool {
        let alive = self
            .alive
            .get(node)
            .is_none_or(|a| a.load(Ordering::Relaxed));
        alive
            && self
                .down_until
                .get(node)
                .is_none_or(|d| d.load(Ordering::Relaxed) <= self.millis(now))
    }
}

pub const DEFAULT_PEER_DOWN_MS: u64 = 5_000;
/// HAProxy's hash-balance-factor, and Mirrokni et al.'s c: 1.25.
pub const DEFAULT_BALANCE_FACTOR: f64 = 1.25;
/// Forwards in flight to one peer below which bounded load never spills.
pub const SPILL_FLOOR: u64 = 16;
pub const DEFAULT_RAMPUP_MS: u64 = 10_000;
pub const RAMPUP_MS_MAX: u64 = 3_600_000;
/// The near-cache's share of `cache.memory_bytes` by default (1/64): carved out of it,
/// so a node's cache memory stays `cache.memory_bytes`.
pub const NEAR_CACHE_SHARE: u64 = 64;
/// The longest a near copy is served: a purge or a change at the owner shows through
/// everywhere within this (min(freshness, 10 s)).
pub const NEAR_TTL_S_MAX: u64 = 10;
pub const DEFAULT_NEAR_ADMIT_AFTER: u8 = 4;

impl FileCluster {
    /// None when there is no `[cluster]` (the node runs alone).
    pub fn validate(
        &self,
        cache: &crate::config::CacheConfig,
        bad: &mut impl FnMut(&str, String),
    ) -> Option<ClusterConfig> {
        if self.node.is_none() && self.nodes.is_empty() {
            return None;
        }
        let nodes = self.nodes(bad);
        let Some(node) = self.node.clone() else {
            bad(
                "cluster.node",
                "missing: which of cluster.nodes is this node?".into(),
            );
            return None;
        };
        let Some(me) = nodes.iter().position(|n| n.id == node) else {
            bad("cluster.node", format!("{node:?} is not in cluster.nodes"));
            return None;
        };
        let members = nodes
            .iter()
            .map(|n| Member {
                id: n.id.clone(),
                weight: n.weight,
            })
            .collect();
        let rampup = Duration::from_millis(self.rampup_ms(bad));
        let now = Instant::now();
        Some(ClusterConfig {
            rampup,
            warm_until: now.checked_add(rampup).unwrap_or(now),
            near: self.near(cache, bad),
            digest: digest(&nodes),
            ring: Arc::new(Ring::new(members)),
            health: Arc::new(PeerHealth::new(nodes.len())),
            peer_down: Duration::from_millis(self.peer_down_ms.unwrap_or(DEFAULT_PEER_DOWN_MS)),
            secret: self.secret(bad),
            balance_factor: self.balance_factor(bad),
            node,
            me,
            nodes,
        })
    }

    fn balance_factor(&self, bad: &mut impl FnMut(&str, String)) -> f64 {
        let c = self.balance_factor.unwrap_or(DEFAULT_BALANCE_FACTOR);
        if c != 0.0 && !(1.0..=100.0).contains(&c) {
            bad(
                "cluster.balance_factor",
                format!("{c}: 0 (off) or from 1 to 100"),
            );
            return DEFAULT_BALANCE_FACTOR;
        }
        c
    }

    fn rampup_ms(&self, bad: &mut impl FnMut(&str, String)) -> u64 {
        let ms = self.rampup_ms.unwrap_or(DEFAULT_RAMPUP_MS);
        if ms > RAMPUP_MS_MAX {
            bad(
                "cluster.rampup_ms",
                format!("{ms}: at most {RAMPUP_MS_MAX} (an hour)"),
            );
            return DEFAULT_RAMPUP_MS;
        }
        ms
    }

    /// The near-cache, when it has memory and the node a cache.
    fn near(
        &self,
        cache: &crate::config::CacheConfig,
        bad: &mut impl FnMut(&str, String),
    ) -> Option<Arc<NearCache>> {
        let ttl = self.near_ttl_s.unwrap_or(NEAR_TTL_S_MAX);
        if ttl > NEAR_TTL_S_MAX {
            let why = "a copy must not outlive a change at the owner by long";
            bad(
                "cluster.near_ttl_s",
                format!("{ttl}: at most {NEAR_TTL_S_MAX} ({why})"),
            );
        }
        let admit = self.near_admit_after.unwrap_or(DEFAULT_NEAR_ADMIT_AFTER);
        if !(1..=15).contains(&admit) {
            bad("cluster.near_admit_after", format!("{admit}: from 1 to 15"));
        }
        let bytes = self
            .near_cache_bytes
            .unwrap_or(cache.memory_bytes / NEAR_CACHE_SHARE);
        if !cache.enabled() || bytes == 0 || ttl == 0 {
            return None;
        }
        if bytes >= cache.memory_bytes {
            let why = "it is a share of cache.memory_bytes";
            bad(
                "cluster.near_cache_bytes",
                format!("{bytes}: less than {} ({why})", cache.memory_bytes),
            );
            return None;
        }
        Some(Arc::new(NearCache::new(
            bytes,
            cache.object_bytes_max,
            ttl.min(NEAR_TTL_S_MAX),
            admit,
        )))
    }

    /// The shared secret, at least 16 bytes (surrounding whitespace ignored).
    fn secret(&self, bad: &mut impl FnMut(&str, String)) -> Option<Arc<[u8]>> {
        let path = self.secret_file.as_deref()?;
        match super::read_bounded(std::path::Path::new(path), 64 << 10) {
            Ok(bytes) => {
                let secret = bytes.trim_ascii();
                if secret.len() < 16 {
                    bad(
                        "cluster.secret_file",
                        format!("{path}: shorter than 16 bytes"),
                    );
                    return None;
                }
                Some(secret.into())
            }
            Err(e) => {
                bad("cluster.secret_file", format!("cannot read {path}: {e}"));
                None
            }
        }
    }

    fn nodes(&self, bad: &mut impl FnMut(&str, String)) -> Vec<Node> {
        if self.nodes.len() > 255 {
            bad(
                "cluster.nodes",
                format!("{} nodes: at most 255", self.nodes.len()),
            );
        }
        let mut nodes: Vec<Node> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate().take(255) {
            let key = format!("cluster.nodes[{i}]");
            // Ids travel in a header field and in Cache-Status: a token, and unique.
            let token =
                n.id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if n.id.is_empty() || !token || nodes.iter().any(|m| m.id == n.id) {
                let why = "an id is unique and made of letters, digits, '.', '_', '-'";
                bad(&format!("{key}.id"), format!("{:?}: {why}", n.id));
                continue;
            }
            let http = match n.http.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_unspecified() || a.port() == 0 => {
                    let why = "peers need an address they can reach";
                    bad(&format!("{key}.http"), format!("{a}: {why}"));
                    continue;
                }
                Ok(a) => a,
                Err(e) => {
                    bad(
                        &format!("{key}.http"),
                        format!("{:?} is not an IP:port address ({e})", n.http),
                    );
                    continue;
                }
            };
            let gossip = n
                .gossip
                .as_deref()
                .and_then(|g| match g.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(e) => {
                        bad(
                            &format!("{key}.gossip"),
                            format!("{g:?} is not an IP:port address ({e})"),
                        );
                        None
                    }
                });
            let weight = n.weight.unwrap_or(1);
            if weight == 0 {
                bad(
                    &format!("{key}.weight"),
                    "0: a node's weight is at least 1".into(),
                );
            }
            nodes.push(Node {
                id: n.id.clone(),
                http,
                gossip,
                weight: weight.max(1),
            });
        }
        nodes
    }
}

/// The node list and the placement's parameters, hashed.
fn digest(nodes: &[Node]) -> u64 {
    let mut text = format!("rendezvous-xxh3 slots={}", crate::cluster::ring::SLOTS);
    for n in nodes {
        text.push_str(&format!("\n{} {} {}", n.id, n.http, n.weight));
    }
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes, with `extra` keys in `[cluster]`.
    fn two(extra: &str) -> String {
        let nodes = "[[cluster.nodes]]\nid = \"a\"\nhttp = \"127.0.0.1:1\"\n[[cluster.nodes]]\nid = \"b\"\nhttp = \"127.0.0.1:2\"\n";
        format!("[cluster]\nnode = \"a\"\n{extra}{nodes}")
    }

    #[test]
    fn the_near_cache_is_a_share_of_the_cache_memory() {
        let text = format!(
            "[cache]\nmemory_bytes = 1600\nobject_bytes_max = 100\n{}",
            two("")
        );
        let cfg = crate::config::Config::from_toml_str(&text, "test").expect("valid");
        let near = cfg
            .cluster
            .as_ref()
            .and_then(|c| c.near.as_ref())
            .expect("on");
        assert_eq!(near.store.budget(), 25, "1/64 by default");
        assert_eq!(cfg.store_budget(), 1575, "the node's store gets the rest");
        let text = two("near_cache_bytes = 0\n");
        let cfg = crate::config::Config::from_toml_str(&text, "test").expect("valid");
        assert!(
            cfg.cluster.as_ref().is_some_and(|c| c.near.is_none()),
            "off"
        );
        assert_eq!(cfg.store_budget(), cfg.cache.memory_bytes);
        for bad in [
            "near_cache_bytes = 99999999999\n",
            "near_ttl_s = 11\n",
            "near_admit_after = 0\n",
            "rampup_ms = 99999999999999\n",
        ] {
            let text = two(bad);
            assert!(
                crate::config::Config::from_toml_str(&text, "test").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_peer_back_from_down_gets_its_slots_back_over_the_rampup() {
        let h = PeerHealth::new(2);
        let rampup = Duration::from_secs(10);
        let now = Instant::now();
        let share = |at: Instant| {
            (0..1000)
                .filter(|&slot| h.ramped(1, slot, rampup, at))
                .count()
        };
        assert_eq!(share(now), 1000, "never away: every slot");
        h.set_alive(1, false);
        h.set_alive(1, true);
        let back = Instant::now();
        assert!(share(back) < 50, "just back: hardly any");
        let half = share(back + rampup / 2);
        assert!((400..=600).contains(&half), "half way: about half, {half}");
        assert_eq!(share(back + rampup), 1000, "after the ramp-up: all");
        // The slots it has back at a quarter it keeps at a half: a key moves once.
        let quarter: Vec<usize> = (0..1000)
            .filter(|&s| h.ramped(1, s, rampup, back + rampup / 4))
            .collect();
        assert!(
            quarter
                .iter()
                .all(|&s| h.ramped(1, s, rampup, back + rampup / 2))
        );
        assert!(
            h.ramped(1, 7, Duration::ZERO, back),
            "no ramp-up: back at once"
        );
        // A local failure passes it over for a while, then all its slots are back.
        h.mark_down(1, back + rampup, Duration::from_secs(1));
        let retried = back + rampup + Duration::from_secs(1);
        assert!(!h.is_up(1, back + rampup));
        assert_eq!(
            share(retried),
            1000,
            "tried again: its cache was never lost"
        );
    }

    #[test]
    fn a_peer_over_c_times_the_mean_takes_no_more() {
        let h = Arc::new(PeerHealth::new(3)); // node 0 is this one
        let now = Instant::now();
        // Node 2 carries 12 forwards; node 1 takes forwards until it is past the floor
        // and over 1.25 x the mean of nodes 1 and 2.
        let base: Vec<InFlight> = (0..12).map(|_| InFlight::start(&h, 2)).collect();
        let mut held = Vec::new();
        while h.within_bound(1, 1.25, 0, now) {
            held.push(InFlight::start(&h, 1));
            assert!(held.len() < 100, "never bounded");
        }
        let mean = (held.len() + 12) as f64 / 2.0;
        assert!(held.len() >= 16, "never under the floor: {}", held.len());
        assert!(
            held.len() as f64 <= 1.25 * mean + 1.0,
            "{} over 1.25 x {mean}",
            held.len()
        );
        assert!(
            h.within_bound(2, 1.25, 0, now),
            "the less loaded peer takes the next"
        );
        held.pop();
        assert!(
            h.within_bound(1, 1.25, 0, now),
            "an answered forward frees room"
        );
        assert!(h.within_bound(1, 0.0, 0, now), "off");
        drop(base);
        let light = Arc::new(PeerHealth::new(3));
        let few: Vec<InFlight> = (0..SPILL_FLOOR - 1)
            .map(|_| InFlight::start(&light, 1))
            .collect();
        assert!(
            light.within_bound(1, 1.25, 0, now),
            "under the floor: never over"
        );
        drop(few);
    }
}
