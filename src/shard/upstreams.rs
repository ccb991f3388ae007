//! What both drivers do the same way about upstream connections: carry out a `Conn`'s
//! actions, take a pooled connection or find an address (literal, per-shard cache, or
//! the resolver threads) and hand answers back to the clients that waited. The driver
//! supplies only what differs: how a socket connects, is parked, closed and serviced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::access::destinations::DestinationRules;
use crate::config::Config;
use crate::http::target::Authority;
use crate::proxy::pool::{IdlePool, UpstreamKey};
use crate::proxy::{Action, Conn, UpstreamFailure};

use super::control::{Directives, Drain, ShardControl};
use super::date::DateCache;

use super::Node;
use super::dns::{Answer, DnsCache, Lookup, Resolver, Waiters, Wake, literal};
use crate::cache::Store;
use crate::cache::flight::Notify;
use crate::distill::pool::JobPool;
use crate::proxy::conn::{DistillJob, FlightWait, Ticket};

/// Wakes a client of this shard, from whichever shard ended the flight it waited on.
struct FlightWaiter {
    tx: Sender<WakeUp>,
    waker: Arc<dyn Wake>,
    to: WakeUp,
}

/// Who a wake-up is for: the client slot, the connection in it (`Link::serial`) and the
/// wait of its exchange (`Ticket`).
#[derive(Debug, Clone, Copy)]
struct WakeUp {
    ci: usize,
    serial: u64,
    ticket: Ticket,
}

impl Notify for FlightWaiter {
    fn notify(self: Box<Self>) {
        if self.tx.send(self.to).is_ok() {
            self.waker.wake();
        }
    }
}

/// A client connection's tie to the upstream side.
#[derive(Debug, Default)]
pub struct Link {
    /// Unique per accepted connection, so an answer for a closed one is not taken by
    /// the next connection in the same slot.
    pub serial: u64,
    pub upstream: Option<usize>,
    /// The connection asked for while its name resolves.
    pub awaiting_dns: Option<Wanted>,
    /// Counted against its client's connections while it lives.
    pub counted: Option<crate::access::limits::ConnectionSlot>,
}

/// A connection asked for and not yet had: where, and whether a pooled one will do.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub key: UpstreamKey,
    pub pooled_ok: bool,
}

/// A shard's upstream bookkeeping: idle pool, name cache, lookups under way, and the
/// node's response cache with the flights its clients wait on.
pub struct Lookups {
    pub pool: IdlePool,
    /// `[forward]`'s rules for client-named destinations (reloaded with the config).
    destinations: DestinationRules,
    /// The node's own listeners.
    own: Arc<[SocketAddr]>,
    /// Never a client-named destination: the node's own listeners and its cluster
    /// peers' (a request there would loop, or pass for a peer's).
    never: Vec<SocketAddr>,
    pub cache: Option<Arc<Store>>,
    pub held: Arc<crate::proxy::held::HeldBudget>,
    jobs: JobPool,
    auth_jobs: JobPool,
    flight_tx: Sender<WakeUp>,
    flight_rx: Receiver<WakeUp>,
    dns: DnsCache,
    waiters: Waiters,
    dns_timeout: Duration,
    resolver: Resolver,
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    waker: Arc<dyn Wake>,
}

impl Lookups {
    pub fn new(cfg: &Config, node: Node, waker: Arc<dyn Wake>) -> Lookups {
        let up = cfg.upstream;
        let (tx, rx) = crossbeam_channel::unbounded();
        let (flight_tx, flight_rx) = crossbeam_channel::unbounded();
        Lookups {
            destinations: cfg.forward.destinations.clone(),
            never: never_destinations(&node.own, cfg),
            own: node.own,
            cache: node.cache,
            held: node.held,
            jobs: node.jobs,
            auth_jobs: node.auth_jobs,
            flight_tx,
            flight_rx,
            pool: IdlePool::new(
                up.pool_idle_per_origin_max,
                up.pool_idle_total_max,
                up.pool_idle_timeout,
            ),
            dns: DnsCache::new(up.dns_cache_ttl, up.dns_negative_ttl),
            waiters: Waiters::default(),
            dns_timeout: up.dns_timeout,
            resolver: node.resolver,
            tx,
            rx,
            waker,
        }
    }
}

impl Lookups {
    /// A reloaded `[upstream]`: pool limits, name lifetimes, lookup timeout (the
    /// resolver threads and the per-client lookup limit are the node's, fixed at start),
    /// and `[forward]`'s destination rules: when they changed, the idle connections made
    /// under the old ones are returned for the driver to close (a name's pooled
    /// connection may go to an address the new rules deny).
    pub fn reconfigure(&mut self, cfg: &Config) -> Vec<usize> {
        let up = cfg.upstream;
        self.pool.set_limits(
            up.pool_idle_per_origin_max,
            up.pool_idle_total_max,
            up.pool_idle_timeout,
        );
        self.dns.set_ttls(up.dns_cache_ttl, up.dns_negative_ttl);
        self.dns_timeout = up.dns_timeout;
        self.never = never_destinations(&self.own, cfg);
        if self.destinations == cfg.forward.destinations {
            return Vec::new();
        }
        self.destinations = cfg.forward.destinations.clone();
        self.pool.take_where(|key| key.screened)
    }

    /// Wakes the wait `to` names on this shard.
    fn waiter(&self, to: WakeUp) -> Box<FlightWaiter> {
        Box::new(FlightWaiter {
            tx: self.flight_tx.clone(),
            waker: self.waker.clone(),
            to,
        })
    }
}

/// The node's own listeners and its cluster peers' listeners.
fn never_destinations(own: &[SocketAddr], cfg: &Config) -> Vec<SocketAddr> {
    let peers = cfg
        .cluster
        .iter()
        .flat_map(|c| c.nodes.iter().map(|n| n.http));
    own.iter().copied().chain(peers).collect()
}

/// What each driver (epoll, io_uring) provides for the logic both share.
pub trait ShardIo {
    fn lookups(&mut self) -> &mut Lookups;
    /// The client in slot `ci`, its link, and the Date value for `Now`.
    fn client(&mut self, ci: usize) -> Option<(&mut Conn, &mut Link, &DateCache)>;
    /// An idle pooled connection to `origin` that is still usable, now owned by `ci`.
    fn take_pooled(&mut self, key: &UpstreamKey, ci: usize) -> Option<usize>;
    fn connect(&mut self, ci: usize, key: UpstreamKey, addr: SocketAddr, now: Instant);
    /// Park upstream `ui`, no longer owned by any client, in the pool (or close it).
    fn park(&mut self, ui: usize, now: Instant);
    fn close_upstream(&mut self, ui: usize);
    /// Sends a FIN on upstream `ui` once everything queued for it is sent.
    fn shutdown_upstream_write(&mut self, ui: usize);
    /// Move the client along after an event that arrived outside its own I/O.
    fn kick(&mut self, ci: usize, now: Instant);
    /// The client slots whose connections still run (not being closed).
    fn live_clients(&self) -> Vec<usize>;
    fn control(&mut self) -> &mut ShardControl;
    /// A reloaded config, for what the driver itself reads (admission, its stats line).
    fn reconfigure(&mut self, cfg: Arc<Config>);
    /// The node is draining: take the clients already waiting in the listen backlog,
    /// then accept no more.
    fn stop_accepting(&mut self, now: Instant);
}

/// What both drivers do every tick: lookups given up on, idle pooled connections past
/// their time closed, and each client's timers run (moved along if that gave it work).
pub fn tick<D: ShardIo>(d: &mut D, now: Instant) {
    let open = d.live_clients().len();
    let Directives { config, drain } = d.control().tick(open);
    if let Some(cfg) = &config {
        d.reconfigure(cfg.clone());
        for ui in d.lookups().reconfigure(cfg) {
            d.close_upstream(ui);
        }
    }
    if drain.is_some() {
        // Clients taken from the backlog now have sent nothing yet: `Conn::drain` does
        // not count them idle, so their requests are answered.
        d.stop_accepting(now);
    }
    expire_lookups(d, now);
    for ui in d.lookups().pool.expire(now) {
        d.close_upstream(ui);
    }
    for ci in d.live_clients() {
        let Some((conn, _, date)) = d.client(ci) else {
            continue;
        };
        if let Some(cfg) = &config {
            conn.reconfigure(cfg.clone());
        }
        if let Some(how) = drain {
            conn.drain(how == Drain::Stop);
        }
        conn.on_tick(date.now(now));
        if conn.has_actions() || conn.is_finished() || !conn.client_out().is_empty() {
            d.kick(ci, now);
        }
    }
    if config.is_some() {
        d.control().confirm_applied();
    }
}

/// Carries out everything the connection in slot `ci` asked for.
pub fn apply_actions<D: ShardIo>(d: &mut D, ci: usize, now: Instant) {
    loop {
        let Some((conn, link, _)) = d.client(ci) else {
            return;
        };
        let Some(action) = conn.next_action() else {
            return;
        };
        match action {
            Action::Acquire {
                origin,
                pooled_ok,
                screened,
            } => {
                let to = None;
                let key = UpstreamKey {
                    origin,
                    screened,
                    to,
                };
                acquire(d, ci, Wanted { key, pooled_ok }, now)
            }
            Action::Release => {
                if let Some(ui) = link.upstream.take() {
                    d.park(ui, now);
                }
            }
            Action::ShutdownUpstreamWrite => {
                if let Some(ui) = link.upstream {
                    d.shutdown_upstream_write(ui);
                }
            }
            Action::CloseUpstream => {
                link.awaiting_dns = None;
                if let Some(ui) = link.upstream.take() {
                    d.close_upstream(ui);
                }
            }
            Action::AwaitFlight(FlightWait(flight), ticket) => {
                let serial = link.serial;
                let waiter = d.lookups().waiter(WakeUp { ci, serial, ticket });
                flight.wait(waiter);
            }
            Action::CheckCredentials(DistillJob(work), ticket) => {
                let serial = link.serial;
                let l = d.lookups();
                let waiter = l.waiter(WakeUp { ci, serial, ticket });
                l.auth_jobs.submit(work, waiter);
            }
            Action::RunJob(DistillJob(work), ticket) => {
                let serial = link.serial;
                let l = d.lookups();
                let waiter = l.waiter(WakeUp { ci, serial, ticket });
                l.jobs.submit(work, waiter);
            }
        }
    }
}

/// A configured origin may take a pooled connection before its name is looked at; a
/// client-named one only once the address it resolves to passed the rules.
fn acquire<D: ShardIo>(d: &mut D, ci: usize, want: Wanted, now: Instant) {
    if want.pooled_ok && !want.key.screened && attach_pooled(d, ci, &want.key, now) {
        return;
    }
    let origin = &want.key.origin;
    match literal(origin)
        .map(Ok)
        .or_else(|| d.lookups().dns.get(origin, now))
    {
        Some(Ok(addr)) => connect_to(d, ci, want, addr, now),
        Some(Err(reason)) => fail_lookup(d, ci, origin, reason, now),
        None => resolve(d, ci, want, now),
    }
}

/// Attaches an idle pooled connection for `key`, if there is one.
fn attach_pooled<D: ShardIo>(d: &mut D, ci: usize, key: &UpstreamKey, now: Instant) -> bool {
    let Some(ui) = d.take_pooled(key, ci) else {
        return false;
    };
    if let Some((conn, link, date)) = d.client(ci) {
        link.upstream = Some(ui);
        conn.on_upstream_ready(true, date.now(now));
    }
    true
}

/// `addr` is where `want` resolved: checked against the destination rules when the
/// client named it (nothing is sent to a denied address), then a pooled connection
/// made under the same rules, or a new one.
fn connect_to<D: ShardIo>(d: &mut D, ci: usize, mut want: Wanted, addr: SocketAddr, now: Instant) {
    if want.key.screened {
        want.key.to = Some(addr);
        let l = d.lookups();
        if let Err(denied) = l.destinations.check(addr, &l.never) {
            if let Some((conn, _, date)) = d.client(ci) {
                conn.on_upstream_failed(UpstreamFailure::Denied(denied), date.now(now));
            }
            return;
        }
        if want.pooled_ok && attach_pooled(d, ci, &want.key, now) {
            return;
        }
    }
    d.connect(ci, want.key, addr, now)
}

/// The request in `ci` cannot have an address for `origin`: 502, naming why.
fn fail_lookup<D: ShardIo>(d: &mut D, ci: usize, origin: &Authority, reason: String, now: Instant) {
    let Some((conn, _, date)) = d.client(ci) else {
        return;
    };
    let host = origin.host.clone();
    conn.on_upstream_failed(UpstreamFailure::Resolve { host, reason }, date.now(now));
}

fn resolve<D: ShardIo>(d: &mut D, ci: usize, want: Wanted, now: Instant) {
    let Some((conn, link, _)) = d.client(ci) else {
        return;
    };
    let (serial, client) = (link.serial, conn.peer().ip());
    let origin = want.key.origin.clone();
    link.awaiting_dns = Some(want);
    let l = d.lookups();
    if !l.waiters.add(&origin, (ci, serial), now) {
        return; // a lookup for this name is already under way: it answers this one too
    }
    let job = Lookup {
        origin: origin.clone(),
        client,
        reply: l.tx.clone(),
        waker: l.waker.clone(),
    };
    if let Err(reason) = l.resolver.submit(job) {
        answer_waiters(
            d,
            Answer {
                origin,
                result: Err(reason),
            },
            now,
        );
    }
}

/// Takes what other threads sent this shard: resolver answers and ended flights (the
/// driver calls this when its waker fires).
pub fn take_wakeups<D: ShardIo>(d: &mut D, now: Instant) {
    while let Ok(answer) = d.lookups().rx.try_recv() {
        let l = d.lookups();
        l.dns.put(answer.origin.clone(), answer.result.clone(), now);
        answer_waiters(d, answer, now);
    }
    while let Ok(WakeUp { ci, serial, ticket }) = d.lookups().flight_rx.try_recv() {
        let Some((conn, link, date)) = d.client(ci) else {
            continue;
        };
        if link.serial != serial {
            continue; // that client is gone; the slot has a new one
        }
        conn.on_wait_over(ticket, date.now(now));
        d.kick(ci, now);
    }
}

/// Lookups unanswered for `dns_timeout_ms` fail their requests with 502, and the name
/// is remembered as failing for `dns_negative_ttl_ms` (the driver calls this every tick).
pub fn expire_lookups<D: ShardIo>(d: &mut D, now: Instant) {
    let l = d.lookups();
    let timeout = l.dns_timeout;
    for origin in l.waiters.overdue(timeout, now) {
        let reason = format!("no answer within {} ms", timeout.as_millis());
        d.lookups()
            .dns
            .put(origin.clone(), Err(reason.clone()), now);
        let result = Err(reason);
        answer_waiters(d, Answer { origin, result }, now);
    }
}

fn answer_waiters<D: ShardIo>(d: &mut D, answer: Answer, now: Instant) {
    for (ci, serial) in d.lookups().waiters.take(&answer.origin) {
        let Some((conn, link, date)) = d.client(ci) else {
            continue;
        };
        let awaited = link.awaiting_dns.as_ref().map(|w| &w.key.origin);
        if link.serial != serial || awaited != Some(&answer.origin) {
            continue;
        }
        let Some(want) = link.awaiting_dns.take() else {
            continue;
        };
        match &answer.result {
            Ok(addr) => connect_to(d, ci, want, *addr, now),
            Err(reason) => conn.on_upstream_failed(
                UpstreamFailure::Resolve {
                    host: answer.origin.host.clone(),
                    reason: reason.clone(),
                },
                date.now(now),
            ),
        }
        d.kick(ci, now);
    }
}
