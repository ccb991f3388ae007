//! The node's one store, shared by every shard.
//!
//! Reads take no lock: the table is a lock-free hash map (`papaya`, epoch-style
//! reclamation), a lookup clones an `Arc` and records the hit on the object's own
//! atomic counter. Inserts, evictions and removals serialise on the policy's mutex,
//! which readers never touch, so a writer never blocks a reader. The policy counts every
//! object's bytes (head, body, key, overhead) and evicts before inserting, so the budget
//! is never exceeded; an object still being sent when it is evicted lives on until its
//! last reader drops it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::flight::{Flight, FlightGuard};
use super::key;
use super::object::Object;
use super::s3fifo::{Hits, S3Fifo};

/// What a key names in the table.
#[derive(Clone)]
enum Stored {
    Object(Arc<Object>),
    /// The response for this URL varies: its variants are under secondary keys.
    Variants(Arc<Variants>),
}

struct Variants {
    names: Box<[Box<str>]>,
    /// Secondary keys stored so far (some may since have been evicted), for purge.
    keys: Mutex<Vec<Arc<str>>>,
}

/// Bound on remembered secondary keys per URL before dead ones are pruned.
const VARIANT_KEYS_PRUNE_AT: usize = 64;

/// A lookup's answer: the object and the key it is stored under.
pub struct Found {
    pub object: Arc<Object>,
    pub key: Arc<str>,
}

/// What a miss should do about other requests for the same key.
pub enum FlightRole {
    /// This request fetches; the guard wakes the waiters when dropped.
    Leader(FlightGuard),
    /// Another request is fetching: wait on it.
    Follower(Arc<Flight>),
}

pub struct Store {
    map: papaya::HashMap<Arc<str>, Stored>,
    policy: Mutex<S3Fifo<Arc<str>, Arc<Object>>>,
    flights: Arc<Mutex<HashMap<Arc<str>, Arc<Flight>>>>,
    object_bytes_max: u64,
    evictions: std::sync::atomic::AtomicU64,
}

impl Store {
    pub fn new(budget_bytes: u64, object_bytes_max: u64) -> Store {
        Store {
            map: papaya::HashMap::new(),
            policy: Mutex::new(S3Fifo::new(budget_bytes, 16 * 1024)),
            flights: Arc::default(),
            object_bytes_max,
            evictions: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The object stored for `primary`, selecting the variant by the request's fields.
    pub fn lookup<'a>(
        &self,
        primary: &str,
        request: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> Option<Found> {
        self.with_stored(primary, request, |object, key| {
            Some(Found {
                object: object.clone(),
                key: key.clone(),
            })
        })
    }

    /// `f` on the object stored for `primary` (the variant the request's fields select)
    /// and the key it is under, both borrowed from the table: a hit takes a reference
    /// only if `f` does, and builds no key (a variant's is written into this thread's
    /// reused buffer). The object counts as hit (for eviction) only when `f` takes it
    /// (returns Some).
    pub fn with_stored<'a, R>(
        &self,
        primary: &str,
        request: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
        f: impl FnOnce(&Arc<Object>, &Arc<str>) -> Option<R>,
    ) -> Option<R> {
        thread_local! {
            static VARIANT_KEY: std::cell::RefCell<String> = const {
                std::cell::RefCell::new(String::new())
            };
        }
        let map = self.map.pin();
        let (key, object) = match map.get_key_value(primary)? {
            (k, Stored::Object(o)) => (k, o),
            (_, Stored::Variants(v)) => {
                let found = VARIANT_KEY.with_borrow_mut(|k| {
                    key::write_variant(primary, &v.names, request, k);
                    map.get_key_value(k.as_str())
                });
                match found? {
                    (k, Stored::Object(o)) => (k, o),
                    (_, Stored::Variants(_)) => return None,
                }
            }
        };
        let taken = f(object, key);
        if taken.is_some() {
            object.record_hit();
        }
        taken
    }

    /// Stores `object` for `primary` (under its variant key when it varies), evicting
    /// as the policy says. False when it is larger than the budget or the object limit.
    pub fn insert<'a>(
        &self,
        primary: &Arc<str>,
        object: Arc<Object>,
        request: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> bool {
        let mut policy = self.lock_policy();
        let map = self.map.pin();
        let key = match &object.vary {
            None => {
                if let Some(Stored::Variants(v)) = map.get(&**primary) {
                    self.drop_variants(&mut policy, v);
                }
                primary.clone()
            }
            Some(names) => {
                let record = match map.get(&**primary) {
                    Some(Stored::Variants(v)) if v.names == *names => v.clone(),
                    other => {
                        match other {
                            Some(Stored::Variants(v)) => self.drop_variants(&mut policy, v),
                            Some(Stored::Object(_)) => {
                                policy.remove(primary);
                            }
                            None => {}
                        }
                        let v = Arc::new(Variants {
                            names: names.clone(),
                            keys: Mutex::new(Vec::new()),
                        });
                        map.insert(primary.clone(), Stored::Variants(v.clone()));
                        v
                    }
                };
                let k = key::variant(primary, names, request);
                self.remember_variant(&record, &k);
                k
            }
        };
        let cost = object.cost(key.len());
        if object.body.len() as u64 > self.object_bytes_max || cost > policy.capacity() {
            policy.remove(&key);
            map.remove(&key);
            return false;
        }
        for gone in policy.insert(key.clone(), cost, object.clone()) {
            if gone != key {
                self.evicted(&map, &gone);
            }
        }
        map.insert(key, Stored::Object(object));
        true
    }

    /// Replaces the object under `key` (after revalidation) if it is still stored.
    pub fn replace(&self, key: &Arc<str>, object: Object) -> Arc<Object> {
        let object = Arc::new(object);
        let mut policy = self.lock_policy();
        let map = self.map.pin();
        if matches!(map.get(&**key), Some(Stored::Object(_))) {
            let cost = object.cost(key.len());
            for gone in policy.insert(key.clone(), cost, object.clone()) {
                self.evicted(&map, &gone);
            }
            if policy.contains(key) {
                map.insert(key.clone(), Stored::Object(object.clone()));
            }
        }
        object
    }

    /// Removes a URL and all its variants; true when something was stored.
    pub fn remove(&self, primary: &str) -> bool {
        let mut policy = self.lock_policy();
        let map = self.map.pin();
        let Some((k, slot)) = map.get_key_value(primary) else {
            return false;
        };
        let k = k.clone();
        if let Stored::Variants(v) = slot {
            self.drop_variants(&mut policy, v);
        }
        policy.remove(&k);
        map.remove(&k);
        true
    }

    /// Joins or starts the fetch of `key`.
    pub fn fetch(&self, key: &Arc<str>) -> FlightRole {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = flights.get(key) {
            return FlightRole::Follower(f.clone());
        }
        let flight = Arc::new(Flight::default());
        flights.insert(key.clone(), flight.clone());
        FlightRole::Leader(FlightGuard::new(key.clone(), flight, self.flights.clone()))
    }

    /// A new memory budget (a reload): objects are evicted until what is stored fits.
    pub fn set_budget(&self, budget_bytes: u64) {
        let mut policy = self.lock_policy();
        let map = self.map.pin();
        for gone in policy.set_capacity(budget_bytes) {
            self.evicted(&map, &gone);
        }
    }

    /// Objects evicted to make room since the store was made.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The memory budget in force.
    pub fn budget(&self) -> u64 {
        self.lock_policy().capacity()
    }

    fn evicted<G: papaya::Guard>(
        &self,
        map: &papaya::HashMapRef<'_, Arc<str>, Stored, std::hash::RandomState, G>,
        key: &Arc<str>,
    ) {
        map.remove(key);
        self.evictions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Objects and bytes stored (for stats and tests).
    pub fn usage(&self) -> (usize, u64) {
        let p = self.lock_policy();
        (p.len(), p.bytes())
    }

    fn lock_policy(&self) -> MutexGuard<'_, S3Fifo<Arc<str>, Arc<Object>>> {
        // A panic under the lock leaves the policy consistent at every await-free step.
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_variants(&self, policy: &mut S3Fifo<Arc<str>, Arc<Object>>, v: &Variants) {
        let map = self.map.pin();
        let keys = std::mem::take(&mut *v.keys.lock().unwrap_or_else(|p| p.into_inner()));
        for k in keys {
            policy.remove(&k);
            map.remove(&k);
        }
    }

    fn remember_variant(&self, v: &Variants, k: &Arc<str>) {
        let mut keys = v.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.iter().any(|x| x == k) {
            return;
        }
        if keys.len() >= VARIANT_KEYS_PRUNE_AT {
            let map = self.map.pin();
            keys.retain(|x| map.contains_key(x));
        }
        keys.push(k.clone());
    }
}

#[cfg(test)]
mod tests;
