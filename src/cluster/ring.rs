//! Which node owns a key: weighted rendezvous (highest random weight) hashing over
//! stable node ids, precomputed into a table of 2^16 slots, each with its ordered top
//! three candidates. A key's slot is its hash's low 16 bits, so a lookup is one index;
//! the runner-up is the failover (and, later, the previous owner to warm from).
//!
//! Rendezvous hashing moves only the slots a joining node now wins, and on a leave only
//! the leaver's slots (each to its runner-up): nothing moves between the others. The
//! weighted score is `-weight / ln(u)` with `u` the pair's hash mapped into (0, 1)
//! (Schindelhauer & Schomaker), so a node's share is proportional to its weight.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

pub const SLOTS: usize = 1 << 16;
/// Candidates kept per slot: the owner, the failover, one more.
pub const CANDIDATES: usize = 3;

/// A node as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub weight: u32,
}

/// The slot table for one membership.
pub struct Ring {
    members: Vec<Member>,
    /// Per slot, member indexes in preference order (fewer when there are fewer members).
    slots: Box<[[u8; CANDIDATES]]>,
    candidates: usize,
}

impl Ring {
    /// The table for `members` (at most 255, each with a weight of at least 1).
    pub fn new(members: Vec<Member>) -> Ring {
        let candidates = members.len().min(CANDIDATES);
        let seeds: Vec<u64> = members.iter().map(|m| xxh3_64(m.id.as_bytes())).collect();
        let slots = (0..SLOTS)
            .map(|slot| top_candidates(slot as u64, &seeds, &members))
            .collect();
        Ring {
            members,
            slots,
            candidates,
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The slot of a key (the cache's primary key: every variant lives with it).
    pub fn slot_of(key: &str) -> usize {
        (xxh3_64(key.as_bytes()) as usize) & (SLOTS - 1)
    }

    /// The key's candidates, best first (member indexes).
    pub fn candidates(&self, key: &str) -> &[u8] {
        let slot = &self.slots[Ring::slot_of(key)];
        &slot[..self.candidates]
    }

    /// The key's owner (a member index); None with no members.
    pub fn owner(&self, key: &str) -> Option<usize> {
        self.candidates(key).first().map(|&i| usize::from(i))
    }
}

/// The slot's members ordered by weighted rendezvous score, best first.
fn top_candidates(slot: u64, seeds: &[u64], members: &[Member]) -> [u8; CANDIDATES] {
    let mut best: [(f64, u8); CANDIDATES] = [(f64::NEG_INFINITY, 0); CANDIDATES];
    for (i, (seed, m)) in seeds.iter().zip(members).enumerate() {
        let score = score(xxh3_64_with_seed(&slot.to_le_bytes(), *seed), m.weight);
        // Insert into the short sorted list.
        if let Some(at) = best.iter().position(|&(s, _)| score > s) {
            best.copy_within(at..CANDIDATES - 1, at + 1);
            best[at] = (score, i as u8);
        }
    }
    best.map(|(_, i)| i)
}

/// `-weight / ln(u)`, u in (0, 1) from the top 53 bits of the hash.
fn score(hash: u64, weight: u32) -> f64 {
    let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight.max(1)) / u.ln()
}

#[cfg(test)]
mod tests;
