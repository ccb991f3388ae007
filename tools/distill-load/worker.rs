//! One load thread: its own epoll loop (mio) over its share of the connections.
//!
//! Closed loop: each connection keeps `depth` requests in flight and sends the next as
//! soon as a response completes; latency runs from the send. Open loop: requests fall due
//! on a fixed schedule whether or not a connection is free, and latency runs from the
//! time each was *due* — so a stalled server is charged for every request it delayed,
//! not just the one it stalled on (coordinated omission).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distilld::http::body::{BodyDecoder, Framing};
use distilld::http::headers::{chunked_is_last, parse_content_length};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::plan::{Chooser, Targets};
use crate::report::Tally;

const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Open loop: requests due but waiting for a connection, at most.
const QUEUE_MAX: usize = 1 << 20;
const READ_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub enum LoopKind {
    Closed,
    /// One request every `interval` on this thread.
    Open {
        interval: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
pub enum End {
    After(Duration),
    Count(u64),
}

pub struct Plan {
    pub targets: Arc<Targets>,
    pub connections: usize,
    pub depth: usize,
    pub keep_alive: bool,
    pub kind: LoopKind,
    pub start: Instant,
    pub warmup: Duration,
    pub end: End,
    pub timeout: Duration,
    pub zipf: Option<f64>,
    pub seed: u64,
}

/// Figures the main thread shows while the run goes on.
#[derive(Default)]
pub struct Live {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub p99_us: AtomicU64,
}

struct Inflight {
    due: Instant,
    sent: Instant,
    counted: bool,
}

struct Resp {
    dec: BodyDecoder,
    status: u16,
    body_bytes: u64,
    original: Option<u64>,
    close: bool,
}

struct Conn {
    stream: Option<TcpStream>,
    connected: bool,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    inflight: VecDeque<Inflight>,
    resp: Option<Resp>,
    readable: bool,
    writable: bool,
    hup: bool,
    retry_at: Option<Instant>,
    since: Instant,
}

pub struct Worker {
    plan: Plan,
    poll: Poll,
    conns: Vec<Conn>,
    chooser: Chooser,
    tally: Tally,
    queue: VecDeque<Instant>,
    idle: VecDeque<usize>,
    scratch: Vec<u8>,
    measure_from: Instant,
    finished: u64,
    sent: u64,
}

impl Worker {
    pub fn new(plan: Plan) -> std::io::Result<Worker> {
        let chooser = Chooser::new(plan.targets.requests.len(), plan.zipf, plan.seed);
        let measure_from = plan.start + plan.warmup;
        let mut w = Worker {
            poll: Poll::new()?,
            conns: Vec::with_capacity(plan.connections),
            chooser,
            tally: Tally::default(),
            queue: VecDeque::new(),
            idle: VecDeque::new(),
            scratch: vec![0; READ_BYTES],
            measure_from,
            finished: 0,
            sent: 0,
            plan,
        };
        for i in 0..w.plan.connections {
            w.conns.push(Conn {
                stream: None,
                connected: false,
                out: Vec::new(),
                out_pos: 0,
                inbuf: Vec::new(),
                inflight: VecDeque::new(),
                resp: None,
                readable: false,
                writable: false,
                hup: false,
                retry_at: None,
                since: Instant::now(),
            });
            w.connect(i, Instant::now());
        }
        Ok(w)
    }

    pub fn run(mut self, live: &Live) -> Tally {
        // Connections open before the start; requests go out from the start on.
        std::thread::sleep(self.plan.start.saturating_duration_since(Instant::now()));
        let mut events = Events::with_capacity(1024);
        let mut next_due = self.plan.start;
        let mut last_check = Instant::now();
        loop {
            let now = Instant::now();
            if self.is_over(now) {
                break;
            }
            if let LoopKind::Open { interval } = self.plan.kind {
                while next_due <= now {
                    if self.queue.len() < QUEUE_MAX {
                        self.queue.push_back(next_due);
                    } else {
                        self.tally.unsent += 1;
                    }
                    next_due += interval;
                }
                self.dispatch_queue(now);
            }
            let timeout = match self.plan.kind {
                LoopKind::Closed => CHECK_EVERY,
                // epoll waits in whole milliseconds: closer than that to the next due
                // time, poll without waiting so requests leave on schedule.
                LoopKind::Open { .. } => match next_due.saturating_duration_since(now) {
                    d if d < Duration::from_millis(1) => Duration::ZERO,
                    d => (d - Duration::from_millis(1)).min(CHECK_EVERY),
                },
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                break;
            }
            for event in events.iter() {
                let i = event.token().0;
                if let Some(c) = self.conns.get_mut(i) {
                    c.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
                    c.writable |=
                        event.is_writable() || event.is_write_closed() || event.is_error();
                    c.hup |= event.is_read_closed() || event.is_error();
                    self.pump(i);
                }
            }
            let now = Instant::now();
            if now.saturating_duration_since(last_check) >= CHECK_EVERY {
                last_check = now;
                self.check(now, live);
            }
        }
        self.tally.unsent += self.queue.len() as u64;
        self.tally
    }

    fn is_over(&self, now: Instant) -> bool {
        match self.plan.end {
            End::After(d) => now >= self.measure_from + d,
            End::Count(n) => self.finished >= n,
        }
    }

    fn may_send(&self) -> bool {
        match self.plan.end {
            End::Count(n) => self.sent < n,
            End::After(_) => true,
        }
    }

    // ---- connections -----------------------------------------------------------------

    fn connect(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        if let Some(mut old) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut old);
        }
        c.connected = false;
        c.out.clear();
        c.out_pos = 0;
        c.inbuf.clear();
        c.inflight.clear();
        c.resp = None;
        c.readable = false;
        c.writable = false;
        c.hup = false;
        c.retry_at = None;
        c.since = now;
        let registered = TcpStream::connect(self.plan.targets.connect_to).and_then(|mut s| {
            self.poll.registry().register(
                &mut s,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match registered {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                c.stream = Some(s);
            }
            Err(_) => {
                self.tally.errors.connect += 1;
                c.retry_at = Some(now + CHECK_EVERY);
            }
        }
    }

    /// Sends requests on connection `i` until it has `depth` in flight.
    fn fill(&mut self, i: usize, now: Instant) {
        while self.conns[i].connected
            && self.conns[i].inflight.len() < self.plan.depth
            && self.may_send()
        {
            let due = match self.plan.kind {
                LoopKind::Closed => now,
                LoopKind::Open { .. } => match self.queue.pop_front() {
                    Some(due) => due,
                    None => {
                        self.idle.push_back(i);
                        return;
                    }
                },
            };
            let req = &self.plan.targets.requests[self.chooser.next()];
            let c = &mut self.conns[i];
            c.out.extend_from_slice(req);
            c.inflight.push_back(Inflight {
                due,
                sent: now,
                counted: due >= self.measure_from,
            });
            self.sent += 1;
        }
    }

    fn dispatch_queue(&mut self, now: Instant) {
        while !self.queue.is_empty() {
            let Some(i) = self.idle.pop_front() else {
                return;
            };
            if self.conns[i].inflight.len() < self.plan.depth {
                self.fill(i, now);
                self.pump(i);
            }
        }
    }

    fn pump(&mut self, i: usize) {
        let now = Instant::now();
        if !self.conns[i].connected {
            if !self.finish_connect(i, now) {
                return;
            }
            self.fill(i, now);
        }
        loop {
            let mut progress = self.write(i, now);
            progress |= self.read(i);
            if !progress {
                return;
            }
        }
    }

    fn finish_connect(&mut self, i: usize, now: Instant) -> bool {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_ref() else {
            return false;
        };
        if !c.writable {
            return false;
        }
        let ok = matches!(s.take_error(), Ok(None)) && s.peer_addr().is_ok();
        if ok {
            c.connected = true;
            self.tally.connects += 1;
            return true;
        }
        if matches!(s.peer_addr(), Err(e) if e.kind() == ErrorKind::NotConnected)
            && matches!(s.take_error(), Ok(None))
        {
            c.writable = false;
            return false;
        }
        self.tally.errors.connect += 1;
        if let Some(mut old) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut old);
        }
        c.retry_at = Some(now + CHECK_EVERY);
        false
    }

    fn write(&mut self, i: usize, now: Instant) -> bool {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else {
            return false;
        };
        if !c.writable || c.out_pos >= c.out.len() {
            return false;
        }
        match s.write(&c.out[c.out_pos..]) {
            Ok(n) => {
                c.out_pos += n;
                if c.out_pos == c.out.len() {
                    c.out.clear();
                    c.out_pos = 0;
                }
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.writable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                self.fail(i, now);
                false
            }
        }
    }

    fn read(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else {
            return false;
        };
        if !c.readable {
            return false;
        }
        match s.read(&mut self.scratch) {
            Ok(0) => {
                c.readable = false;
                self.on_eof(i);
                false
            }
            Ok(n) => {
                c.readable = c.hup || n == self.scratch.len();
                self.tally_bytes(n);
                let data = std::mem::take(&mut self.scratch);
                self.on_data(i, &data[..n]);
                self.scratch = data;
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.readable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                self.fail(i, Instant::now());
                false
            }
        }
    }

    fn tally_bytes(&mut self, n: usize) {
        if Instant::now() >= self.measure_from {
            self.tally.bytes += n as u64;
        }
    }

    // ---- responses -------------------------------------------------------------------

    fn on_data(&mut self, i: usize, data: &[u8]) {
        let mut pending = std::mem::take(&mut self.conns[i].inbuf);
        let buf: &[u8] = if pending.is_empty() {
            data
        } else {
            pending.extend_from_slice(data);
            &pending
        };
        let mut at = 0;
        while at < buf.len() {
            if self.conns[i].resp.is_none() {
                match self.parse_head(i, &buf[at..]) {
                    Ok(Some(n)) => at += n,
                    Ok(None) => break,
                    Err(()) => {
                        self.tally.errors.parse += self.counted_inflight(i);
                        self.finished += self.conns[i].inflight.len() as u64;
                        self.connect(i, Instant::now());
                        return;
                    }
                }
                if self.conns[i].resp.is_none() {
                    continue; // an informational response
                }
            }
            let Some(resp) = self.conns[i].resp.as_mut() else {
                break;
            };
            match resp.dec.decode(&buf[at..]) {
                Ok((n, piece)) => {
                    resp.body_bytes += piece.len() as u64;
                    at += n;
                    if n == 0 && !resp.dec.is_done() {
                        break;
                    }
                }
                Err(_) => {
                    self.tally.errors.parse += self.counted_inflight(i);
                    self.connect(i, Instant::now());
                    return;
                }
            }
            if self.conns[i].resp.as_ref().is_some_and(|r| r.dec.is_done()) && !self.complete(i) {
                return; // the connection was replaced
            }
        }
        self.conns[i].inbuf = buf[at..].to_vec();
    }

    /// Parses a response head; `Ok(Some(n))` consumed `n` bytes.
    fn parse_head(&mut self, i: usize, buf: &[u8]) -> Result<Option<usize>, ()> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        let n = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > 1 << 20 {
                    Err(())
                } else {
                    Ok(None)
                };
            }
            Err(_) => return Err(()),
        };
        let status = r.code.unwrap_or(0);
        if (100..200).contains(&status) {
            return Ok(Some(n));
        }
        let mut length = None;
        let mut chunked = None;
        let mut close = r.version == Some(0);
        let mut original = None;
        let mut cache = None;
        for h in r.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(parse_content_length(h.value).ok_or(())?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = Some(chunked_is_last(h.value));
            } else if name.eq_ignore_ascii_case("connection") {
                let v = h.value.to_ascii_lowercase();
                close |= v.windows(5).any(|w| w == b"close");
                if r.version == Some(0) && v.windows(10).any(|w| w == b"keep-alive") {
                    close = false;
                }
            } else if name.eq_ignore_ascii_case("cache-status") && cache.is_none() {
                // The first member (of the first field line) is the cache nearest the
                // origin: through a cluster node, the owner's; the node that forwarded
                // adds its own member after it.
                cache = Some(is_cache_hit(h.value));
            } else if name.eq_ignore_ascii_case(crate::DISTILL_HEADER) {
                original = original_bytes(h.value);
            }
        }
        let no_body = self.plan.targets.head_only || status == 204 || status == 304;
        let framing = match (no_body, chunked, length) {
            (true, _, _) => Framing::None,
            (false, Some(true), _) => Framing::Chunked,
            (false, Some(false), _) | (false, None, None) => Framing::Close,
            (false, None, Some(n)) => Framing::Length(n),
        };
        if self.conns[i].inflight.front().is_some_and(|f| f.counted)
            && let Some(hit) = cache
        {
            self.tally.cache_lookups += 1;
            self.tally.cache_hits += u64::from(hit);
        }
        self.conns[i].resp = Some(Resp {
            dec: BodyDecoder::new(framing),
            status,
            body_bytes: 0,
            original,
            close: close || framing == Framing::Close,
        });
        Ok(Some(n))
    }

    /// Records a finished response and keeps the connection busy. Returns false when
    /// the connection was closed and replaced.
    fn complete(&mut self, i: usize) -> bool {
        let now = Instant::now();
        let c = &mut self.conns[i];
        let Some(resp) = c.resp.take() else {
            return true;
        };
        let Some(req) = c.inflight.pop_front() else {
            return true;
        };
        self.finished += 1;
        if req.counted {
            let us = now.saturating_duration_since(req.due).as_micros() as u64;
            let _ = self.tally.latency_us.record(us.max(1));
            self.tally.completed += 1;
            if let Some(slot) = self.tally.statuses.get_mut(resp.status as usize) {
                *slot += 1;
            }
            if let Some(orig) = resp.original {
                self.tally.distilled += 1;
                self.tally.original_bytes += orig;
                self.tally.distilled_bytes += resp.body_bytes;
            }
        }
        if resp.close || !self.plan.keep_alive {
            // requests pipelined behind a closing response will not be answered
            self.tally.errors.read += self.counted_inflight(i);
            self.finished += self.conns[i].inflight.len() as u64;
            self.connect(i, now);
            return false;
        }
        self.fill(i, now);
        true
    }

    fn on_eof(&mut self, i: usize) {
        let done = self.conns[i].resp.as_mut().is_some_and(|r| r.dec.on_eof());
        if done {
            self.complete(i);
        }
        if !self.conns[i].inflight.is_empty() {
            self.tally.errors.read += self.counted_inflight(i);
            self.finished += self.conns[i].inflight.len() as u64;
        }
        if self.conns[i].stream.is_some() {
            self.connect(i, Instant::now());
        }
    }

    fn fail(&mut self, i: usize, now: Instant) {
        self.tally.errors.read += self.counted_inflight(i);
        self.finished += self.conns[i].inflight.len() as u64;
        self.connect(i, now);
    }

    fn counted_inflight(&self, i: usize) -> u64 {
        self.conns[i].inflight.iter().filter(|r| r.counted).count() as u64
    }

    // ---- time ------------------------------------------------------------------------

    fn check(&mut self, now: Instant, live: &Live) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.retry_at.is_some_and(|t| now >= t) {
                self.connect(i, now);
                continue;
            }
            let stuck = c
                .inflight
                .front()
                .is_some_and(|r| now.saturating_duration_since(r.sent) >= self.plan.timeout);
            let connect_stuck = c.stream.is_some()
                && !c.connected
                && now.saturating_duration_since(c.since) >= self.plan.timeout;
            if stuck {
                self.tally.errors.timeout += self.counted_inflight(i);
                self.finished += self.conns[i].inflight.len() as u64;
                self.connect(i, now);
            } else if connect_stuck {
                self.tally.errors.connect += 1;
                self.connect(i, now);
            }
        }
        live.completed
            .store(self.tally.completed, Ordering::Relaxed);
        live.errors
            .store(self.tally.errors.total(), Ordering::Relaxed);
        live.p99_us.store(
            self.tally.latency_us.value_at_quantile(0.99),
            Ordering::Relaxed,
        );
    }
}

/// `Cache-Status: distilld; hit` (RFC 9211): a hit when the first cache says so.
pub fn is_cache_hit(value: &[u8]) -> bool {
    let first = value.split(|&b| b == b',').next().unwrap_or(value);
    first
        .split(|&b| b == b';')
        .skip(1)
        .any(|p| distilld::http::headers::trim(p).eq_ignore_ascii_case(b"hit"))
}

/// `original-bytes=N` in the distillation header.
pub fn original_bytes(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("original-bytes"))
        .and_then(|(_, v)| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::AtomicBool;

    /// A server that answers at once, except that one response is held for 1 s.
    fn stalling_server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (stalled, served) = (stalled.clone(), served.clone());
                std::thread::spawn(move || serve(stream, &stalled, &served));
            }
        });
        addr
    }

    fn serve(mut s: std::net::TcpStream, stalled: &AtomicBool, served: &AtomicU64) {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                if served.fetch_add(1, Ordering::Relaxed) == 300
                    && !stalled.swap(true, Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_secs(1));
                }
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    fn plan(addr: std::net::SocketAddr, kind: LoopKind) -> Plan {
        Plan {
            targets: Arc::new(Targets {
                requests: vec![b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()],
                head_only: false,
                connect_to: addr,
            }),
            connections: 1,
            depth: 1,
            keep_alive: true,
            kind,
            start: Instant::now() + Duration::from_millis(50),
            warmup: Duration::ZERO,
            end: End::After(Duration::from_secs(3)),
            timeout: Duration::from_secs(5),
            zipf: None,
            seed: 1,
        }
    }

    #[test]
    fn open_loop_charges_a_stall_to_every_delayed_request() {
        let open = LoopKind::Open {
            interval: Duration::from_millis(1),
        };
        let t = Worker::new(plan(stalling_server(), open))
            .unwrap()
            .run(&Live::default());
        let p999 = t.latency_us.value_at_quantile(0.999);
        assert!(t.completed > 2500, "{} completed", t.completed);
        // ~1000 requests fell due during the stall: far more than 0.1% of them waited long
        assert!(
            p999 >= 500_000,
            "open-loop p99.9 {p999} us hides the 1 s stall"
        );
        assert!(
            t.latency_us.value_at_quantile(0.75) >= 1_000,
            "a quarter of the run queued behind it"
        );
    }

    #[test]
    fn closed_loop_sees_the_stall_only_once() {
        let t = Worker::new(plan(stalling_server(), LoopKind::Closed))
            .unwrap()
            .run(&Live::default());
        assert!(t.latency_us.max() >= 900_000, "the stalled request itself");
        assert!(
            t.latency_us.value_at_quantile(0.999) < 500_000,
            "coordinated omission hides the rest"
        );
    }

    #[test]
    fn cache_status_and_distill_header() {
        assert!(is_cache_hit(b"distilld; hit"));
        assert!(is_cache_hit(b"distilld; ttl=30; HIT"));
        assert!(!is_cache_hit(b"distilld; fwd=miss; stored"));
        assert!(!is_cache_hit(b"other; fwd=miss, distilld; hit"));
        assert_eq!(
            original_bytes(b"original-bytes=1234; profile=medium"),
            Some(1234)
        );
        assert_eq!(original_bytes(b"profile=medium"), None);
    }
}
