//! The io_uring driver: one ring per pinned shard (single issuer, deferred task running),
//! multishot accept, multishot receive into a provided-buffer ring, sends and connects on
//! the same ring, all submitted in one batch per loop turn. It moves bytes between
//! sockets and the sans-IO `Conn` and carries out its actions, exactly as the epoll
//! driver does; only the way readiness and completion arrive differs.
//!
//! Memory the kernel reads or writes while an operation is in flight (send buffers,
//! connect addresses, the buffer ring) is owned by the slot of that operation, and a slot
//! is freed only when its last operation has completed.

pub mod bufring;
mod files;
mod io;
pub mod probe;
mod upstream;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{self, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;
use socket2::{SockAddr, SockRef};

use crate::config::Config;
use crate::proxy::Conn;
use crate::proxy::pool::UpstreamKey;
use crate::proxy::stats::Stats;

use super::Node;
use super::clients::{self, Admission};
use super::control::ShardControl;
use super::date::DateCache;
use super::upstreams::{self, Link, Lookups};
use bufring::BufRing;
use files::{FixedFiles, on_socket};
use io::{EventFd, Generations, Io, Op, token, untoken};

const BUFFER_GROUP: u16 = 0;

/// A connection's queued output on one side.
enum Queued<'a> {
    Client(&'a mut crate::proxy::out::Out),
    Upstream(&'a mut crate::proxy::buf::Buf),
}

impl Queued<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Queued::Client(o) => o.is_empty(),
            Queued::Upstream(b) => b.is_empty(),
        }
    }

    fn move_into(self, sending: &mut crate::proxy::out::Out) {
        match self {
            Queued::Client(o) => sending.take_from(o),
            Queued::Upstream(b) => sending.take_from_buf(b),
        }
    }
}
const TICK: Duration = Duration::from_millis(100);

struct Client {
    io: Io,
    conn: Conn,
    link: Link,
    /// Listed in `Shard::dirty` for this turn's flush.
    dirty: bool,
}

struct Upstream {
    io: Io,
    key: UpstreamKey,
    /// A FIN is owed once the bytes queued are sent (a tunnel's client closed its side).
    shut_write: bool,
    owner: Option<usize>,
    connected: bool,
    /// Read by the kernel while the connect is in flight.
    _addr: Box<SockAddr>,
}

pub struct Shard {
    // The ring is declared first so it is torn down before the memory it used.
    ring: IoUring,
    bufs: BufRing,
    files: FixedFiles,
    id: usize,
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    /// None once the node drains.
    listener: Option<std::net::TcpListener>,
    accept_armed: bool,
    wake_fd: RawFd,
    wake_buf: Box<[u8; 8]>,
    clients: Slab<Client>,
    upstreams: Slab<Upstream>,
    lookups: Lookups,
    date: DateCache,
    stats_logged: Instant,
    cqes: Vec<(u64, i32, u32)>,
    dirty: Vec<usize>,
    generations: Generations,
    admission: Admission,
    control: ShardControl,
    /// The kernel ends a multishot receive at a byte cap (see `probe`).
    capped_recv: bool,
}

impl Shard {
    /// Builds the ring on the calling thread: a single-issuer ring belongs to it.
    /// `first_generation` starts the sockets' generation counter (0 in service; tests
    /// start it just below the wrap).
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        stats: Arc<Stats>,
        listener: std::net::TcpListener,
        node: Node,
        mut control: ShardControl,
        first_generation: u32,
    ) -> std::io::Result<Shard> {
        let ring = probe::build_ring(cfg.uring.entries)?;
        let bufs = BufRing::new(
            &ring,
            cfg.uring.buffers,
            cfg.uring.buffer_bytes,
            BUFFER_GROUP,
        )?;
        let files = FixedFiles::new(&ring, cfg.uring.fixed_files);
        // SAFETY: eventfd returns a new descriptor or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nobody else owns.
        let wake = Arc::new(EventFd(unsafe { OwnedFd::from_raw_fd(efd) }));
        let log = control.take_access_log(&stats);
        let admission = Admission::new(
            id,
            cfg.clone(),
            stats.clone(),
            node.connections.clone(),
            log,
        );
        Ok(Shard {
            ring,
            bufs,
            files,
            id,
            stats: stats.clone(),
            listener: Some(listener),
            accept_armed: false,
            wake_fd: wake.0.as_raw_fd(),
            wake_buf: Box::new([0; 8]),
            clients: Slab::new(),
            upstreams: Slab::new(),
            lookups: Lookups::new(&cfg, node, wake),
            date: DateCache::default(),
            stats_logged: Instant::now(),
            cqes: Vec::with_capacity(1024),
            dirty: Vec::with_capacity(1024),
            generations: Generations::starting_at(first_generation),
            capped_recv: probe::capped_multishot_works(),
            admission,
            control,
            cfg,
        })
    }

    /// Runs until the node has drained and the last client is gone, or the ring fails.
    pub fn run(mut self) -> std::io::Result<()> {
        self.arm_accept();
        self.arm_wake();
        let mut last_tick = Instant::now();
        let ts = Timespec::from(TICK);
        let coalesce =
            self.cfg.uring.min_wait_us > 0 && self.ring.params().is_feature_min_timeout();
        let mut last_batch = 1;
        loop {
            let mut args = SubmitArgs::new().timespec(&ts);
            let mut want = 1;
            if coalesce {
                // Wait for as many completions as the last turn brought (up to the
                // batch): under load that saves wake-ups; a lone client, whose turns
                // bring one completion each, is woken at once instead of waiting
                // min_wait_us on every turn.
                want = last_batch.clamp(1, self.cfg.uring.wait_batch as usize);
                if want > 1 {
                    args = args.min_wait_usec(self.cfg.uring.min_wait_us);
                }
            }
            if let Err(e) = self.ring.submitter().submit_with_args(want, &args) {
                let transient = [libc::ETIME, libc::EINTR, libc::EBUSY, libc::EAGAIN];
                if !e.raw_os_error().is_some_and(|c| transient.contains(&c)) {
                    self.control.stopped();
                    return Err(e);
                }
            }
            let now = Instant::now();
            self.date.refresh(now);
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            last_batch = cqes.len();
            for &(data, res, flags) in &cqes {
                self.complete(data, res, flags, now);
            }
            cqes.clear();
            self.cqes = cqes;
            if now.saturating_duration_since(last_tick) >= TICK {
                last_tick = now;
                self.tick(now);
                if self.control.draining() && self.clients.is_empty() {
                    self.control.stopped();
                    return Ok(());
                }
            }
            self.flush_dirty();
            self.control.turned(now);
        }
    }

    // ---- submission ------------------------------------------------------------------

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry points at memory owned by a slot (or the shard) that
            // outlives the operation: slots are freed only when `ops` is back to zero.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(shard = self.id, "io_uring submit failed: {e}");
                return;
            }
        }
    }

    fn arm_accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        let e = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(token(Op::Accept, 0, 0));
        self.push(e);
        self.accept_armed = true;
    }

    fn arm_wake(&mut self) {
        let e = opcode::Read::new(Fd(self.wake_fd), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(token(Op::Wake, 0, 0));
        self.push(e);
    }

    /// Arms a receive; a multishot one ends after `cap` bytes where the kernel can.
    fn arm_recv(&mut self, op: Op, index: usize, cap: Option<u32>) {
        let buf_bytes = self.bufs.buf_bytes() as u32;
        let io = match op {
            Op::ClientRecv => self.clients.get_mut(index).map(|c| &mut c.io),
            _ => self.upstreams.get_mut(index).map(|u| &mut u.io),
        };
        let Some(io) = io else { return };
        if io.recv_armed || io.eof || io.failed || io.closing {
            return;
        }
        io.recv_armed = true;
        io.cancel_sent = false;
        io.ops += 1;
        let generation = io.generation;
        let e = if io.throttled {
            on_socket!(io, |t| opcode::Recv::new(
                t,
                std::ptr::null_mut(),
                buf_bytes
            )
            .buf_group(BUFFER_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT))
        } else {
            let e = on_socket!(io, |t| opcode::RecvMulti::new(t, BUFFER_GROUP).build());
            match cap {
                Some(bytes) if self.capped_recv => io::with_total_cap(e, bytes.max(buf_bytes)),
                _ => e,
            }
        };
        self.push(e.user_data(token(op, index, generation)));
    }

    fn cancel_recv(&mut self, op: Op, index: usize) {
        let io = match op {
            Op::ClientRecv => self.clients.get_mut(index).map(|c| &mut c.io),
            _ => self.upstreams.get_mut(index).map(|u| &mut u.io),
        };
        let Some(io) = io else { return };
        if !io.recv_armed || io.cancel_sent {
            return;
        }
        io.cancel_sent = true;
        io.throttled = true;
        let e = opcode::AsyncCancel::new(token(op, index, io.generation))
            .build()
            .user_data(token(Op::Cancel, 0, 0));
        self.push(e);
    }

    /// Cancels every operation on a socket (a receive armed, a send stuck on a peer that
    /// stopped reading, a connect), so its slot can be freed when they have completed.
    fn cancel_all(&mut self, target: types::CancelBuilder) {
        let e = opcode::AsyncCancel2::new(target.all())
            .build()
            .user_data(token(Op::Cancel, 0, 0));
        self.push(e);
    }

    /// Starts a send of everything the connection has queued for `op`'s side.
    fn start_send(&mut self, op: Op, ci: usize) {
        let Some(c) = self.clients.get_mut(ci) else {
            return;
        };
        let (io, out) = match op {
            Op::ClientSend => (&mut c.io, Queued::Client(c.conn.client_out())),
            _ => {
                let Some(up) = c.link.upstream.and_then(|ui| self.upstreams.get_mut(ui)) else {
                    return;
                };
                if !up.connected {
                    return;
                }
                (&mut up.io, Queued::Upstream(c.conn.upstream_out()))
            }
        };
        if io.send_inflight || io.failed || (io.unsent() == 0 && out.is_empty()) {
            return;
        }
        out.move_into(&mut io.sending);
        let index = if op == Op::ClientSend {
            ci
        } else {
            c.link.upstream.unwrap_or(0)
        };
        let e = io.send_entry().user_data(token(op, index, io.generation));
        io.send_inflight = true;
        io.ops += 1;
        self.push(e);
    }

    // ---- completions -----------------------------------------------------------------

    fn complete(&mut self, data: u64, res: i32, flags: u32, now: Instant) {
        let Some((op, index, generation)) = untoken(data) else {
            return;
        };
        match op {
            Op::Accept => self.on_accept(res, flags, now),
            Op::Wake => {
                upstreams::take_wakeups(self, now);
                self.arm_wake();
            }
            Op::Cancel => {}
            Op::ClientRecv => self.on_client_recv(index, generation, res, flags, now),
            Op::ClientSend => self.on_client_send(index, generation, res, now),
            Op::UpConnect => self.on_connect(index, generation, res, now),
            Op::UpRecv => self.on_upstream_recv(index, generation, res, flags, now),
            Op::UpSend => self.on_upstream_send(index, generation, res, now),
        }
    }

    fn on_accept(&mut self, res: i32, flags: u32, now: Instant) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor that we now own.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            self.admit(fd, now);
        } else if res != -libc::ECANCELED {
            tracing::warn!(
                shard = self.id,
                "accept failed: {}",
                std::io::Error::from_raw_os_error(-res)
            );
        }
        if !self.accept_armed && res != -libc::EMFILE && res != -libc::ENFILE {
            self.arm_accept(); // on EMFILE the next tick retries
        }
    }

    fn admit(&mut self, fd: OwnedFd, now: Instant) {
        let peer = SockRef::from(&fd)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        let counted = match self.admission.screen(self.clients.len(), peer) {
            Ok(counted) => counted,
            Err(refusal) => {
                // SAFETY: a non-blocking send of a static buffer on a socket we own.
                unsafe {
                    libc::send(
                        fd.as_raw_fd(),
                        refusal.as_ptr().cast(),
                        refusal.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                return;
            }
        };
        let generation = self.generations.next();
        let (conn, link) = self
            .admission
            .admit(peer, counted, &self.lookups, &self.date, now);
        let mut io = Io::new(fd, generation);
        io.slot = self.files.register(&self.ring, io.raw());
        let ci = self.clients.insert(Client {
            io,
            conn,
            link,
            dirty: false,
        });
        self.service(ci, now);
    }

    fn on_client_recv(&mut self, ci: usize, generation: u32, res: i32, flags: u32, now: Instant) {
        let bid = cqueue::buffer_select(flags);
        let Some(c) = self
            .clients
            .get_mut(ci)
            .filter(|c| c.io.generation == generation)
        else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        };
        if !cqueue::more(flags) {
            c.io.recv_armed = false;
            c.io.ops -= 1;
        }
        let now_ = self.date.now(now);
        match (res, bid) {
            (n, Some(b)) if n > 0 => {
                if !c.io.closing {
                    c.conn.on_client_data(self.bufs.data(b, n as usize), now_);
                }
                self.bufs.recycle(b);
            }
            (0, _) => {
                c.io.eof = true;
                c.conn.on_client_eof(now_);
            }
            (n, _) if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
            _ => c.io.failed = true,
        }
        self.service(ci, now);
    }

    fn on_client_send(&mut self, ci: usize, generation: u32, res: i32, now: Instant) {
        let Some(c) = self
            .clients
            .get_mut(ci)
            .filter(|c| c.io.generation == generation)
        else {
            return;
        };
        c.io.send_inflight = false;
        c.io.ops -= 1;
        if res > 0 {
            c.io.sending.consume(res as usize);
            c.conn.on_client_written(self.date.now(now));
        } else if res < 0 {
            c.io.failed = true;
        }
        self.service(ci, now);
    }

    // ---- keeping a connection moving -------------------------------------------------

    /// After any event: carry out actions, arm or cancel receives, queue for the flush.
    fn service(&mut self, ci: usize, now: Instant) {
        upstreams::apply_actions(self, ci, now);
        let Some(c) = self.clients.get_mut(ci) else {
            return;
        };
        if c.io.closing {
            self.maybe_free_client(ci);
            return;
        }
        // A multishot receive keeps delivering after the high-water mark; stopping it
        // costs a cancel and a re-arm, so it is stopped only at four times the mark
        // (the ring's buffers bound what arrives meanwhile).
        let hard = 4 * self.cfg.limits.io_buffer_bytes;
        let client_read = if c.conn.wants_client_read() {
            Some(true)
        } else if c.conn.client_reads_over() || c.conn.client_in_len() >= hard {
            Some(false)
        } else {
            None
        };
        // What the client has not taken yet, here and in the send in flight: an origin
        // is read at most twice the mark ahead of a slow client (the receive ends
        // itself there, where the kernel caps multishot receives).
        let backlog = c.conn.client_out_len() + c.io.unsent();
        let ahead = 2 * self.cfg.limits.io_buffer_bytes;
        let room = u32::try_from(ahead.saturating_sub(backlog)).unwrap_or(u32::MAX);
        let up_read = if c.conn.wants_upstream_read() && room > 0 {
            Some(true)
        } else if room == 0 || c.link.upstream.is_none() {
            Some(false)
        } else {
            None
        };
        let up = c.link.upstream;
        match client_read {
            Some(true) => self.arm_recv(Op::ClientRecv, ci, None),
            Some(false) => self.cancel_recv(Op::ClientRecv, ci),
            None => {}
        }
        if let Some(ui) = up
            && self.upstreams.get(ui).is_some_and(|u| u.connected)
        {
            match up_read {
                Some(true) => self.arm_recv(Op::UpRecv, ui, Some(room)),
                Some(false) => self.cancel_recv(Op::UpRecv, ui),
                None => {}
            }
        }
        // Sends wait for the end of the batch: all the data this turn's completions
        // produced leaves in one send per socket.
        if let Some(c) = self.clients.get_mut(ci)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(ci);
        }
    }

    /// Starts the sends of every connection touched this turn, and closes the finished.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &ci in &dirty {
            let Some(c) = self.clients.get_mut(ci) else {
                continue;
            };
            c.dirty = false;
            if c.io.closing {
                continue;
            }
            if c.link.upstream.is_some() {
                self.start_send(Op::UpSend, ci);
            }
            self.start_send(Op::ClientSend, ci);
            let Some(c) = self.clients.get(ci) else {
                continue;
            };
            let flushed = !c.io.send_inflight && c.io.unsent() == 0 && c.conn.client_out_len() == 0;
            if c.io.failed || (c.conn.is_finished() && (flushed || c.conn.wants_reset())) {
                self.close_client(ci);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn close_client(&mut self, ci: usize) {
        let Some(c) = self.clients.get_mut(ci) else {
            return;
        };
        if c.io.closing {
            return;
        }
        c.io.closing = true;
        if let Some(ui) = clients::closing(&c.conn, &mut c.link, SockRef::from(&c.io.fd)) {
            self.close_upstream(ui);
        }
        let target = on_socket!(self.clients[ci].io, |t| types::CancelBuilder::fd(t));
        self.cancel_all(target);
        self.maybe_free_client(ci);
    }

    fn maybe_free_client(&mut self, ci: usize) {
        if self
            .clients
            .get(ci)
            .is_some_and(|c| c.io.closing && c.io.ops == 0)
        {
            let c = self.clients.remove(ci);
            if let Some(slot) = c.io.slot {
                self.files.release(&self.ring, slot);
            }
        }
    }

    // ---- time ------------------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        self.admission.tick_local();
        if let Some(every) = self.cfg.stats_interval
            && now.saturating_duration_since(self.stats_logged) >= every
        {
            self.stats_logged = now;
            self.stats.log(
                self.id,
                "io_uring",
                (self.clients.len(), self.upstreams.len()),
                self.lookups.held.used(),
            );
            if let Some(c) = self.cfg.cluster.as_ref() {
                self.stats.log_cluster(self.id, c, now);
            }
        }
        if !self.accept_armed {
            self.arm_accept();
        }
        upstreams::tick(self, now);
    }

    /// Cancels the multishot accept, takes the clients already in the listen backlog
    /// (they connected before the stop), and closes this shard's listener.
    fn stop_accepting_now(&mut self, now: Instant) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        // Clients admitted from here on (the backlog below, an accept completing after
        // the cancel) get one answer, then the close.
        self.admission.drain();
        let e = opcode::AsyncCancel::new(token(Op::Accept, 0, 0))
            .build()
            .user_data(token(Op::Cancel, 0, 0));
        self.push(e);
        loop {
            // SAFETY: a non-blocking accept on a listener we own; a success is a new
            // descriptor that we then own.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let err = std::io::Error::last_os_error().raw_os_error();
                if matches!(err, Some(libc::ECONNABORTED | libc::EINTR)) {
                    continue; // that client gave up; others may wait behind it
                }
                break;
            }
            // SAFETY: accept4 returned a descriptor nobody else owns.
            self.admit(unsafe { OwnedFd::from_raw_fd(fd) }, now);
        }
        // The ring still refers to the listener until the cancel completes; closing
        // our descriptor is safe meanwhile (the kernel holds its own reference).
        drop(listener);
    }
}

#[cfg(test)]
mod tests;
