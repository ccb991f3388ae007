//! S3-FIFO admission and eviction (Yang et al., SOSP 2023), by bytes.
//!
//! Why S3-FIFO rather than LRU or W-TinyLFU: web traffic is skewed and full of one-hit
//! wonders; a small probationary FIFO (10% of the budget) drops those quickly, a ghost
//! queue remembers what was dropped so a second request admits it straight to the main
//! FIFO, and the main FIFO gives popular objects another lap instead of moving them on
//! every hit. A hit only bumps a 2-bit counter — no list surgery — which is what lets
//! the concurrent store serve reads without taking its lock (the counter is an atomic
//! there); only inserts and evictions touch the queues.
//!
//! This is the policy alone: it decides which keys stay, given sizes; the store keeps
//! the bytes.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Share of the byte budget the probationary queue gets.
const SMALL_PERCENT: u64 = 10;
const FREQ_MAX: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

/// Where an object's use counter lives. The store keeps it in the object itself, so a
/// reader records a hit with one relaxed atomic store and never touches the queues.
pub trait Hits {
    fn counter(&self) -> &AtomicU8;

    /// A hit: the 2-bit counter goes up, saturating.
    fn record_hit(&self) {
        let c = self.counter();
        let f = c.load(Ordering::Relaxed);
        if f < FREQ_MAX {
            // A lost increment under a race costs nothing: the counter is a hint.
            c.store(f + 1, Ordering::Relaxed);
        }
    }
}

impl Hits for Arc<AtomicU8> {
    fn counter(&self) -> &AtomicU8 {
        self
    }
}

#[derive(Debug)]
struct Entry<H> {
    size: u64,
    hits: H,
    queue: Queue,
}

impl<H: Hits> Entry<H> {
    fn freq(&self) -> u8 {
        self.hits.counter().load(Ordering::Relaxed)
    }

    fn set_freq(&self, f: u8) {
        self.hits.counter().store(f, Ordering::Relaxed);
    }
}

/// The policy state for keys of type `K`, whose hit counters are `H`.
#[derive(Debug)]
pub struct S3Fifo<K: Hash + Eq + Clone, H = Arc<AtomicU8>> {
    capacity: u64,
    entries: HashMap<K, Entry<H>>,
    small: VecDeque<K>,
    main: VecDeque<K>,
    ghost: VecDeque<K>,
    ghost_set: HashMap<K, ()>,
    small_bytes: u64,
    main_bytes: u64,
    ghost_max: usize,
}

impl<K: Hash + Eq + Clone, H: Hits> S3Fifo<K, H> {
    /// A policy for `capacity` bytes; the ghost queue remembers about as many keys as
    /// the main queue holds, estimated from a typical object size.
    pub fn new(capacity: u64, typical_object_bytes: u64) -> S3Fifo<K, H> {
        let ghost_max = (capacity / typical_object_bytes.max(1)).max(16) as usize;
        S3Fifo {
            capacity,
            entries: HashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashMap::new(),
            small_bytes: 0,
            main_bytes: 0,
            ghost_max,
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    pub fn bytes(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Records a hit; false when the key is not cached. (The store records hits on the
    /// object's own counter instead, without this map.)
    pub fn touch(&mut self, key: &K) -> bool {
        match self.entries.get(key) {
            Some(e) => {
                e.hits.record_hit();
                true
            }
            None => false,
        }
    }

    /// Admits `key` of `size` bytes, evicting as needed. Returns the evicted keys (which
    /// may include `key` itself when it is larger than the whole budget).
    pub fn insert(&mut self, key: K, size: u64, hits: H) -> Vec<K> {
        let mut evicted = Vec::new();
        if size > self.capacity {
            evicted.push(key);
            return evicted;
        }
        if self.entries.contains_key(&key) {
            self.remove(&key);
        }
        while self.bytes() + size > self.capacity {
            match self.evict_one() {
                Some(k) => evicted.push(k),
                None => break,
            }
        }
        let queue = if self.ghost_set.remove(&key).is_some() {
            self.main.push_front(key.clone());
            self.main_bytes += size;
            Queue::Main
        } else {
            self.small.push_front(key.clone());
            self.small_bytes += size;
            Queue::Small
        };
        hits.counter().store(0, Ordering::Relaxed);
        self.entries.insert(key, Entry { size, hits, queue });
        evicted
    }

    /// A new budget: evicts until what is cached fits it. Returns the evicted keys.
    pub fn set_capacity(&mut self, capacity: u64) -> Vec<K> {
        self.capacity = capacity;
        let mut evicted = Vec::new();
        while self.bytes() > self.capacity {
            match self.evict_one() {
                Some(k) => evicted.push(k),
                None => break,
            }
        }
        evicted
    }

    /// Forgets `key` (purge, or an object replaced). Its queue slot is dropped lazily.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(e) = self.entries.remove(key) else {
            return false;
        };
        match e.queue {
            Queue::Small => self.small_bytes -= e.size,
            Queue::Main => self.main_bytes -= e.size,
        }
        true
    }

    fn evict_one(&mut self) -> Option<K> {
        loop {
            let small_over = self.small_bytes * 100 >= self.capacity * SMALL_PERCENT;
            let from_small = (small_over || self.main.is_empty()) && !self.small.is_empty();
            let found = if from_small {
                self.evict_small()
            } else {
                self.evict_main()
            };
            match found {
                Step::Evicted(k) => return Some(k),
                Step::Moved => continue,
                Step::Empty => return None,
            }
        }
    }

    /// Tail of the probationary queue: seen again → main queue, else out (remembered
    /// in the ghost queue).
    fn evict_small(&mut self) -> Step<K> {
        let Some(key) = self.small.pop_back() else {
            return Step::Empty;
        };
        let Some(e) = self
            .entries
            .get_mut(&key)
            .filter(|e| e.queue == Queue::Small)
        else {
            return Step::Moved; // stale slot of a removed or moved key
        };
        self.small_bytes -= e.size;
        if e.freq() > 0 {
            e.queue = Queue::Main;
            e.set_freq(0);
            self.main_bytes += e.size;
            self.main.push_front(key);
            return Step::Moved;
        }
        self.entries.remove(&key);
        self.remember(key.clone());
        Step::Evicted(key)
    }

    /// Tail of the main queue: used since its last lap → another lap, else out.
    fn evict_main(&mut self) -> Step<K> {
        let Some(key) = self.main.pop_back() else {
            return Step::Empty;
        };
        let Some(e) = self
            .entries
            .get_mut(&key)
            .filter(|e| e.queue == Queue::Main)
        else {
            return Step::Moved;
        };
        let f = e.freq();
        if f > 0 {
            e.set_freq(f - 1);
            self.main.push_front(key);
            return Step::Moved;
        }
        self.main_bytes -= e.size;
        self.entries.remove(&key);
        Step::Evicted(key)
    }

    fn remember(&mut self, key: K) {
        self.ghost_set.insert(key.clone(), ());
        self.ghost.push_front(key);
        while self.ghost.len() > self.ghost_max {
            if let Some(old) = self.ghost.pop_back() {
                self.ghost_set.remove(&old);
            }
        }
    }
}

enum Step<K> {
    Evicted(K),
    Moved,
    Empty,
}

/// Plain LRU by bytes: the baseline S3-FIFO is measured against.
#[derive(Debug, Default)]
pub struct Lru<K: Hash + Eq + Clone + Ord> {
    capacity: u64,
    bytes: u64,
    tick: u64,
    entries: HashMap<K, (u64, u64)>,
    order: std::collections::BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone + Ord> Lru<K> {
    pub fn new(capacity: u64) -> Lru<K> {
        Lru {
            capacity,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
            order: std::collections::BTreeMap::new(),
        }
    }

    pub fn touch(&mut self, key: &K) -> bool {
        let Some((_, used)) = self.entries.get_mut(key) else {
            return false;
        };
        self.order.remove(used);
        self.tick += 1;
        *used = self.tick;
        self.order.insert(self.tick, key.clone());
        true
    }

    pub fn insert(&mut self, key: K, size: u64) {
        if size > self.capacity || self.entries.contains_key(&key) {
            return;
        }
        while self.bytes + size > self.capacity {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((s, _)) = self.entries.remove(&old) {
                self.bytes -= s;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (size, self.tick));
        self.bytes += size;
    }
}

/// Hit ratios of S3-FIFO and LRU on the same trace of keys (objects of `object_bytes`
/// each), with a budget of `capacity` bytes. The trace comes from the caller (the
/// cache-policy benchmark draws it from tools/zipf.rs).
pub fn simulate(
    trace: impl IntoIterator<Item = u64>,
    capacity: u64,
    object_bytes: u64,
) -> (f64, f64) {
    let mut s3: S3Fifo<u64> = S3Fifo::new(capacity, object_bytes);
    let mut lru = Lru::new(capacity);
    let (mut s3_hits, mut lru_hits, mut requests) = (0u64, 0u64, 0u64);
    for key in trace {
        requests += 1;
        if s3.touch(&key) {
            s3_hits += 1;
        } else {
            s3.insert(key, object_bytes, Arc::default());
        }
        if lru.touch(&key) {
            lru_hits += 1;
        } else {
            lru.insert(key, object_bytes);
        }
    }
    let ratio = |hits: u64| hits as f64 / requests.max(1) as f64;
    (ratio(s3_hits), ratio(lru_hits))
}

/// `requests` keys drawn from Zipf(`s`) over `objects` ranks, the rank order shuffled by
/// a multiplicative hash so popularity is not key order.
#[cfg(test)]
pub(crate) fn zipf_trace(requests: usize, objects: usize, s: f64, seed: u64) -> Vec<u64> {
    let zipf = zipf::Zipf::new(objects, s);
    let mut rng = zipf::Rng::new(seed);
    (0..requests)
        .map(|_| (zipf.sample(&mut rng) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect()
}

// The sampler is the load generator's (tools/); the policy's test draws its trace from it.
#[cfg(test)]
#[path = "../../tools/zipf.rs"]
mod zipf;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_hit_wonders_leave_through_the_small_queue() {
        let mut c: S3Fifo<_> = S3Fifo::new(100, 10);
        c.insert("hot", 10, Arc::default());
        c.touch(&"hot");
        for i in 0..50 {
            c.insert(format!("cold{i}").leak() as &str, 10, Arc::default());
        }
        assert!(
            c.contains(&"hot"),
            "a re-used object survives a scan of one-hit wonders"
        );
        assert!(c.bytes() <= 100);
    }

    #[test]
    fn a_ghost_hit_goes_straight_to_main() {
        let mut c: S3Fifo<_> = S3Fifo::new(100, 10);
        c.insert(1, 10, Arc::default());
        for k in 2..20 {
            c.insert(k, 10, Arc::default());
        }
        assert!(!c.contains(&1));
        c.insert(1, 10, Arc::default());
        assert_eq!(c.entries.get(&1).map(|e| e.queue), Some(Queue::Main));
    }

    #[test]
    fn too_large_is_refused_and_remove_frees_bytes() {
        let mut c: S3Fifo<_> = S3Fifo::new(100, 10);
        assert_eq!(c.insert(1, 101, Arc::default()), vec![1]);
        c.insert(2, 60, Arc::default());
        assert!(c.remove(&2));
        assert_eq!(c.bytes(), 0);
        c.insert(3, 100, Arc::default());
        assert!(c.contains(&3));
    }

    #[test]
    fn beats_lru_on_a_skewed_trace() {
        // A smaller version of the benchmark's trace (bench/run.sh cache-policy).
        let trace = zipf_trace(200_000, 20_000, 0.9, 7);
        let (s3, lru) = simulate(trace, 20_000 * 1000 / 10, 1000);
        assert!(s3 > lru + 0.03, "S3-FIFO {s3:.3} vs LRU {lru:.3}");
    }

    proptest! {
        #[test]
        fn never_over_budget_and_accounting_holds(ops in proptest::collection::vec((0u32..50, 1u64..40, any::<bool>()), 1..400)) {
            let mut c: S3Fifo<u32> = S3Fifo::new(200, 10);
            for (key, size, remove) in ops {
                if remove {
                    c.remove(&key);
                } else if !c.touch(&key) {
                    c.insert(key, size, Arc::default());
                }
                prop_assert!(c.bytes() <= 200);
                let sum: u64 = c.entries.values().map(|e| e.size).sum();
                prop_assert_eq!(sum, c.bytes());
            }
        }
    }
}
