//! The near-cache: a small store of the hottest objects this node forwards to their
//! owners, so one hot URL does not saturate one owner (and a hit through a non-owner
//! costs no hop). An object is admitted only once its key has been asked for often
//! (a count-min sketch, aged like TinyLFU's), lives at most `ttl` (never past its own
//! freshness), and the store's budget bounds the memory it takes.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use xxhash_rust::xxh3::xxh3_64;

use crate::cache::Store;

/// Counters per row of the sketch.
const WIDTH: usize = 4096;
const ROWS: usize = 4;
/// A counter saturates here (4 bits' worth, as in TinyLFU).
const COUNT_MAX: u8 = 15;
/// Every this many increments all counters are halved, so popularity fades.
const AGE_EVERY: u32 = (WIDTH * 10) as u32;

pub struct NearCache {
    pub store: Store,
    /// Longest time a copy is served, in seconds.
    pub ttl_secs: u64,
    admit_after: u8,
    sketch: Sketch,
}

impl NearCache {
    pub fn new(budget_bytes: u64, object_bytes_max: u64, ttl_secs: u64, admit_after: u8) -> Self {
        NearCache {
            store: Store::new(budget_bytes, object_bytes_max.min(budget_bytes)),
            ttl_secs,
            admit_after: admit_after.clamp(1, COUNT_MAX),
            sketch: Sketch::new(),
        }
    }

    /// The same budget, time to live and admission: a reload may keep the copies.
    pub fn same_settings(&self, other: &NearCache) -> bool {
        self.store.budget() == other.store.budget()
            && self.ttl_secs == other.ttl_secs
            && self.admit_after == other.admit_after
    }

    /// Counts one more request for `key`; true when it is now popular enough to keep.
    pub fn touch(&self, key: &str) -> bool {
        self.sketch.increment(xxh3_64(key.as_bytes())) >= self.admit_after
    }

    /// The lifetime a copy kept here gets: never past its own freshness, never more
    /// than `ttl_secs` from now (its `age` now).
    pub fn capped_lifetime(&self, lifetime: u64, age: u64) -> u64 {
        lifetime.min(age.saturating_add(self.ttl_secs))
    }
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NearCache(ttl {} s)", self.ttl_secs)
    }
}

/// A count-min sketch of small saturating counters, shared by all shards: races lose
/// an increment now and then, which an estimate of popularity can afford.
struct Sketch {
    counters: Box<[AtomicU8]>,
    increments: AtomicU32,
}

impl Sketch {
    fn new() -> Sketch {
        Sketch {
            counters: (0..WIDTH * ROWS).map(|_| AtomicU8::new(0)).collect(),
            increments: AtomicU32::new(0),
        }
    }

    /// Adds one to the key's counters; returns its estimate (the least of them).
    fn increment(&self, hash: u64) -> u8 {
        if self.increments.fetch_add(1, Ordering::Relaxed) + 1 >= AGE_EVERY {
            self.increments.store(0, Ordering::Relaxed);
            self.halve();
        }
        let mut estimate = COUNT_MAX;
        for row in 0..ROWS {
            let c = &self.counters[row * WIDTH + index(hash, row)];
            let v = c.load(Ordering::Relaxed);
            let next = v.saturating_add(1).min(COUNT_MAX);
            c.store(next, Ordering::Relaxed);
            estimate = estimate.min(next);
        }
        estimate
    }

    fn halve(&self) {
        for c in self.counters.iter() {
            c.store(c.load(Ordering::Relaxed) / 2, Ordering::Relaxed);
        }
    }
}

/// The counter of `row` for a hash: 12 bits of it per row.
fn index(hash: u64, row: usize) -> usize {
    ((hash >> (row * 12)) as usize) & (WIDTH - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_admitted_only_after_it_was_asked_for_often() {
        let near = NearCache::new(1 << 20, 1 << 20, 10, 3);
        assert!(!near.touch("http://a/x"));
        assert!(!near.touch("http://a/x"));
        assert!(near.touch("http://a/x"), "third request admits");
        assert!(!near.touch("http://a/y"), "another key starts from nothing");
    }

    #[test]
    fn popularity_fades() {
        let near = NearCache::new(1 << 20, 1 << 20, 10, 8);
        for _ in 0..10 {
            near.touch("http://a/hot");
        }
        assert!(near.touch("http://a/hot"));
        // Enough other traffic ages every counter down (halved each AGE_EVERY).
        for _ in 0..(AGE_EVERY * 4) {
            near.touch("http://a/other");
        }
        assert!(!near.touch("http://a/hot"), "old popularity was forgotten");
    }

    #[test]
    fn a_copy_lives_at_most_ttl_and_never_past_its_freshness() {
        let near = NearCache::new(1 << 20, 1 << 20, 10, 2);
        assert_eq!(near.capped_lifetime(3600, 0), 10);
        assert_eq!(near.capped_lifetime(3600, 100), 110, "10 s from now");
        assert_eq!(near.capped_lifetime(5, 0), 5, "its own freshness first");
    }
}
