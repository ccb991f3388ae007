//! Name resolution off the shard threads: a few resolver threads run the blocking
//! getaddrinfo, answer the asking shard over its channel and wake its event loop. Each
//! shard caches answers for `dns_cache_ttl_ms` (getaddrinfo does not tell the TTL).

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

#[derive(Clone)]
pub struct Resolver {
    jobs: Sender<Job>,
}

impl Resolver {
    pub fn start(threads: usize) -> Resolver {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(RESOLVER_QUEUE_MAX);
        for i in 0..threads.max(1) {
            let rx: Receiver<Job> = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("resolver-{i}"))
                .spawn(move || {
                    for job in rx {
                        let result = resolve(&job.origin);
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

/// A shard's cache of answers.
pub struct DnsCache {
    entries: HashMap<Authority, (SocketAddr, Instant)>,
    ttl: Duration,
}

impl DnsCache {
    pub fn new(ttl: Duration) -> DnsCache {
        DnsCache {
            entries: HashMap::new(),
            ttl,
        }
    }

    pub fn get(&self, origin: &Authority, now: Instant) -> Option<SocketAddr> {
        self.entries
            .get(origin)
            .filter(|(_, expires)| now < *expires)
            .map(|(a, _)| *a)
    }

    pub fn put(&mut self, origin: Authority, addr: SocketAddr, now: Instant) {
        if self.entries.len() > 10_000 {
            self.entries.retain(|_, (_, expires)| now < *expires);
        }
        self.entries.insert(origin, (addr, now + self.ttl));
    }
}

/// Clients waiting for a name, so one lookup serves them all. A waiter is a client slot
/// and the serial of the connection that was in it when it asked.
#[derive(Default)]
pub struct Waiters {
    by_origin: HashMap<Authority, Vec<(usize, u64)>>,
}

impl Waiters {
    /// Adds a waiter; true when it is the first, so a lookup must be started.
    pub fn add(&mut self, origin: &Authority, client: usize, serial: u64) -> bool {
        let list = self.by_origin.entry(origin.clone()).or_default();
        list.push((client, serial));
        list.len() == 1
    }

    pub fn take(&mut self, origin: &Authority) -> Vec<(usize, u64)> {
        self.by_origin.remove(origin).unwrap_or_default()
    }
}
