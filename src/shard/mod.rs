//! The per-core runtime: one pinned thread per worker, each with its own listener
//! (SO_REUSEPORT), event loop, connections and upstream pool. Shards share only the
//! immutable config, the resolver threads, and counters that are summed when read.

pub mod date;
pub mod dns;
pub mod epoll;
pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use crate::config::Config;
use crate::proxy::stats::Stats;

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
    #[error("cannot start thread for shard {shard}: {source}")]
    Spawn {
        shard: usize,
        source: std::io::Error,
    },
}

/// A started set of shards.
pub struct Running {
    pub local_addr: SocketAddr,
    pub stats: Vec<Arc<Stats>>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits for every shard thread (they run until the process ends).
    pub fn join(self) {
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
    }
}

/// Binds the listeners and starts one shard per worker.
pub fn start(config: Arc<Config>) -> Result<Running, ShardError> {
    let workers = config.effective_workers();
    let listeners = listener::bind_all(config.listen, workers)?;
    let local_addr = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(config.listen);
    let resolver = dns::Resolver::start(config.upstream.dns_threads);
    let cores = if config.pin_workers {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut stats = Vec::new();
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let shard_stats = Arc::new(Stats::default());
        stats.push(shard_stats.clone());
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let shard = epoll::Shard::new(i, config.clone(), shard_stats, listener, resolver.clone())
            .map_err(|source| ShardError::Poll { shard: i, source })?;
        let thread = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || {
                if let Some(core) = core
                    && !core_affinity::set_for_current(core)
                {
                    tracing::warn!(shard = i, core = core.id, "could not pin shard to core");
                }
                shard.run();
            })
            .map_err(|source| ShardError::Spawn { shard: i, source })?;
        threads.push(thread);
    }
    tracing::info!(workers, addr = %local_addr, driver = "epoll", "shards started");
    Ok(Running {
        local_addr,
        stats,
        threads,
    })
}
