//! A shard's own references to the stored objects it serves. Cloning an `Arc` of a
//! stored object (or a `Bytes` of its head or body) writes its reference count: on a
//! hot object, a cache line every shard writes on every hit. A shard instead takes one
//! `Arc` per object it serves and hands out `Rc`s of it, whose counts only this
//! thread touches.
//!
//! An entry not used for a tick is dropped at the next sweep. An object the store
//! evicts can no longer be found, so is no longer used: it outlives its eviction by at
//! most two ticks (as an object still being sent outlives it until it is sent).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use super::Object;

/// Objects a shard keeps references to at once; past it, hits take their own `Arc`.
pub const SHARD_REFS_MAX: usize = 4096;

/// A stored object as a shard holds it.
#[derive(Debug)]
pub struct Held {
    object: Arc<Object>,
    used: Cell<bool>,
}

impl Held {
    /// An object held outside any shard's table (a response just fetched or made).
    pub fn new(object: Arc<Object>) -> Rc<Held> {
        Rc::new(Held {
            object,
            used: Cell::new(true),
        })
    }

    pub fn arc(&self) -> &Arc<Object> {
        &self.object
    }
}

impl Deref for Held {
    type Target = Object;

    fn deref(&self) -> &Object {
        &self.object
    }
}

/// The table, keyed by the object's address (stable while the table holds it).
#[derive(Default)]
pub struct ShardRefs {
    table: RefCell<HashMap<usize, Rc<Held>, BuildHasherDefault<AddressHasher>>>,
}

impl ShardRefs {
    /// This shard's reference to `object`: an `Rc` of the one it holds, taken now if
    /// it holds none.
    pub fn get(&self, object: &Arc<Object>) -> Rc<Held> {
        let address = Arc::as_ptr(object) as usize;
        let mut table = self.table.borrow_mut();
        if let Some(held) = table.get(&address) {
            held.used.set(true);
            return held.clone();
        }
        let held = Held::new(object.clone());
        if table.len() < SHARD_REFS_MAX {
            table.insert(address, held.clone());
        }
        held
    }

    /// Drops the references not used since the last sweep (every tick).
    pub fn sweep(&self) {
        self.table
            .borrow_mut()
            .retain(|_, held| held.used.replace(false));
    }

    pub fn len(&self) -> usize {
        self.table.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Addresses are already unique: a multiply spreads them over the table's buckets.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::freshness::Heuristic;
    use crate::cache::object::{Build, Fields, read_times};

    fn object() -> Arc<Object> {
        let f = Fields::from_response(200, b"OK", std::iter::empty(), |_| false);
        let t = read_times(&f, 0, 0);
        let b = Build {
            via_name: "t",
            heuristic: Heuristic::default(),
            targeted: &[],
        };
        Arc::new(Object::new(f, bytes::Bytes::from_static(b"body"), t, b))
    }

    #[test]
    fn hits_share_one_arc_and_unused_ones_are_let_go() {
        let refs = ShardRefs::default();
        let o = object();
        let a = refs.get(&o);
        let b = refs.get(&o);
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(
            Arc::strong_count(&o),
            2,
            "one Arc for the shard, however many hits"
        );
        drop((a, b));
        refs.sweep(); // used since the last sweep: kept
        assert_eq!(refs.len(), 1);
        refs.sweep(); // not used since: dropped
        assert!(refs.is_empty());
        assert_eq!(Arc::strong_count(&o), 1);
    }
}
