//! Name resolution off the shard threads: resolver threads run the blocking
//! getaddrinfo, answer the asking shard over its channel and wake its event loop. Each
//! shard caches answers for `dns_cache_ttl_ms` (getaddrinfo does not tell the TTL) and
//! failures for `dns_negative_ttl_ms`, runs one lookup per name however many requests
//! wait on it, gives up on a lookup after `dns_timeout_ms`, and lets one client have only
//! `dns_lookups_per_client_max` names resolving at once: a client asking for names that
//! never resolve cannot hold every resolver thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::http::target::Authority;

/// Queued lookups beyond this are refused at once rather than piling up.
const RESOLVER_QUEUE_MAX: usize = 1024;

/// How a resolver thread wakes the shard that asked: each driver has its own way.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        let _ = mio::Waker::wake(self);
    }
}

pub struct Job {
    pub origin: Authority,
    pub reply: Sender<Answer>,
    pub waker: Arc<dyn Wake>,
}

pub struct Answer {
    pub origin: Authority,
    pub result: Result<SocketAddr, String>,
}

/// How a name becomes an address: the system's getaddrinfo in service; tests put a
/// function of their own in its place (no lookup may leave this machine in a test).
pub type LookupFn = Arc<dyn Fn(&Authority) -> Result<SocketAddr, String> + Send + Sync>;

#[derive(Clone)]
pub struct Resolver {
    jobs: Sender<Job>,
}

impl Resolver {
    pub fn start(threads: usize) -> Resolver {
        Resolver::with_lookup(threads, Arc::new(resolve))
    }

    pub fn with_lookup(threads: usize, lookup: LookupFn) -> Resolver {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(RESOLVER_QUEUE_MAX);
        for i in 0..threads.max(1) {
            let rx: Receiver<Job> = rx.clone();
            let lookup = lookup.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("resolver-{i}"))
                .spawn(move || {
                    for job in rx {
                        let result = lookup(&job.origin);
                        let _ = job.reply.send(Answer {
                            origin: job.origin,
                            result,
                        });
                        job.waker.wake();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start resolver thread: {e}");
            }
        }
        Resolver { jobs }
    }

    /// Queues a lookup; `Err` when the resolver is saturated.
    pub fn submit(&self, job: Job) -> Result<(), String> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => "resolver queue is full".to_string(),
            TrySendError::Disconnected(_) => "resolver is not running".to_string(),
        })
    }
}

fn resolve(origin: &Authority) -> Result<SocketAddr, String> {
    let addrs = (origin.host.as_str(), origin.port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?;
    let mut first = None;
    for a in addrs {
        if a.is_ipv4() {
            return Ok(a);
        }
        first.get_or_insert(a);
    }
    first.ok_or_else(|| "no address".to_string())
}

/// A literal IP needs no lookup.
pub fn literal(origin: &Authority) -> Option<SocketAddr> {
    origin
        .host
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, origin.port))
}

/// A shard's cache of answers, failures included (for a shorter time).
pub struct DnsCache {
    entries: HashMap<Authority, (Result<SocketAddr, String>, Instant)>,
    ttl: Duration,
    negative_ttl: Duration,
}

impl DnsCache {
    pub fn new(ttl: Duration, negative_ttl: Duration) -> DnsCache {
        DnsCache {
            entries: HashMap::new(),
            ttl,
            negative_ttl,
        }
    }

    pub fn get(&self, origin: &Authority, now: Instant) -> Option<Result<SocketAddr, String>> {
        self.entries
            .get(origin)
            .filter(|(_, expires)| now < *expires)
            .map(|(a, _)| a.clone())
    }

    pub fn put(&mut self, origin: Authority, result: Result<SocketAddr, String>, now: Instant) {
        if self.entries.len() > 10_000 {
            self.entries.retain(|_, (_, expires)| now < *expires);
        }
        let ttl = if result.is_ok() {
            self.ttl
        } else {
            self.negative_ttl
        };
        self.entries.insert(origin, (result, now + ttl));
    }
}

/// The lookups a shard has under way: who waits for each name (one lookup serves them
/// all), since when, and how many names each client address has resolving.
#[derive(Default)]
pub struct Waiters {
    by_origin: HashMap<Authority, Pending>,
    per_client: HashMap<IpAddr, usize>,
}

struct Pending {
    /// Client slots and the serials of the connections that were in them.
    waiting: Vec<(usize, u64)>,
    since: Instant,
    /// The client whose request started the lookup (its count goes down at the end).
    by: IpAddr,
}

/// Why a request does not get to wait for a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    TooManyForClient(usize),
}

impl Waiters {
    /// Adds a waiter for `origin`. `Ok(true)` when it is the first, so a lookup must be
    /// started (counted against `client`); refused when `client` already has `max`
    /// names resolving.
    pub fn add(
        &mut self,
        origin: &Authority,
        waiter: (usize, u64),
        client: IpAddr,
        max: usize,
        now: Instant,
    ) -> Result<bool, Refused> {
        if let Some(p) = self.by_origin.get_mut(origin) {
            p.waiting.push(waiter);
            return Ok(false);
        }
        let n = self.per_client.entry(client).or_default();
        if *n >= max {
            return Err(Refused::TooManyForClient(max));
        }
        *n += 1;
        self.by_origin.insert(
            origin.clone(),
            Pending {
                waiting: vec![waiter],
                since: now,
                by: client,
            },
        );
        Ok(true)
    }

    /// The lookup of `origin` ended: its waiters.
    pub fn take(&mut self, origin: &Authority) -> Vec<(usize, u64)> {
        let Some(p) = self.by_origin.remove(origin) else {
            return Vec::new();
        };
        if let Some(n) = self.per_client.get_mut(&p.by) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&p.by);
            }
        }
        p.waiting
    }

    /// Names whose lookup started `timeout` or more before `now`.
    pub fn overdue(&self, timeout: Duration, now: Instant) -> Vec<Authority> {
        self.by_origin
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= timeout)
            .map(|(o, _)| o.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
