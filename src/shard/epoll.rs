//! The epoll driver (via `mio`): moves bytes between sockets and the sans-IO `Conn`,
//! and carries out its upstream actions (pool, DNS, connect). Sockets are
//! edge-triggered, so each remembers whether it may still have data or room.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::SockRef;

use crate::config::Config;
use crate::proxy::out::IOV_MAX;
use crate::proxy::pool::UpstreamKey;
use crate::proxy::stats::Stats;
use crate::proxy::{Conn, UpstreamFailure};

use super::Node;
use super::clients::{self, Admission};
use super::control::ShardControl;
use super::date::DateCache;
use super::upstreams::{self, Link, Lookups, ShardIo};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const UPSTREAM_BIT: usize = 1 << 40;
const TICK: Duration = Duration::from_millis(100);
/// Rounds of read/write per connection before others get a turn.
const PUMP_ROUNDS_MAX: usize = 16;
const EVENTS_CAPACITY: usize = 1024;

struct Client {
    stream: TcpStream,
    conn: Conn,
    link: Link,
    readable: bool,
    writable: bool,
    /// The peer's FIN (or an error) is queued behind the data: read until it shows.
    hup: bool,
    dead: bool,
}

struct Upstream {
    stream: TcpStream,
    key: UpstreamKey,
    owner: Option<usize>,
    connected: bool,
    readable: bool,
    writable: bool,
    hup: bool,
}

pub struct Shard {
    id: usize,
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    poll: Poll,
    /// None once the node drains.
    listener: Option<TcpListener>,
    clients: Slab<Client>,
    upstreams: Slab<Upstream>,
    lookups: Lookups,
    read_buf: Vec<u8>,
    ready: VecDeque<usize>,
    date: DateCache,
    stats_logged: Instant,
    admission: Admission,
    control: ShardControl,
}

impl Shard {
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        stats: Arc<Stats>,
        listener: std::net::TcpListener,
        node: Node,
        mut control: ShardControl,
    ) -> std::io::Result<Shard> {
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let log = control.take_access_log(&stats);
        let admission = Admission::new(
            id,
            cfg.clone(),
            stats.clone(),
            node.connections.clone(),
            log,
        );
        Ok(Shard {
            id,
            stats: stats.clone(),
            poll,
            listener: Some(listener),
            clients: Slab::new(),
            upstreams: Slab::new(),
            lookups: Lookups::new(&cfg, node, waker),
            read_buf: vec![0; cfg.limits.io_buffer_bytes],
            ready: VecDeque::new(),
            date: DateCache::default(),
            stats_logged: Instant::now(),
            admission,
            control,
            cfg,
        })
    }

    /// Runs until the node has drained and the last client is gone, or the poll fails.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut last_tick = Instant::now();
        loop {
            let timeout = if self.ready.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                self.control.stopped();
                return Err(e);
            }
            let now = Instant::now();
            self.date.refresh(now);
            for event in events.iter() {
                self.dispatch(event, now);
            }
            for _ in 0..self.ready.len() {
                if let Some(ci) = self.ready.pop_front() {
                    self.pump(ci, now);
                }
            }
            if now.saturating_duration_since(last_tick) >= TICK {
                last_tick = now;
                self.tick(now);
                if self.control.draining() && self.clients.is_empty() {
                    self.control.stopped();
                    return Ok(());
                }
            }
            self.control.turned(now);
        }
    }

    fn dispatch(&mut self, event: &mio::event::Event, now: Instant) {
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
        let hup = event.is_read_closed() || event.is_error();
        match event.token() {
            LISTENER => self.accept_all(now),
            WAKER => upstreams::take_wakeups(self, now),
            Token(t) if t & UPSTREAM_BIT != 0 => {
                let ui = t & !UPSTREAM_BIT;
                let Some(up) = self.upstreams.get_mut(ui) else {
                    return;
                };
                up.readable |= readable;
                up.writable |= writable;
                up.hup |= hup;
                match up.owner {
                    Some(ci) => self.pump(ci, now),
                    None => self.check_idle(ui),
                }
            }
            Token(ci) => {
                let Some(c) = self.clients.get_mut(ci) else {
                    return;
                };
                c.readable |= readable;
                c.writable |= writable;
                c.hup |= hup;
                self.pump(ci, now);
            }
        }
    }

    // ---- accepting -------------------------------------------------------------------

    fn accept_all(&mut self, now: Instant) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE and friends: log and let the next readiness retry.
                    tracing::warn!(shard = self.id, "accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        let counted = match self.admission.screen(self.clients.len(), peer) {
            Ok(counted) => counted,
            Err(refusal) => {
                let _ = stream.write(refusal);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let entry = self.clients.vacant_entry();
        let ci = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(ci),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(shard = self.id, "cannot register client: {e}");
            return;
        }
        let (conn, link) = self
            .admission
            .admit(peer, counted, &self.lookups, &self.date, now);
        entry.insert(Client {
            stream,
            conn,
            link,
            readable: true,
            writable: true,
            hup: false,
            dead: false,
        });
        self.pump(ci, now);
    }

    // ---- moving bytes ----------------------------------------------------------------

    /// Reads and writes for one client and its upstream until nothing moves.
    fn pump(&mut self, ci: usize, now: Instant) {
        for _ in 0..PUMP_ROUNDS_MAX {
            if !self.clients.contains(ci) {
                return;
            }
            self.finish_connect(ci, now);
            let mut progress = self.read_client(ci, now);
            upstreams::apply_actions(self, ci, now);
            progress |= self.read_upstream(ci, now);
            upstreams::apply_actions(self, ci, now);
            progress |= self.write_upstream(ci, now);
            upstreams::apply_actions(self, ci, now);
            progress |= self.write_client(ci, now);
            let Some(c) = self.clients.get(ci) else {
                return;
            };
            if c.dead || c.conn.is_finished() {
                self.close_client(ci);
                return;
            }
            if !progress {
                return;
            }
        }
        self.ready.push_back(ci);
    }

    fn read_client(&mut self, ci: usize, now: Instant) -> bool {
        let Some(c) = self.clients.get_mut(ci) else {
            return false;
        };
        if !c.readable || !c.conn.wants_client_read() {
            return false;
        }
        let now = self.date.now(now);
        match c.stream.read(&mut self.read_buf) {
            Ok(0) => {
                c.readable = false;
                c.conn.on_client_eof(now);
            }
            Ok(n) => {
                // A short read drained the socket; edge-triggered epoll reports the
                // next arrival, so the would-block read is not worth a syscall.
                c.readable = c.hup || n == self.read_buf.len();
                c.conn.on_client_data(&self.read_buf[..n], now);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.readable = false;
                return false;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => c.dead = true,
        }
        true
    }

    fn write_client(&mut self, ci: usize, now: Instant) -> bool {
        let Some(c) = self.clients.get_mut(ci) else {
            return false;
        };
        if !c.writable || c.conn.client_out().is_empty() {
            return false;
        }
        let out = c.conn.client_out();
        let mut runs = [&b""[..]; IOV_MAX];
        let n = out.slices(&mut runs);
        let iov: [IoSlice<'_>; IOV_MAX] = std::array::from_fn(|i| IoSlice::new(runs[i]));
        match c.stream.write_vectored(&iov[..n]) {
            Ok(n) => {
                c.conn.client_out().consume(n);
                c.conn.on_client_written(self.date.now(now));
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.writable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                c.dead = true;
                true
            }
        }
    }

    fn read_upstream(&mut self, ci: usize, now: Instant) -> bool {
        let Some(c) = self.clients.get_mut(ci) else {
            return false;
        };
        let Some(ui) = c.link.upstream else {
            return false;
        };
        let Some(up) = self.upstreams.get_mut(ui) else {
            return false;
        };
        if !up.connected || !up.readable || !c.conn.wants_upstream_read() {
            return false;
        }
        let now = self.date.now(now);
        match up.stream.read(&mut self.read_buf) {
            Ok(0) => {
                up.readable = false;
                c.conn.on_upstream_closed(None, now);
            }
            Ok(n) => {
                up.readable = up.hup || n == self.read_buf.len();
                c.conn.on_upstream_data(&self.read_buf[..n], now);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                up.readable = false;
                return false;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                up.readable = false;
                c.conn.on_upstream_closed(Some(&e.to_string()), now);
            }
        }
        true
    }

    fn write_upstream(&mut self, ci: usize, now: Instant) -> bool {
        let Some(c) = self.clients.get_mut(ci) else {
            return false;
        };
        let Some(ui) = c.link.upstream else {
            return false;
        };
        let Some(up) = self.upstreams.get_mut(ui) else {
            return false;
        };
        if !up.connected || !up.writable || c.conn.upstream_out().is_empty() {
            return false;
        }
        let now = self.date.now(now);
        match up.stream.write(c.conn.upstream_out().pending()) {
            Ok(n) => {
                c.conn.upstream_out().consume(n);
                c.conn.on_upstream_written(now);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                up.writable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(e) => {
                up.writable = false;
                c.conn.on_upstream_closed(Some(&e.to_string()), now);
                true
            }
        }
    }

    /// A non-blocking connect completes when the socket turns writable.
    fn finish_connect(&mut self, ci: usize, now: Instant) {
        let Some(c) = self.clients.get_mut(ci) else {
            return;
        };
        let Some(ui) = c.link.upstream else { return };
        let Some(up) = self.upstreams.get_mut(ui) else {
            return;
        };
        if up.connected || !up.writable {
            return;
        }
        let now = self.date.now(now);
        let failure = match up.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match up.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == ErrorKind::NotConnected => {
                    up.writable = false; // spurious wake-up: still connecting
                    return;
                }
                Err(e) => Some(e),
            },
        };
        match failure {
            None => {
                up.connected = true;
                c.conn.on_upstream_ready(false, now);
            }
            Some(e) => {
                let addr = up
                    .stream
                    .peer_addr()
                    .map_or(up.key.origin.to_string(), |a| a.to_string());
                c.conn.on_upstream_failed(
                    UpstreamFailure::Connect {
                        addr,
                        reason: e.to_string(),
                    },
                    now,
                );
            }
        }
        upstreams::apply_actions(self, ci, now.instant);
    }

    // ---- upstream actions ------------------------------------------------------------

    fn connect(&mut self, ci: usize, key: UpstreamKey, addr: SocketAddr, now: Instant) {
        let Some(c) = self.clients.get_mut(ci) else {
            return;
        };
        let registered = TcpStream::connect(addr).and_then(|mut stream| {
            let entry = self.upstreams.vacant_entry();
            let token = Token(entry.key() | UPSTREAM_BIT);
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let _ = stream.set_nodelay(true);
            let ui = entry.key();
            entry.insert(Upstream {
                stream,
                key,
                owner: Some(ci),
                connected: false,
                readable: false,
                writable: false,
                hup: false,
            });
            Ok(ui)
        });
        match registered {
            Ok(ui) => c.link.upstream = Some(ui),
            Err(e) => c.conn.on_upstream_failed(
                UpstreamFailure::Connect {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                },
                self.date.now(now),
            ),
        }
    }

    fn park_upstream(&mut self, ui: usize, now: Instant) {
        let Some(up) = self.upstreams.get_mut(ui) else {
            return;
        };
        up.owner = None;
        let key = up.key.clone();
        for evicted in self.lookups.pool.put(&key, ui, now) {
            self.close_upstream(evicted);
        }
        // The origin may have closed it already; look before it is handed out.
        self.check_idle(ui);
    }

    /// An idle pooled connection that turned readable was closed by the origin (or sent
    /// bytes nobody asked for): either way it cannot be reused.
    fn check_idle(&mut self, ui: usize) {
        let Some(up) = self.upstreams.get_mut(ui) else {
            return;
        };
        if up.owner.is_some() || !up.readable {
            return;
        }
        let mut probe = [0u8; 1];
        match up.stream.read(&mut probe) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => up.readable = false,
            _ => {
                self.lookups.pool.remove(ui);
                self.close_upstream(ui);
            }
        }
    }

    fn close_upstream(&mut self, ui: usize) {
        if self.upstreams.contains(ui) {
            let mut up = self.upstreams.remove(ui);
            let _ = self.poll.registry().deregister(&mut up.stream);
        }
    }

    fn close_client(&mut self, ci: usize) {
        if !self.clients.contains(ci) {
            return;
        }
        let mut c = self.clients.remove(ci);
        if let Some(ui) = clients::closing(&c.conn, &mut c.link, SockRef::from(&c.stream)) {
            self.close_upstream(ui);
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
    }

    // ---- time ------------------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        self.admission.tick_local();
        if let Some(every) = self.cfg.stats_interval
            && now.saturating_duration_since(self.stats_logged) >= every
        {
            self.stats_logged = now;
            let open = (self.clients.len(), self.upstreams.len());
            self.stats
                .log(self.id, "epoll", open, self.lookups.held.used());
            if let Some(c) = self.cfg.cluster.as_ref() {
                self.stats.log_cluster(self.id, c, now);
            }
        }
        upstreams::tick(self, now);
    }
}

impl ShardIo for Shard {
    fn lookups(&mut self) -> &mut Lookups {
        &mut self.lookups
    }

    fn client(&mut self, ci: usize) -> Option<(&mut Conn, &mut Link, &DateCache)> {
        let c = self.clients.get_mut(ci)?;
        Some((&mut c.conn, &mut c.link, &self.date))
    }

    fn take_pooled(&mut self, key: &UpstreamKey, ci: usize) -> Option<usize> {
        while let Some(ui) = self.lookups.pool.take(key) {
            if let Some(up) = self.upstreams.get_mut(ui) {
                up.owner = Some(ci);
                return Some(ui);
            }
        }
        None
    }

    fn connect(&mut self, ci: usize, key: UpstreamKey, addr: SocketAddr, now: Instant) {
        Shard::connect(self, ci, key, addr, now)
    }

    fn park(&mut self, ui: usize, now: Instant) {
        self.park_upstream(ui, now)
    }

    fn close_upstream(&mut self, ui: usize) {
        Shard::close_upstream(self, ui)
    }

    /// Writes go straight from the connection's buffer to the socket: once the
    /// connection asks, all it queued is in the kernel's hands.
    fn shutdown_upstream_write(&mut self, ui: usize) {
        if let Some(up) = self.upstreams.get(ui) {
            let _ = up.stream.shutdown(std::net::Shutdown::Write);
        }
    }

    fn kick(&mut self, ci: usize, now: Instant) {
        self.pump(ci, now)
    }

    fn live_clients(&self) -> Vec<usize> {
        self.clients.iter().map(|(ci, _)| ci).collect()
    }

    fn control(&mut self) -> &mut ShardControl {
        &mut self.control
    }

    fn reconfigure(&mut self, cfg: Arc<Config>) {
        self.admission.reconfigure(cfg.clone());
        self.cfg = cfg;
    }

    fn stop_accepting(&mut self, now: Instant) {
        self.admission.drain();
        self.accept_all(now);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
    }
}
