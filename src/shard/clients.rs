//! What both drivers do with a client apart from its I/O: admit it, or refuse it over
//! the shard's limit, and, when it closes, let go of its upstream connection and choose
//! between a clean close and a reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::config::Config;
use crate::proxy::Conn;
use crate::proxy::stats::Stats;

use super::date::DateCache;
use super::upstreams::{Link, Lookups};

/// What a connection over `connections_per_shard_max` gets before it is closed.
pub(crate) const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 40\r\nProxy-Status: distilld; error=proxy_internal_response; details=\"too many connections\"\r\nConnection: close\r\n\r\ndistilld: 503 too many connections here\n";

/// Admits a shard's clients.
pub struct Admission {
    shard: usize,
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    next_serial: u64,
    /// The node is draining: a client accepted now gets one answer, then the close.
    draining: bool,
}

impl Admission {
    pub fn new(shard: usize, cfg: Arc<Config>, stats: Arc<Stats>) -> Admission {
        Admission {
            shard,
            cfg,
            stats,
            next_serial: 0,
            draining: false,
        }
    }

    pub fn reconfigure(&mut self, cfg: Arc<Config>) {
        self.cfg = cfg;
    }

    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// The shard already holds `open` clients, all it may: the driver writes
    /// `REFUSED_RESPONSE` to the new one and closes it.
    pub fn refuse_if_full(&self, open: usize, peer: SocketAddr) -> bool {
        if open < self.cfg.limits.connections_per_shard_max {
            return false;
        }
        self.stats.connections_refused.incr();
        tracing::warn!(shard = self.shard, client = %peer,
            "connection refused: connections_per_shard_max reached");
        true
    }

    /// A new client's state: its connection and its link record.
    pub fn admit(
        &mut self,
        peer: SocketAddr,
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
        );
        if self.draining {
            conn.drain(false);
        }
        let link = Link {
            serial: self.next_serial,
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
