//! The node's budget for response bodies held in memory: bodies collected for a
//! distillation job and bodies captured for the cache. Each is bounded per connection
//! (`distill.input_bytes_max`, `cache.object_bytes_max`); this bounds them all together,
//! so thousands of connections cannot each hold their share at once. When the budget is
//! spent a response streams through instead of being held, and nothing grows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// What is preallocated for a body at most, whatever its Content-Length claims: the
/// rest is reserved as bytes actually arrive.
pub const PREALLOCATE_MAX: usize = 64 * 1024;

/// Bytes held across the node, against a maximum.
#[derive(Debug)]
pub struct HeldBudget {
    /// Changed only by a reload.
    max: AtomicU64,
    used: AtomicU64,
}

impl HeldBudget {
    pub fn new(max: u64) -> Arc<HeldBudget> {
        Arc::new(HeldBudget {
            max: AtomicU64::new(max),
            used: AtomicU64::new(0),
        })
    }

    /// A reloaded maximum: bodies held now stay; new ones are held only under it.
    pub fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit under the maximum.
    fn take(&self, n: u64) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= max)
            })
            .is_ok()
    }

    /// `bytes`, counted against the budget until the last reference to them drops.
    /// Counted even past the maximum: they exist already, and while they are counted
    /// no new body is held.
    pub fn charge_until_freed(self: &Arc<Self>, bytes: Bytes) -> Bytes {
        let n = bytes.len() as u64;
        self.used.fetch_add(n, Ordering::AcqRel);
        Bytes::from_owner(Charged {
            data: bytes,
            charged: n,
            budget: self.clone(),
        })
    }

    fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A body being collected, its memory (capacity, not length) charged to the budget
/// until it is dropped, or until the bytes made from it (`into_bytes`) are.
#[derive(Debug)]
pub struct HeldBody {
    data: Vec<u8>,
    charged: u64,
    budget: Arc<HeldBudget>,
}

impl HeldBody {
    /// An empty body with room for `expected` bytes (at most `PREALLOCATE_MAX`); None
    /// when the budget cannot spare that room.
    pub fn new(budget: &Arc<HeldBudget>, expected: usize) -> Option<HeldBody> {
        let mut body = HeldBody {
            data: Vec::new(),
            charged: 0,
            budget: budget.clone(),
        };
        body.reserve(expected.clamp(1, PREALLOCATE_MAX))
            .then_some(body)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    /// Appends `piece`; false (and nothing appended) when `limit` or the budget would
    /// be exceeded.
    pub fn push(&mut self, piece: &[u8], limit: u64) -> bool {
        let need = self.data.len() + piece.len();
        if need as u64 > limit {
            return false;
        }
        if need > self.data.capacity() {
            // Grow by half again (not double), so the charge stays near what is held.
            let room = need.max(self.data.capacity() + self.data.capacity() / 2);
            let room = room.min(limit as usize);
            if !self.reserve(room - self.data.len()) {
                return false;
            }
        }
        self.data.extend_from_slice(piece);
        true
    }

    /// The bytes (leaving this body empty), still charged to the budget until the last
    /// reference to them drops.
    pub fn take_bytes(&mut self) -> Bytes {
        let data = std::mem::take(&mut self.data);
        Bytes::from_owner(Charged {
            data,
            charged: std::mem::take(&mut self.charged),
            budget: self.budget.clone(),
        })
    }

    /// Makes room for `additional` more bytes than are held, charging the budget for the
    /// capacity that adds.
    fn reserve(&mut self, additional: usize) -> bool {
        let want = self.data.len() + additional;
        let grow = (want as u64).saturating_sub(self.charged);
        if grow > 0 && !self.budget.take(grow) {
            return false;
        }
        self.charged += grow;
        self.data.reserve_exact(want - self.data.len());
        true
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.budget.give_back(self.charged);
    }
}

/// The owner of charged bytes (a held body's `Vec`, or `Bytes` made elsewhere): gives
/// the charge back when the last reference to them is freed.
struct Charged<T> {
    data: T,
    charged: u64,
    budget: Arc<HeldBudget>,
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Charged<T> {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}

impl<T> Drop for Charged<T> {
    fn drop(&mut self) {
        self.budget.give_back(self.charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_charged_until_their_bytes_are_freed() {
        let budget = HeldBudget::new(200_000);
        let mut a = HeldBody::new(&budget, 10_000_000).expect("room for the first 64 KiB");
        assert_eq!(
            budget.used(),
            PREALLOCATE_MAX as u64,
            "never what Content-Length says"
        );
        assert!(a.push(&[7; 100_000], 1_000_000));
        assert_eq!(budget.used(), 100_000);
        let mut b = HeldBody::new(&budget, 100).expect("100 bytes fit beside");
        assert!(!b.push(&[7; 150_000], 1_000_000), "over the node budget");
        assert!(b.push(&[7; 50_000], 1_000_000));
        assert!(!a.push(&[7; 10], 100_005), "over the body's own limit");
        drop(b);
        assert_eq!(budget.used(), 100_000);
        let bytes = a.take_bytes();
        drop(a);
        assert_eq!(bytes.len(), 100_000);
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(budget.used(), 100_000, "still referenced");
        drop(clone);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn bytes_already_made_are_counted_until_freed() {
        let budget = HeldBudget::new(100);
        let b = budget.charge_until_freed(Bytes::from(vec![1u8; 150]));
        assert_eq!(budget.used(), 150, "counted past the maximum");
        assert!(
            HeldBody::new(&budget, 1).is_none(),
            "and nothing new is held"
        );
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_spent_budget_refuses_new_bodies() {
        let budget = HeldBudget::new(10);
        let a = HeldBody::new(&budget, 10);
        assert!(a.is_some());
        assert!(HeldBody::new(&budget, 1).is_none());
        drop(a);
        assert!(HeldBody::new(&budget, 1).is_some());
    }
}
