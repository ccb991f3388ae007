//! Name resolution off the shard threads: resolver threads run the blocking
//! getaddrinfo, answer the asking shard over its channel and wake its event loop. Each
//! shard caches answers for `dns_cache_ttl_ms` (getaddrinfo does not tell the TTL) and
//! failures for `dns_negative_ttl_ms`, runs one lookup per name however many requests
//! wait on it, and gives up waiting after `dns_timeout_ms`. One client (an IPv4 address,
//! an IPv6 /64) may have `dns_lookups_per_client_max` lookups on the resolver threads at
//! once, node-wide, counted until the thread returns: a client asking for names that
//! never resolve cannot hold every thread.

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

pub struct Lookup {
    pub origin: Authority,
    /// The client whose request started the lookup.
    pub client: IpAddr,
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
    jobs: Sender<Lookup>,
    clients: Arc<Clients>,
}

/// Lookups each client has on the resolver threads, node-wide: counted from the
/// moment one is queued until its thread returns (a shard may stop waiting sooner, but
/// the thread stays busy), so one client cannot hold more than its share of threads.
struct Clients {
    in_flight: std::sync::Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

impl Clients {
    /// One more for `client`, unless it has `max` already.
    fn take(&self, client: IpAddr) -> Result<(), String> {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(client_key(client)).or_default();
        if *n >= self.max {
            return Err(format!(
                "this client already has {} names resolving",
                self.max
            ));
        }
        *n += 1;
        Ok(())
    }

    fn give_back(&self, client: IpAddr) {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let key = client_key(client);
        if let Some(n) = m.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&key);
            }
        }
    }
}

/// A client is an IPv4 address, or an IPv6 /64 (one host's share of a network).
fn client_key(ip: IpAddr) -> IpAddr {
    // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d.
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl Resolver {
    /// `per_client_max`: lookups one client may have on the threads at once.
    pub fn start(threads: usize, per_client_max: usize) -> Resolver {
        Resolver::with_lookup(threads, per_client_max, Arc::new(resolve))
    }

    pub fn with_lookup(threads: usize, per_client_max: usize, lookup: LookupFn) -> Resolver {
        let (jobs, rx) = crossbeam_channel::bounded::<Lookup>(RESOLVER_QUEUE_MAX);
        let clients = Arc::new(Clients {
            in_flight: std::sync::Mutex::new(HashMap::new()),
            max: per_client_max,
        });
        for i in 0..threads.max(1) {
            let rx: Receiver<Lookup> = rx.clone();
            let lookup = lookup.clone();
            let clients = clients.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("resolver-{i}"))
                .spawn(move || {
                    for job in rx {
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            lookup(&job.origin)
                        }))
                        .unwrap_or_else(|_| Err("the lookup failed".to_string()));
                        clients.give_back(job.client);
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
        Resolver { jobs, clients }
    }

    /// Queues a lookup; `Err` when its client has its share of lookups under way, or
    /// the resolver is saturated.
    pub fn submit(&self, job: Lookup) -> Result<(), String> {
        let client = job.client;
        self.clients.take(client)?;
        self.jobs.try_send(job).map_err(|e| {
            self.clients.give_back(client);
            match e {
                TrySendError::Full(_) => "resolver queue is full".to_string(),
                TrySendError::Disconnected(_) => "resolver is not running".to_string(),
            }
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
    /// A reload's lifetimes, for answers cached from now on (those cached already keep
    /// the expiry they were given).
    pub fn set_ttls(&mut self, ttl: Duration, negative_ttl: Duration) {
        self.ttl = ttl;
        self.negative_ttl = negative_ttl;
    }

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
/// all), and since when.
#[derive(Default)]
pub struct Waiters {
    by_origin: HashMap<Authority, Pending>,
}

struct Pending {
    /// Client slots and the serials of the connections that were in them.
    waiting: Vec<(usize, u64)>,
    since: Instant,
}

impl Waiters {
    /// Adds a waiter for `origin`; true when it is the first, so a lookup must start.
    pub fn add(&mut self, origin: &Authority, waiter: (usize, u64), now: Instant) -> bool {
        if let Some(p) = self.by_origin.get_mut(origin) {
            p.waiting.push(waiter);
            return false;
        }
        let waiting = vec![waiter];
        self.by_origin.insert(
            origin.clone(),
            Pending {
                waiting,
                since: now,
            },
        );
        true
    }

    /// The lookup of `origin` ended (or was given up): its waiters.
    pub fn take(&mut self, origin: &Authority) -> Vec<(usize, u64)> {
        self.by_origin
            .remove(origin)
            .map(|p| p.waiting)
            .unwrap_or_default()
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
