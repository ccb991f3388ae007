//! What both drivers do with a client apart from its I/O: admit it, or refuse it over
//! the shard's limit, and, when it closes, let go of its upstream connection and choose
//! between a clean close and a reset.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::access::limits::{ConnectionCounts, ConnectionSlot};
use crate::appliance::access_log::AccessLog;
use crate::config::Config;
use crate::proxy::Conn;
use crate::proxy::shard_local::ShardLocal;
use crate::proxy::stats::Stats;

use super::date::DateCache;
use super::upstreams::{Link, Lookups};

/// What a connection over `connections_per_shard_max` gets before it is closed.
pub(crate) const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 40\r\nProxy-Status: distilld; error=proxy_internal_response; details=\"too many connections\"\r\nConnection: close\r\n\r\ndistilld: 503 too many connections here\n";

/// What a connection over its client's `forward.client_connections_max` gets.
pub(crate) const CLIENT_FULL_RESPONSE: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 86\r\nRetry-After: 1\r\nConnection: close\r\n\r\ndistilld: 429 this client has forward.client_connections_max connections open already\n";

/// Admits a shard's clients.
pub struct Admission {
    shard: usize,
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    /// Every client's connections, node-wide.
    connections: Arc<ConnectionCounts>,
    next_serial: u64,
    /// The node is draining: a client accepted now gets one answer, then the close.
    draining: bool,
    /// What the shard's connections share (its access log, its object references).
    local: Rc<ShardLocal>,
}

impl Admission {
    pub fn new(
        shard: usize,
        cfg: Arc<Config>,
        stats: Arc<Stats>,
        connections: Arc<ConnectionCounts>,
        log: AccessLog,
    ) -> Admission {
        Admission {
            shard,
            cfg,
            stats,
            connections,
            next_serial: 0,
            draining: false,
            local: ShardLocal::new(log),
        }
    }

    /// Every tick: the access log lines batched so far to the writer, the shard's
    /// unused object references let go.
    pub fn tick_local(&self) {
        self.local.tick();
    }

    pub fn reconfigure(&mut self, cfg: Arc<Config>) {
        self.cfg = cfg;
    }

    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// A new client, when the shard holds `open` already: counted against its address
    /// (cluster peers are not: they carry many clients), or refused with the response
    /// the driver writes before it closes the socket (503 when the shard is full, 429
    /// when the client is).
    pub fn screen(
        &self,
        open: usize,
        peer: SocketAddr,
    ) -> Result<Option<ConnectionSlot>, &'static [u8]> {
        if open >= self.cfg.limits.connections_per_shard_max {
            self.stats.connections_refused.incr();
            tracing::warn!(shard = self.shard, client = %peer,
                "connection refused: connections_per_shard_max reached");
            return Err(REFUSED_RESPONSE);
        }
        if self.is_peer_node(peer) {
            return Ok(None);
        }
        let max = self.cfg.forward.client_connections_max;
        self.connections.open(peer.ip(), max).map_err(|_| {
            self.stats.client_limited.incr();
            tracing::debug!(shard = self.shard, client = %peer,
                "connection refused: forward.client_connections_max reached");
            CLIENT_FULL_RESPONSE
        })
    }

    fn is_peer_node(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.cfg
            .cluster
            .as_ref()
            .is_some_and(|c| c.nodes.iter().any(|n| n.http.ip() == ip))
    }

    /// A new client's state: its connection and its link record (`counted`: its place
    /// in its client's connection count).
    pub fn admit(
        &mut self,
        peer: SocketAddr,
        counted: Option<ConnectionSlot>,
        lookups: &Lookups,
        date: &DateCache,
        now: Instant,
    ) -> (Conn, Link) {
        self.stats.connections_accepted.incr();
        self.next_serial += 1;
        let mut conn = Conn::new(
            self.cfg.clone(),
            self.stats.clone(),
            lookups.cache.clone(),
            lookups.held.clone(),
            peer,
            date.now(now),
            self.local.clone(),
        );
        if self.draining {
            conn.drain(false);
        }
        let link = Link {
            serial: self.next_serial,
            counted,
            ..Link::default()
        };
        (conn, link)
    }
}

/// A client is being closed: its socket closes with a reset when what it was sent must
/// not pass for complete. Returns the upstream connection it held, for the driver to
/// close.
pub fn closing(conn: &Conn, link: &mut Link, socket: SockRef<'_>) -> Option<usize> {
    if conn.wants_reset() {
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
    link.upstream.take()
}
