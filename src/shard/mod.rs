//! The per-core runtime: one pinned thread per worker, each with its own listener
//! (SO_REUSEPORT), event loop, connections and upstream pool. Shards share only the
//! immutable config, the resolver threads, and counters that are summed when read.

pub mod clients;
pub mod control;
pub mod date;
pub mod dns;
pub mod epoll;
pub mod listener;
pub mod upstreams;
pub mod uring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use crate::cache::Store;
use crate::config::{Config, IoChoice};
use crate::proxy::stats::Stats;
use control::{NodeControl, ShardControl};

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up the event loop of shard {shard}: {source}")]
    Poll {
        shard: usize,
        source: std::io::Error,
    },
    #[error("io = \"uring\" but {0}")]
    Uring(uring::probe::ProbeError),
    #[error("a shard died while it was being built (see the log)")]
    Died,
    #[error("cannot take over the listeners of the previous process: {0}")]
    Inherit(String),
    #[error("cannot copy a listening socket for later hand-over: {0}")]
    Copy(std::io::Error),
    #[error(transparent)]
    AccessLog(#[from] crate::appliance::access_log::AccessLogError),
    #[error("cannot start thread for shard {shard}: {source}")]
    Spawn {
        shard: usize,
        source: std::io::Error,
    },
}

/// A started set of shards.
pub struct Running {
    pub local_addr: SocketAddr,
    pub driver: Driver,
    pub stats: Vec<Arc<Stats>>,
    pub control: Arc<NodeControl>,
    /// The node's response cache, shared by the shards.
    pub cache: Option<Arc<Store>>,
    pub held: Arc<crate::proxy::held::HeldBudget>,
    /// Copies of the listening sockets, for a binary upgrade to hand over.
    pub listeners: Vec<std::net::TcpListener>,
    /// Each shard's thread reports here when its loop ends.
    pub exits: crossbeam_channel::Receiver<ShardExit>,
    threads: Vec<JoinHandle<()>>,
    access_log: Option<crate::appliance::access_log::Writer>,
}

/// A shard's loop has ended.
#[derive(Debug)]
pub struct ShardExit {
    pub shard: usize,
    /// None: it drained; else why it stopped (a failed wait, a panic).
    pub failure: Option<String>,
}

impl Running {
    /// Waits (at most `within`) for the access log lines of shards that have ended to
    /// be written, before the process exits.
    pub fn finish_access_log(&mut self, within: std::time::Duration) {
        if let Some(w) = self.access_log.take() {
            w.finish(within);
        }
    }

    /// Waits for every shard thread that has ended or ends now.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        // The shards' logs are gone with them: what they handed over is written now.
        if let Some(w) = self.access_log {
            w.join();
        }
    }
}

/// The network driver a node runs, chosen once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Epoll,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Picks the driver: `auto` probes the kernel and falls back to epoll, saying why.
pub fn choose_driver(choice: IoChoice) -> Result<(Driver, String), ShardError> {
    match choice {
        IoChoice::Epoll => Ok((Driver::Epoll, "configured".into())),
        IoChoice::Uring => match uring::probe::probe() {
            Ok(()) => Ok((Driver::Uring, "configured".into())),
            Err(e) => Err(ShardError::Uring(e)),
        },
        IoChoice::Auto => match uring::probe::probe() {
            Ok(()) => Ok((
                Driver::Uring,
                "auto: the kernel supports everything the driver needs".into(),
            )),
            Err(e) => Ok((Driver::Epoll, format!("auto: {e}"))),
        },
    }
}

/// What all shards of a node share besides the config: the resolver threads, the
/// cache and the distillation pool.
#[derive(Clone)]
pub struct Node {
    pub resolver: dns::Resolver,
    pub cache: Option<Arc<Store>>,
    /// Threads for distillation jobs too large to run on a shard.
    pub jobs: crate::distill::pool::JobPool,
    /// Threads that check credentials (bcrypt, argon2: slow on purpose).
    pub auth_jobs: crate::distill::pool::JobPool,
    /// Response bodies held in memory by all shards together.
    pub held: Arc<crate::proxy::held::HeldBudget>,
    /// The node's own listening addresses, as destinations the forward proxy refuses
    /// (a request there would loop, or reach the admin listener from outside).
    pub own: Arc<[SocketAddr]>,
    /// Each client's connections, node-wide (`forward.client_connections_max`).
    pub connections: Arc<crate::access::limits::ConnectionCounts>,
}

/// Credential checks at once, node-wide: at tens of milliseconds each, two threads check
/// about fifty new clients a second; a client's later requests are remembered.
const AUTH_THREADS: usize = 2;
/// Checks waiting for a thread; past it a request gets 503 at once.
const AUTH_QUEUE: usize = 256;

/// Every address the node listens on, a wildcard one as each local address.
fn own_addresses(main: SocketAddr, also: &[SocketAddr]) -> Arc<[SocketAddr]> {
    use crate::access::destinations::{local_addresses, own_addresses};
    let listening: Vec<SocketAddr> = std::iter::once(main).chain(also.iter().copied()).collect();
    let wildcard = listening.iter().any(|a| a.ip().is_unspecified());
    let local = if wildcard {
        local_addresses()
    } else {
        Vec::new()
    };
    own_addresses(&listening, &local).into()
}

/// Binds the listeners and starts one shard per worker; returns once every shard is
/// ready (or the first failed).
/// `inherited`: the listening sockets a binary upgrade handed over
/// (`listener::take_inherited`), used instead of binding. `also_own`: the node's other
/// listeners (admin), which the forward proxy must not connect to either.
pub fn start(
    config: Arc<Config>,
    inherited: Option<Vec<std::net::TcpListener>>,
    also_own: &[SocketAddr],
) -> Result<Running, ShardError> {
    let (driver, why) = choose_driver(config.io)?;
    tracing::info!(
        driver = driver.name(),
        "network driver: {} ({why})",
        driver.name()
    );
    let listeners = match inherited {
        Some(inherited) => {
            listener::warn_if_unlike_config(&inherited, &config);
            inherited
        }
        None => listener::bind_all(config.listen, config.effective_workers())?,
    };
    let workers = listeners.len();
    let copies = listeners
        .iter()
        .map(|l| l.try_clone())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(ShardError::Copy)?;
    let local_addr = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(config.listen);
    let node = Node {
        resolver: dns::Resolver::start(
            config.upstream.dns_threads,
            config.upstream.dns_lookups_per_client_max,
        ),
        cache: config.cache.enabled().then(|| {
            Arc::new(Store::new(
                config.store_budget(),
                config.cache.object_bytes_max,
            ))
        }),
        jobs: crate::distill::pool::JobPool::start(
            config.distill.pool_threads,
            config.distill.pool_queue_max,
        ),
        held: crate::proxy::held::HeldBudget::new(config.limits.held_bytes_max),
        own: own_addresses(local_addr, also_own),
        connections: Default::default(),
        auth_jobs: crate::distill::pool::JobPool::start_named("auth", AUTH_THREADS, AUTH_QUEUE),
    };
    let cores = if config.pin_workers {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let control = NodeControl::new(config.clone(), workers);
    let (exit_tx, exits) = crossbeam_channel::unbounded();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<(), ShardError>>(workers);
    let stats: Vec<Arc<Stats>> = (0..workers).map(|_| Arc::default()).collect();
    let (access_log, mut log_parts) = crate::appliance::access_log::Writer::start(&stats)?;
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let shard_stats = stats[i].clone();
        let log = log_parts.remove(0);
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let (cfg, node, ready) = (config.clone(), node.clone(), ready_tx.clone());
        let shard_control = ShardControl::new(control.clone(), i).with_access_log(log);
        let exit = exit_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || {
                if let Some(core) = core
                    && !core_affinity::set_for_current(core)
                {
                    tracing::warn!(shard = i, core = core.id, "could not pin shard to core");
                }
                let parts = ShardParts {
                    cfg,
                    stats: shard_stats,
                    listener,
                    node,
                    control: shard_control,
                };
                let failure = run_shard(driver, i, parts, ready).err();
                let _ = exit.send(ShardExit { shard: i, failure });
            })
            .map_err(|source| ShardError::Spawn { shard: i, source })?;
        threads.push(thread);
    }
    // Only the shards hold senders now: one that dies while building (a panic) ends
    // the wait instead of leaving it forever.
    drop(ready_tx);
    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ShardError::Died),
        }
    }
    tracing::info!(workers, addr = %local_addr, driver = driver.name(), "shards started");
    Ok(Running {
        local_addr,
        driver,
        stats,
        control,
        cache: node.cache.clone(),
        held: node.held.clone(),
        listeners: copies,
        exits,
        threads,
        access_log: Some(access_log),
    })
}

/// What one shard is built from.
struct ShardParts {
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    listener: std::net::TcpListener,
    node: Node,
    control: ShardControl,
}

/// Builds the shard on its own thread (an io_uring ring belongs to the thread that
/// submits to it), reports readiness, and runs it. Err says why its loop stopped
/// before the node drained: a failed wait, or a panic (caught here, so the supervisor
/// hears of it and ends the process instead of leaving a node half alive).
fn run_shard(
    driver: Driver,
    i: usize,
    parts: ShardParts,
    ready: crossbeam_channel::Sender<Result<(), ShardError>>,
) -> Result<(), String> {
    let node = parts.control.node();
    let run = std::panic::AssertUnwindSafe(|| build_and_run(driver, i, parts, ready));
    let outcome = match std::panic::catch_unwind(run) {
        Ok(r) => r,
        Err(payload) => Err(format!("panicked: {}", panic_message(&*payload))),
    };
    if outcome.is_err() {
        node.mark_stopped(i);
    }
    outcome
}

fn build_and_run(
    driver: Driver,
    i: usize,
    p: ShardParts,
    ready: crossbeam_channel::Sender<Result<(), ShardError>>,
) -> Result<(), String> {
    match driver {
        Driver::Epoll => {
            let built = epoll::Shard::new(i, p.cfg, p.stats, p.listener, p.node, p.control);
            report_and_run(i, built, &ready, epoll::Shard::run)
        }
        Driver::Uring => {
            let built = uring::Shard::new(i, p.cfg, p.stats, p.listener, p.node, p.control, 0);
            report_and_run(i, built, &ready, uring::Shard::run)
        }
    }
}

/// Tells `start` whether shard `i` was built, then runs it.
fn report_and_run<S>(
    i: usize,
    built: std::io::Result<S>,
    ready: &crossbeam_channel::Sender<Result<(), ShardError>>,
    run: impl FnOnce(S) -> std::io::Result<()>,
) -> Result<(), String> {
    match built {
        Ok(shard) => {
            let _ = ready.send(Ok(()));
            run(shard).map_err(|e| format!("its event loop failed: {e}"))
        }
        Err(source) => {
            let _ = ready.send(Err(ShardError::Poll { shard: i, source }));
            Ok(())
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
