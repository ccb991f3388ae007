//! Idle upstream connections kept for reuse, per origin, with limits per origin and in
//! all, and an idle timeout. Generic over the connection id so the pool logic is tested
//! without sockets; the driver keeps the sockets.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::http::target::Authority;

/// What makes an upstream connection fit for a request: where it goes, and whether it
/// was made for a client-named destination (checked against the forward proxy's
/// destination rules when it connected). A connection made for an origin from the
/// config, which is exempt, is never handed to a client-named request for the same
/// name: the name may have resolved elsewhere since, or the check never ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamKey {
    pub origin: Authority,
    pub screened: bool,
    /// For a client-named destination, the address checked and connected to: a name
    /// that now resolves elsewhere (or whose old address the rules now deny) never gets
    /// the connection to the old one.
    pub to: Option<std::net::SocketAddr>,
}

#[derive(Debug)]
pub struct IdlePool {
    /// Hashed with foldhash, seeded at random per process and map: a forward proxy's
    /// client chooses the keys, so their hashes must not be predictable. The map is
    /// small: keys with connections are at most `total_max`, and queues emptied by
    /// `take` are dropped at the next `expire` (every tick), so besides those it holds
    /// only the origins used since the last tick; the collisions an attacker could hope
    /// for are bounded by that. (`remove` and `oldest_origin` walk the whole map, so a
    /// client switching origins faster than ticks lengthens those walks, not a lookup.)
    /// SipHash cost a proxied request about 760 instructions for the two lookups.
    idle: HashMap<UpstreamKey, VecDeque<(usize, Instant)>, foldhash::fast::RandomState>,
    per_origin_max: usize,
    total_max: usize,
    idle_timeout: Duration,
    total: usize,
}

impl IdlePool {
    /// A reload's limits: connections over them leave as they expire or are taken.
    pub fn set_limits(&mut self, per_origin_max: usize, total_max: usize, idle_timeout: Duration) {
        self.per_origin_max = per_origin_max;
        self.total_max = total_max;
        self.idle_timeout = idle_timeout;
    }

    pub fn new(per_origin_max: usize, total_max: usize, idle_timeout: Duration) -> IdlePool {
        IdlePool {
            idle: HashMap::default(),
            per_origin_max,
            total_max,
            idle_timeout,
            total: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Keeps `id` for reuse. Returns the ids that must be closed to stay in bounds
    /// (possibly `id` itself when the limits are zero).
    pub fn put(&mut self, origin: &UpstreamKey, id: usize, now: Instant) -> Vec<usize> {
        let mut evicted = Vec::new();
        if self.per_origin_max == 0 || self.total_max == 0 {
            evicted.push(id);
            return evicted;
        }
        // The key is cloned only for an origin not seen since the last `expire`.
        let queue = match self.idle.get_mut(origin) {
            Some(queue) => queue,
            None => self.idle.entry(origin.clone()).or_default(),
        };
        if queue.len() >= self.per_origin_max
            && let Some((old, _)) = queue.pop_front()
        {
            evicted.push(old);
            self.total -= 1;
        }
        queue.push_back((id, now));
        self.total += 1;
        while self.total > self.total_max {
            match self.oldest_origin() {
                Some(key) => evicted.extend(self.pop_oldest(&key)),
                None => break,
            }
        }
        evicted
    }

    /// The most recently parked connection to `origin` (the warmest one). An emptied
    /// queue stays, with its key and memory, for the connection's return (a keep-alive
    /// origin would otherwise cost a key clone and a queue per request); `expire` drops
    /// it at its next pass.
    pub fn take(&mut self, origin: &UpstreamKey) -> Option<usize> {
        let queue = self.idle.get_mut(origin)?;
        let (id, _) = queue.pop_back()?;
        self.total -= 1;
        Some(id)
    }

    /// Origins with a queue kept, empty ones included (for tests).
    #[cfg(test)]
    fn queues(&self) -> usize {
        self.idle.len()
    }

    /// Takes out every idle connection whose key `stale` picks (for the driver to close):
    /// those made under destination rules a reload replaced.
    pub fn take_where(&mut self, stale: impl Fn(&UpstreamKey) -> bool) -> Vec<usize> {
        let mut taken = Vec::new();
        self.idle.retain(|key, queue| {
            if stale(key) {
                taken.extend(queue.drain(..).map(|(id, _)| id));
                false
            } else {
                true
            }
        });
        self.total -= taken.len();
        taken
    }

    /// Forgets `id` (it closed while idle). Returns whether it was here.
    pub fn remove(&mut self, id: usize) -> bool {
        let mut found = None;
        for (key, queue) in self.idle.iter_mut() {
            if let Some(i) = queue.iter().position(|&(x, _)| x == id) {
                queue.remove(i);
                found = Some(key.clone());
                break;
            }
        }
        let Some(key) = found else { return false };
        self.total -= 1;
        if self.idle.get(&key).is_some_and(VecDeque::is_empty) {
            self.idle.remove(&key);
        }
        true
    }

    /// Ids idle longer than the timeout, removed from the pool.
    pub fn expire(&mut self, now: Instant) -> Vec<usize> {
        let mut expired = Vec::new();
        let timeout = self.idle_timeout;
        self.idle.retain(|_, queue| {
            while let Some(&(id, since)) = queue.front() {
                if now.saturating_duration_since(since) < timeout {
                    break;
                }
                expired.push(id);
                queue.pop_front();
            }
            !queue.is_empty()
        });
        self.total -= expired.len();
        expired
    }

    fn oldest_origin(&self) -> Option<UpstreamKey> {
        self.idle
            .iter()
            .filter_map(|(k, q)| q.front().map(|&(_, t)| (k, t)))
            .min_by_key(|&(_, t)| t)
            .map(|(k, _)| k.clone())
    }

    fn pop_oldest(&mut self, key: &UpstreamKey) -> Option<usize> {
        let queue = self.idle.get_mut(key)?;
        let (id, _) = queue.pop_front()?;
        self.total -= 1;
        if queue.is_empty() {
            self.idle.remove(key);
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(port: u16) -> UpstreamKey {
        UpstreamKey {
            origin: Authority {
                host: "127.0.0.1".into(),
                port,
            },
            screened: false,
            to: None,
        }
    }

    #[test]
    fn lifo_reuse_and_limits() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(2, 3, Duration::from_secs(10));
        assert!(p.put(&origin(1), 1, t0).is_empty());
        assert!(p.put(&origin(1), 2, t0).is_empty());
        assert_eq!(p.put(&origin(1), 3, t0), vec![1]);
        assert!(p.put(&origin(2), 4, t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(p.put(&origin(2), 5, t0 + Duration::from_secs(2)), vec![2]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.take(&origin(1)), Some(3));
        assert_eq!(p.take(&origin(1)), None);
        assert!(p.remove(4));
        assert!(!p.remove(4));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_connection_made_for_a_configured_origin_is_not_given_to_a_client_named_one() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(8, 8, Duration::from_secs(5));
        p.put(&origin(1), 1, t0);
        let screened = UpstreamKey {
            screened: true,
            ..origin(1)
        };
        assert_eq!(p.take(&screened), None);
        assert_eq!(p.take(&origin(1)), Some(1));
        // New destination rules: the connections made under the old ones go.
        p.put(&screened, 2, t0);
        p.put(&origin(1), 3, t0);
        assert_eq!(p.take_where(|k| k.screened), vec![2]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.take(&origin(1)), Some(3));
    }

    #[test]
    fn idle_timeout() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(8, 8, Duration::from_secs(5));
        p.put(&origin(1), 1, t0);
        p.put(&origin(1), 2, t0 + Duration::from_secs(3));
        assert_eq!(p.expire(t0 + Duration::from_secs(6)), vec![1]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.take(&origin(1)), Some(2));
    }

    #[test]
    fn an_emptied_queue_waits_for_the_next_expiry() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(8, 8, Duration::from_secs(5));
        p.put(&origin(1), 1, t0);
        assert_eq!(p.take(&origin(1)), Some(1));
        assert_eq!(
            (p.len(), p.queues()),
            (0, 1),
            "kept for the connection's return"
        );
        p.put(&origin(1), 1, t0);
        assert_eq!((p.len(), p.queues()), (1, 1));
        assert_eq!(p.take(&origin(1)), Some(1));
        assert!(p.expire(t0).is_empty());
        assert_eq!(p.queues(), 0, "an empty queue goes at the next expiry");
    }
}
