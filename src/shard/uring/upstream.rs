//! The upstream half of the io_uring shard: connects on the ring, receives and sends for
//! origin connections, parking them in the pool, and the hooks the shared upstream logic
//! (`shard::upstreams`) calls.

use std::os::fd::OwnedFd;
use std::time::Instant;

use io_uring::cqueue;
use io_uring::opcode;
use io_uring::types;

use super::files::on_socket;
use socket2::{SockAddr, Socket};

use crate::proxy::pool::UpstreamKey;
use crate::proxy::{Conn, UpstreamFailure};
use crate::shard::date::DateCache;
use crate::shard::upstreams::{Link, Lookups, ShardIo};

use super::io::{Io, Op, token};
use super::{Shard, Upstream};
use crate::shard::control::ShardControl;

impl Shard {
    pub(super) fn on_connect(&mut self, ui: usize, generation: u32, res: i32, now: Instant) {
        let Some(up) = self
            .upstreams
            .get_mut(ui)
            .filter(|u| u.io.generation == generation)
        else {
            return;
        };
        up.io.ops -= 1;
        let Some(ci) = up.owner else {
            self.close_upstream(ui);
            return;
        };
        let Some(c) = self.clients.get_mut(ci) else {
            return;
        };
        let now_ = self.date.now(now);
        if res == 0 {
            up.connected = true;
            c.conn.on_upstream_ready(false, now_);
        } else {
            up.io.failed = true;
            c.conn.on_upstream_failed(
                UpstreamFailure::Connect {
                    addr: up.key.origin.to_string(),
                    reason: std::io::Error::from_raw_os_error(-res).to_string(),
                },
                now_,
            );
        }
        self.service(ci, now);
    }

    pub(super) fn on_upstream_recv(
        &mut self,
        ui: usize,
        generation: u32,
        res: i32,
        flags: u32,
        now: Instant,
    ) {
        let bid = cqueue::buffer_select(flags);
        let Some(up) = self
            .upstreams
            .get_mut(ui)
            .filter(|u| u.io.generation == generation)
        else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        };
        if !cqueue::more(flags) {
            up.io.recv_armed = false;
            up.io.ops -= 1;
        }
        let owner = up.owner.filter(|_| !up.io.closing);
        let benign = res == -libc::ENOBUFS || res == -libc::ECANCELED;
        if res <= 0 && !benign {
            up.io.eof = res == 0;
            up.io.failed = res < 0;
        }
        let Some(ci) = owner else {
            // Idle in the pool: any byte or close means it cannot be reused.
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            if !benign || up.io.closing {
                self.lookups.pool.remove(ui);
                self.close_upstream(ui);
            }
            return;
        };
        let Some(c) = self.clients.get_mut(ci) else {
            if let Some(b) = bid {
                self.bufs.recycle(b); // never lose a ring buffer, whatever happened
            }
            return;
        };
        let now_ = self.date.now(now);
        match (res, bid) {
            (n, Some(b)) if n > 0 => {
                c.conn.on_upstream_data(self.bufs.data(b, n as usize), now_);
                self.bufs.recycle(b);
            }
            (0, _) => c.conn.on_upstream_closed(None, now_),
            _ if benign => {}
            (n, _) => {
                let e = std::io::Error::from_raw_os_error(-n).to_string();
                c.conn.on_upstream_closed(Some(&e), now_);
            }
        }
        self.service(ci, now);
    }

    pub(super) fn on_upstream_send(&mut self, ui: usize, generation: u32, res: i32, now: Instant) {
        let Some(up) = self
            .upstreams
            .get_mut(ui)
            .filter(|u| u.io.generation == generation)
        else {
            return;
        };
        up.io.send_inflight = false;
        up.io.ops -= 1;
        let Some(ci) = up.owner.filter(|_| !up.io.closing) else {
            self.maybe_free_upstream(ui);
            return;
        };
        let Some(c) = self.clients.get_mut(ci) else {
            return;
        };
        let now_ = self.date.now(now);
        if res > 0 {
            up.io.sending.consume(res as usize);
            up.shutdown_if_sent();
            c.conn.on_upstream_written(now_);
        } else if res < 0 {
            up.io.failed = true;
            let e = std::io::Error::from_raw_os_error(-res).to_string();
            c.conn.on_upstream_closed(Some(&e), now_);
        }
        self.service(ci, now);
    }

    pub(super) fn connect(
        &mut self,
        ci: usize,
        key: UpstreamKey,
        addr: std::net::SocketAddr,
        now: Instant,
    ) {
        let socket = Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .and_then(|s| {
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
            s.set_cloexec(true)?;
            Ok(s)
        });
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                if let Some(c) = self.clients.get_mut(ci) {
                    let failure = UpstreamFailure::Connect {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    };
                    c.conn.on_upstream_failed(failure, self.date.now(now));
                }
                return;
            }
        };
        let generation = self.generations.next();
        let sockaddr = Box::new(SockAddr::from(addr));
        let mut io = Io::new(OwnedFd::from(socket), generation);
        io.ops = 1;
        io.slot = self.files.register(&self.ring, io.raw());
        let (ptr, len) = (sockaddr.as_ptr().cast(), sockaddr.len());
        let entry = on_socket!(io, |t| opcode::Connect::new(t, ptr, len));
        let generation = io.generation;
        let ui = self.upstreams.insert(Upstream {
            io,
            key,
            owner: Some(ci),
            connected: false,
            shut_write: false,
            _addr: sockaddr,
        });
        if let Some(c) = self.clients.get_mut(ci) {
            c.link.upstream = Some(ui);
        }
        self.push(
            entry
                .build()
                .user_data(token(Op::UpConnect, ui, generation)),
        );
    }

    pub(super) fn park_upstream(&mut self, ui: usize, now: Instant) {
        let Some(up) = self.upstreams.get_mut(ui) else {
            return;
        };
        up.owner = None;
        if up.io.eof || up.io.failed {
            self.close_upstream(ui);
            return;
        }
        let key = up.key.clone();
        // Keep a receive armed while idle: a close by the origin shows up at once.
        let cap = u32::try_from(4 * self.cfg.limits.io_buffer_bytes).unwrap_or(u32::MAX);
        self.arm_recv(Op::UpRecv, ui, Some(cap));
        for evicted in self.lookups.pool.put(&key, ui, now) {
            self.close_upstream(evicted);
        }
    }

    pub(super) fn close_upstream(&mut self, ui: usize) {
        let Some(up) = self.upstreams.get_mut(ui) else {
            return;
        };
        if up.io.closing {
            return;
        }
        up.io.closing = true;
        up.owner = None;
        let target = on_socket!(up.io, |t| types::CancelBuilder::fd(t));
        self.cancel_all(target);
        self.lookups.pool.remove(ui);
        self.maybe_free_upstream(ui);
    }

    pub(super) fn maybe_free_upstream(&mut self, ui: usize) {
        if self
            .upstreams
            .get(ui)
            .is_some_and(|u| u.io.closing && u.io.ops == 0)
        {
            let up = self.upstreams.remove(ui); // drops the descriptor: closed
            if let Some(slot) = up.io.slot {
                self.files.release(&self.ring, slot);
            }
        }
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
            let usable = |u: &&mut Upstream| !u.io.closing && !u.io.eof && !u.io.failed;
            if let Some(up) = self.upstreams.get_mut(ui).filter(usable) {
                up.owner = Some(ci);
                return Some(ui);
            }
        }
        None
    }

    fn connect(&mut self, ci: usize, key: UpstreamKey, addr: std::net::SocketAddr, now: Instant) {
        Shard::connect(self, ci, key, addr, now)
    }

    fn park(&mut self, ui: usize, now: Instant) {
        self.park_upstream(ui, now)
    }

    fn close_upstream(&mut self, ui: usize) {
        Shard::close_upstream(self, ui)
    }

    /// A send may still be in flight (the ring owns those bytes): the FIN follows it.
    fn shutdown_upstream_write(&mut self, ui: usize) {
        if let Some(up) = self.upstreams.get_mut(ui) {
            up.shut_write = true;
            up.shutdown_if_sent();
        }
    }

    fn kick(&mut self, ci: usize, now: Instant) {
        self.service(ci, now)
    }

    fn live_clients(&self) -> Vec<usize> {
        let open = self.clients.iter().filter(|(_, c)| !c.io.closing);
        open.map(|(ci, _)| ci).collect()
    }

    fn control(&mut self) -> &mut ShardControl {
        &mut self.control
    }

    fn reconfigure(&mut self, cfg: std::sync::Arc<crate::config::Config>) {
        self.admission.reconfigure(cfg.clone());
        self.cfg = cfg;
    }

    fn stop_accepting(&mut self, now: Instant) {
        self.stop_accepting_now(now);
    }
}

impl Upstream {
    /// The FIN owed, once nothing queued is left to send (a direct shutdown(2): the
    /// descriptor stays open for the answer still to come).
    fn shutdown_if_sent(&mut self) {
        if self.shut_write && !self.io.send_inflight && self.io.unsent() == 0 {
            self.shut_write = false;
            // SAFETY: the descriptor is this socket's own, open while `io` lives.
            unsafe { libc::shutdown(self.io.raw(), libc::SHUT_WR) };
        }
    }
}
