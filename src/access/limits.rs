//! Per-client limits: concurrent connections, and requests per second as a token bucket.
//! Both live in tables of a fixed size allocated once, indexed by a hash of the client
//! (an IPv4 address, an IPv6 /64), so an attacker with many addresses cannot grow them:
//! at worst two clients share a slot. Each client has a slot in each of two rows (a
//! count-min sketch: a client is over a limit only when both its slots are, so a
//! collision in one row alone refuses no one), placed by a hash under seeds drawn at
//! start. All shards share the tables, lock-free.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slots per row: 2 x 16,384 x 4 bytes of connection counts, 2 x 16,384 x 8 bytes of buckets.
const WIDTH: usize = 16_384;
/// Tokens are kept in thousandths, in 24 bits: a burst of at most 16,777.
pub const BURST_MAX: u32 = 16_000;
const MILLI: u64 = 1000;
const TOKEN_BITS: u32 = 24;

/// The key a client is limited under: its IPv4 address, or its IPv6 /64 (one host's
/// share of a network: a client that owns a /64 must not get 2^64 budgets).
fn client_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 ^ (1 << 63),
    }
}

/// Two slots for `ip`, one in each row (xxh3 under two seeds drawn at start, so nobody
/// can pick from outside an address that lands in another client's slots).
fn slots(ip: IpAddr, seeds: [u64; 2]) -> [usize; 2] {
    let key = client_key(ip).to_le_bytes();
    let a = xxhash_rust::xxh3::xxh3_64_with_seed(&key, seeds[0]);
    let b = xxhash_rust::xxh3::xxh3_64_with_seed(&key, seeds[1]);
    [(a as usize) % WIDTH, WIDTH + (b as usize) % WIDTH]
}

fn random_seeds() -> [u64; 2] {
    let k = super::random_bytes::<16>();
    let (a, b) = k.split_at(8);
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
    [word(a), word(b)]
}

/// Concurrent connections per client, node-wide.
#[derive(Debug)]
pub struct ConnectionCounts {
    counts: Box<[AtomicU32]>,
    seeds: [u64; 2],
}

impl Default for ConnectionCounts {
    fn default() -> Self {
        ConnectionCounts {
            counts: (0..2 * WIDTH).map(|_| AtomicU32::new(0)).collect(),
            seeds: random_seeds(),
        }
    }
}

/// The client has its `client_connections_max` connections open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client has forward.client_connections_max connections open already")]
pub struct TooManyConnections;

/// A connection counted against its client; uncounted when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    table: Arc<ConnectionCounts>,
    at: [usize; 2],
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        for i in self.at {
            self.table.counts[i].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl ConnectionCounts {
    /// Counts a connection of `client`, unless it has `max` already (`max` 0: no cap,
    /// nothing counted).
    pub fn open(
        self: &Arc<Self>,
        client: IpAddr,
        max: u32,
    ) -> Result<Option<ConnectionSlot>, TooManyConnections> {
        if max == 0 {
            return Ok(None);
        }
        let at = slots(client, self.seeds);
        let before = at.map(|i| self.counts[i].fetch_add(1, Ordering::Relaxed));
        let slot = ConnectionSlot {
            table: self.clone(),
            at,
        };
        if before.iter().min().is_some_and(|&n| n >= max) {
            return Err(TooManyConnections); // `slot` drops: both counts are given back
        }
        Ok(Some(slot))
    }
}

/// Requests per second per client: a token bucket in each of the client's two slots,
/// each packed in one word (milliseconds since the table's start in the high 40 bits,
/// thousandths of a token in the low 24) and updated by compare-and-swap. A request
/// goes through when either bucket has a token (and takes one from each that has), so
/// a client that shares one slot with a busy one is still served by its other.
#[derive(Debug)]
pub struct RequestRate {
    buckets: Box<[AtomicU64]>,
    seeds: [u64; 2],
    start: Instant,
    /// Tokens added per minute.
    per_min: u64,
    burst: u64,
}

impl RequestRate {
    /// `per_s` requests a second, `burst` at once (at most `BURST_MAX`).
    pub fn new(per_s: u32, burst: u32) -> RequestRate {
        RequestRate::per_minute(per_s.saturating_mul(60), burst)
    }

    /// `per_min` a minute, `burst` at once (at most `BURST_MAX`).
    pub fn per_minute(per_min: u32, burst: u32) -> RequestRate {
        RequestRate {
            buckets: (0..2 * WIDTH).map(|_| AtomicU64::new(u64::MAX)).collect(),
            seeds: random_seeds(),
            start: Instant::now(),
            per_min: u64::from(per_min.max(1)),
            burst: u64::from(burst.clamp(1, BURST_MAX)) * MILLI,
        }
    }

    /// Whether `client` has a token at `now`, without taking it; if not, how long until.
    pub fn peek(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let ms = self.ms(now);
        let most = slots(client, self.seeds)
            .iter()
            .map(|&i| self.refilled(self.buckets[i].load(Ordering::Relaxed), ms))
            .max()
            .unwrap_or(0);
        match most < MILLI {
            true => Err(self.wait(most)),
            false => Ok(()),
        }
    }

    /// Takes a token for a request of `client` at `now`; when there is none, how long
    /// until there is (for Retry-After).
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        self.peek(client, now)?;
        let ms = self.ms(now);
        let mut taken = false;
        for i in slots(client, self.seeds) {
            taken |= self.adjust(i, ms, |tokens| tokens.checked_sub(MILLI));
        }
        // Another shard may have taken the last token since the peek.
        match taken {
            true => Ok(()),
            false => self.peek(client, now).and(Err(self.wait(0))),
        }
    }

    /// Gives back a token taken for `client` (an attempt that turned out to count
    /// for nothing).
    pub fn give_back(&self, client: IpAddr, now: Instant) {
        let ms = self.ms(now);
        for i in slots(client, self.seeds) {
            self.adjust(i, ms, |tokens| Some((tokens + MILLI).min(self.burst)));
        }
    }

    /// Sets slot `i`'s tokens (refilled to `ms`) to `f` of them, unless `f` says no;
    /// whether it did.
    fn adjust(&self, i: usize, ms: u64, f: impl Fn(u64) -> Option<u64>) -> bool {
        let slot = &self.buckets[i];
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let Some(tokens) = f(self.refilled(word, ms)) else {
                return false;
            };
            let next = (ms << TOKEN_BITS) | tokens;
            match slot.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => word = seen,
            }
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// How long until a bucket holding `tokens` (thousandths) has a whole one.
    fn wait(&self, tokens: u64) -> Duration {
        Duration::from_millis((MILLI - tokens).saturating_mul(60).div_ceil(self.per_min))
    }

    /// The bucket's tokens at `ms`: what it had plus the refill since, up to the burst.
    /// An untouched slot (all ones) is full.
    fn refilled(&self, word: u64, ms: u64) -> u64 {
        if word == u64::MAX {
            return self.burst;
        }
        let (then, tokens) = (word >> TOKEN_BITS, word & ((1 << TOKEN_BITS) - 1));
        let gained = ms.saturating_sub(then).saturating_mul(self.per_min) / 60;
        tokens.saturating_add(gained).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn connections_are_capped_per_client_and_given_back_on_drop() {
        let t = Arc::new(ConnectionCounts::default());
        let a: Vec<_> = (0..3)
            .map(|_| t.open(ip("10.0.0.1"), 3).expect("within the cap"))
            .collect();
        assert!(t.open(ip("10.0.0.1"), 3).is_err(), "the fourth is over");
        assert!(t.open(ip("::ffff:10.0.0.1"), 3).is_err(), "the same client");
        assert!(t.open(ip("10.0.0.2"), 3).is_ok(), "another client");
        drop(a);
        assert!(t.open(ip("10.0.0.1"), 3).is_ok(), "given back");
        assert_eq!(t.open(ip("10.0.0.1"), 0).map(|s| s.is_none()), Ok(true));
        // An IPv6 client is its /64.
        let held: Vec<_> = (1..=3)
            .map(|i| t.open(ip(&format!("2001:db8::{i}")), 3).expect("ok"))
            .collect();
        assert!(t.open(ip("2001:db8::ffff"), 3).is_err());
        assert!(t.open(ip("2001:db8:0:1::1"), 3).is_ok());
        drop(held);
        // Every count went back to zero.
        assert!(t.counts.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn many_addresses_cost_no_memory_and_rarely_collide() {
        let t = Arc::new(ConnectionCounts::default());
        let held: Vec<_> = (0..20_000u32)
            .filter_map(|i| {
                t.open(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), 16)
                    .ok()
            })
            .collect();
        assert_eq!(
            held.len(),
            20_000,
            "one connection each is under any sane cap"
        );
        assert_eq!(t.counts.len(), 2 * WIDTH, "the table never grows");
    }

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let r = RequestRate::new(10, 5);
        let t0 = r.start;
        let c = ip("192.0.2.1");
        for _ in 0..5 {
            assert_eq!(r.take(c, t0), Ok(()));
        }
        let wait = r.take(c, t0).expect_err("empty");
        assert_eq!(wait, Duration::from_millis(100), "one token per 100 ms");
        assert!(
            r.take(ip("192.0.2.2"), t0).is_ok(),
            "another client's bucket"
        );
        assert!(r.take(c, t0 + Duration::from_millis(99)).is_err());
        assert!(r.take(c, t0 + Duration::from_millis(100)).is_ok());
        // Refilled up to the burst, never beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(r.take(c, later).is_ok());
        }
        assert!(r.take(c, later).is_err());
    }
}
