//! One client connection and the exchange it is in, as a sans-IO state machine.
//!
//! A driver (`shard/epoll.rs` or `shard/uring/`) feeds it events — bytes from the client or the
//! origin, end of stream, an upstream attached or failed, a clock tick — and carries out
//! what it asks: bytes to write (`client_out`, `upstream_out`) and `Action`s for the
//! upstream connection. Time comes in as `Now`; no socket, clock or thread is touched
//! here, so every path can be driven byte by byte in a test. LIFECYCLE.md walks it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

use crate::cache::Store;
use crate::cache::flight::Flight;
use crate::config::Config;
use crate::http::HttpError;
use crate::http::body::{BodyDecoder, BodyEncoder};
use crate::http::request::{HeadLimits, RequestFraming, RequestHead, parse_request};
use crate::http::response::{ResponseHead, parse_response};
use crate::http::target::Authority;

use super::buf::Buf;
use super::heads::Validators;
use super::heads::{DownFraming, Identity, is_loop, write_client_response, write_upstream_request};
use super::held::HeldBudget;
use super::local::{HEALTH_BODY, LocalResponse, TEXT_PLAIN, error_body};
use super::out::Out;
use super::route::{Decision, route};
use super::stats::Stats;
use crate::http::target::Destination;
use caching::{CacheCtx, ResponsePlan};
pub use distilling::DistillJob;
use distilling::{DistillCtx, JobInput};
use exchange::{Exchange, Fetch, Response, ResponseBody, Sink, Stage, Upstream};

mod caching;
mod distilling;
mod exchange;
mod next;
mod stored;

/// The time of an event, as the driver read it once for a batch of events.
#[derive(Debug, Clone, Copy)]
pub struct Now<'a> {
    pub instant: Instant,
    /// IMF-fixdate for Date fields, refreshed by the driver once a second.
    pub date: &'a [u8],
    /// The same moment as UNIX seconds (cache ages and freshness).
    pub unix_secs: u64,
}

/// What the connection asks of the driver about its upstream connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Attach a connection to `origin`: from the pool when `pooled_ok`, else fresh.
    /// Answered by `on_upstream_ready` or `on_upstream_failed`.
    Acquire { origin: Authority, pooled_ok: bool },
    /// The exchange is over and the upstream connection can be reused.
    Release,
    /// Close the upstream connection, or cancel its acquisition.
    CloseUpstream,
    /// Another request is fetching what this one needs: call `on_wait_over` with the
    /// ticket when its flight ends.
    AwaitFlight(FlightWait, Ticket),
    /// Run this distillation job on the pool, then call `on_wait_over` with the ticket.
    RunJob(DistillJob, Ticket),
}

/// Names one wait of one exchange, so a wake-up that arrives late (an abandoned flight,
/// an overdue job) is told apart from the one the connection waits for now.
pub type Ticket = u64;

/// A flight to wait on (compared by identity).
#[derive(Clone)]
pub struct FlightWait(pub Arc<Flight>);

impl PartialEq for FlightWait {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FlightWait {}

impl std::fmt::Debug for FlightWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlightWait({} waiting)", self.0.waiters())
    }
}

/// Why an upstream connection could not be had.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum UpstreamFailure {
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

pub struct Conn {
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    cache: Option<Arc<Store>>,
    /// The node's budget for held response bodies.
    held: Arc<HeldBudget>,
    peer: SocketAddr,
    /// The client address as written into X-Forwarded-For, formatted once.
    peer_ip: String,
    inbuf: Buf,
    out: Out,
    up_out: Buf,
    actions: VecDeque<Action>,
    ex: Option<Box<Exchange>>,
    /// The last wait's ticket.
    tickets: Ticket,
    /// No request after the current one: close once it is answered and flushed.
    no_more_requests: bool,
    /// Close now with a reset: what was sent must not pass for complete.
    reset: bool,
    client_eof: bool,
    head_started: Option<Instant>,
    last_client: Instant,
}

impl Conn {
    pub fn new(
        cfg: Arc<Config>,
        stats: Arc<Stats>,
        cache: Option<Arc<Store>>,
        held: Arc<HeldBudget>,
        peer: SocketAddr,
        now: Now<'_>,
    ) -> Conn {
        let cap = cfg.limits.io_buffer_bytes.min(16 * 1024);
        Conn {
            cfg,
            stats,
            cache,
            held,
            peer,
            peer_ip: peer.ip().to_string(),
            inbuf: Buf::with_capacity(cap),
            out: Out::with_capacity(cap),
            up_out: Buf::default(),
            actions: VecDeque::new(),
            ex: None,
            tickets: 0,
            no_more_requests: false,
            reset: false,
            client_eof: false,
            head_started: None,
            last_client: now.instant,
        }
    }

    // ---- what the driver reads -------------------------------------------------------

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn client_out(&mut self) -> &mut Out {
        &mut self.out
    }

    pub fn client_out_len(&self) -> usize {
        self.out.len()
    }

    pub fn upstream_out(&mut self) -> &mut Buf {
        &mut self.up_out
    }

    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    pub fn wants_client_read(&self) -> bool {
        !self.client_reads_over() && self.inbuf.len() < self.watermark()
    }

    /// Nothing more will ever be read from the client.
    pub fn client_reads_over(&self) -> bool {
        let closing = self.no_more_requests && self.ex.is_none();
        self.reset || self.client_eof || closing
    }

    /// Client bytes received and not yet consumed.
    pub fn client_in_len(&self) -> usize {
        self.inbuf.len()
    }

    pub fn wants_upstream_read(&self) -> bool {
        self.ex.as_ref().is_some_and(|ex| ex.is_attached()) && self.out.len() < self.watermark()
    }

    /// The client connection should be closed now.
    pub fn is_finished(&self) -> bool {
        self.reset || (self.no_more_requests && self.ex.is_none() && self.out.is_empty())
    }

    /// Close with a reset rather than a clean end of stream.
    pub fn wants_reset(&self) -> bool {
        self.reset
    }

    // ---- events from the client ------------------------------------------------------

    pub fn on_client_data(&mut self, data: &[u8], now: Now<'_>) {
        self.last_client = now.instant;
        self.inbuf.extend(data);
        self.advance(now);
    }

    pub fn on_client_eof(&mut self, now: Now<'_>) {
        self.client_eof = true;
        let body_unfinished = self.ex.as_ref().is_some_and(|ex| !ex.body.dec.is_done());
        if body_unfinished {
            // The request can never be completed: drop it and the origin connection.
            self.actions.push_back(Action::CloseUpstream);
            self.ex = None;
            self.reset = true;
            return;
        }
        self.advance(now);
    }

    pub fn on_client_written(&mut self, now: Now<'_>) {
        self.last_client = now.instant;
        if self.ex.is_none() && !self.inbuf.is_empty() && self.out.len() < self.watermark() {
            self.advance(now);
        }
    }

    // ---- events from the upstream side -----------------------------------------------

    pub fn on_upstream_ready(&mut self, reused: bool, now: Now<'_>) {
        let Some(fetch) = self.ex.as_mut().and_then(|ex| ex.fetch_mut()) else {
            self.actions.push_back(Action::CloseUpstream);
            return;
        };
        fetch.upstream = Upstream::Attached {
            reused,
            last_active: now.instant,
        };
        if reused {
            self.stats.upstream_reuses.incr();
        } else {
            self.stats.upstream_connects.incr();
        }
        self.up_out.clear();
        self.up_out.extend(&fetch.up_head);
        self.pump_request_body(now);
    }

    pub fn on_upstream_failed(&mut self, failure: UpstreamFailure, now: Now<'_>) {
        if self.ex.is_none() {
            return;
        }
        self.stats.upstream_errors.incr();
        tracing::warn!(client = %self.peer, "{failure}");
        self.fail_exchange(502, &failure.to_string(), now);
    }

    pub fn on_upstream_written(&mut self, now: Now<'_>) {
        if let Some(fetch) = self.ex.as_mut().and_then(|ex| ex.fetch_mut()) {
            fetch.touch(now.instant);
        }
        self.pump_request_body(now);
    }

    pub fn on_upstream_data(&mut self, data: &[u8], now: Now<'_>) {
        let Some(fetch) = self.ex.as_mut().and_then(|ex| ex.fetch_mut()) else {
            return;
        };
        fetch.touch(now.instant);
        match &mut fetch.response {
            Response::Body(_) => self.feed_body(data, now),
            Response::AwaitHead { buf } => {
                buf.extend_from_slice(data);
                self.parse_response_head(now);
            }
        }
    }

    /// The origin ended its stream (`error` = None) or the connection failed.
    pub fn on_upstream_closed(&mut self, error: Option<&str>, now: Now<'_>) {
        let Some(ex) = self.ex.as_mut() else {
            return;
        };
        let has_body = ex.head.has_body();
        let origin = ex.dest.origin.clone();
        let Some(fetch) = ex.fetch_mut() else {
            return;
        };
        match &mut fetch.response {
            Response::AwaitHead { buf } => {
                let reused = matches!(fetch.upstream, Upstream::Attached { reused: true, .. });
                let retry_safe = reused && !fetch.retried && !has_body && buf.is_empty();
                if retry_safe {
                    // A pooled connection the origin had already closed: nothing was
                    // processed, so the request is sent again on a fresh connection.
                    self.stats.upstream_retries.incr();
                    fetch.retried = true;
                    fetch.upstream = Upstream::Acquiring { since: now.instant };
                    self.up_out.clear();
                    self.actions.push_back(Action::CloseUpstream);
                    self.actions.push_back(Action::Acquire {
                        origin,
                        pooled_ok: false,
                    });
                    return;
                }
                self.stats.upstream_errors.incr();
                let detail = match error {
                    Some(e) => {
                        format!("connection to origin {origin} failed before a response: {e}")
                    }
                    None => format!("origin {origin} closed the connection without a response"),
                };
                self.fail_exchange(502, &detail, now);
            }
            Response::Body(body) => {
                if error.is_none() && body.dec.on_eof() {
                    body.enc.finish(self.out.compacted_tail());
                    body.reusable = false;
                    self.complete_exchange(now);
                } else {
                    let why = error.unwrap_or("origin closed the connection mid-body");
                    self.truncate(why);
                }
            }
        }
    }

    /// What this connection waited for under `ticket` is done: the flight it waited on
    /// ended (look the URL up again), or its distillation job finished. A ticket of an
    /// earlier wait (the exchange gave up on it, or has ended) changes nothing.
    pub fn on_wait_over(&mut self, ticket: Ticket, now: Now<'_>) {
        let Some(ex) = self.ex.take() else { return };
        match &ex.stage {
            Stage::Waiting { ticket: t, .. } if *t == ticket => {
                self.resume_after_wait(*ex, now);
                self.advance(now);
            }
            Stage::Distilling(job) if job.ticket == ticket => self.on_job_done(ex, now),
            _ => self.ex = Some(ex),
        }
    }

    /// A ticket for a new wait.
    fn ticket(&mut self) -> Ticket {
        self.tickets += 1;
        self.tickets
    }

    // ---- time ------------------------------------------------------------------------

    pub fn on_tick(&mut self, now: Now<'_>) {
        let t = now.instant;
        let to = self.cfg.timeouts;
        let client_idle = t.saturating_duration_since(self.last_client) >= to.client_idle;
        let Some(ex) = self.ex.as_ref() else {
            if let Some(started) = self.head_started
                && t.saturating_duration_since(started) >= to.request_head
            {
                self.stats.client_timeouts.incr();
                self.refuse(408, "request head not received in time", now);
                return;
            }
            if client_idle {
                self.reset = !self.out.is_empty();
                self.no_more_requests = true;
                self.inbuf.clear();
                self.out.clear();
            }
            return;
        };
        match &ex.stage {
            Stage::Waiting { since, .. } => {
                if t.saturating_duration_since(*since) >= self.cfg.cache.collapse_wait {
                    // The fetch waited on is taking too long: fetch for ourselves.
                    if let Some(ex) = self.ex.take() {
                        self.resume_after_wait(*ex, now);
                        self.advance(now);
                    }
                }
            }
            Stage::Distilling(job) => {
                // A job is bounded by its own time limit once it runs; this bounds the
                // wait in the pool's queue too.
                let deadline = self.cfg.distill.limits.time_max * 2;
                if t.saturating_duration_since(job.since) >= deadline
                    && let Some(ex) = self.ex.take()
                {
                    self.on_job_overdue(ex, now);
                }
            }
            Stage::Fetching(Fetch {
                upstream: Upstream::Acquiring { since },
                ..
            }) => {
                if t.saturating_duration_since(*since) >= to.upstream_connect {
                    self.stats.upstream_timeouts.incr();
                    let detail = format!("connecting to origin {} timed out", ex.origin());
                    self.fail_exchange(504, &detail, now);
                }
            }
            Stage::Fetching(Fetch {
                upstream: Upstream::Attached { last_active, .. },
                ..
            }) => {
                let waiting_on_client = (!ex.body.dec.is_done() && self.up_out.is_empty())
                    || self.out.len() >= self.watermark();
                if waiting_on_client {
                    if client_idle {
                        self.stats.client_timeouts.incr();
                        self.truncate("client stalled");
                    }
                } else if t.saturating_duration_since(*last_active) >= to.upstream_response {
                    self.stats.upstream_timeouts.incr();
                    let detail = format!("origin {} did not answer in time", ex.origin());
                    self.fail_exchange(504, &detail, now);
                }
            }
            Stage::Answering => {}
        }
    }

    // ---- the request side ------------------------------------------------------------

    fn watermark(&self) -> usize {
        self.cfg.limits.io_buffer_bytes
    }

    fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            header_bytes_max: self.cfg.limits.header_bytes_max,
            headers_count_max: self.cfg.limits.headers_count_max,
        }
    }

    /// Starts every complete request waiting in the input, one at a time: pipelined
    /// requests are answered in order because the next is parsed only when the
    /// current exchange is over.
    fn advance(&mut self, now: Now<'_>) {
        loop {
            if self.reset || self.no_more_requests {
                return;
            }
            if self.ex.is_some() {
                self.pump_request_body(now);
                return;
            }
            if self.out.len() >= self.watermark() {
                // The client has not taken what it was sent: its next pipelined request
                // waits (`on_client_written` resumes it), so a client that reads nothing
                // cannot have cached objects queued to it without end.
                return;
            }
            if self.inbuf.is_empty() {
                self.head_started = None;
                self.no_more_requests = self.client_eof;
                return;
            }
            match parse_request(self.inbuf.pending(), self.head_limits()) {
                Ok(None) => {
                    self.head_started.get_or_insert(now.instant);
                    self.no_more_requests = self.client_eof;
                    return;
                }
                Err(e) => {
                    self.stats.bad_requests.incr();
                    self.refuse_malformed(&e, now);
                    return;
                }
                Ok(Some((head, n))) => {
                    self.inbuf.consume(n);
                    self.head_started = None;
                    self.stats.requests.incr();
                    self.begin(head, now);
                }
            }
        }
    }

    fn begin(&mut self, head: RequestHead, now: Now<'_>) {
        if is_loop(&head, &self.cfg.via_name) {
            self.answer_local(
                &head,
                508,
                &error_body(508, "request already passed through this proxy"),
                now,
            );
            return;
        }
        match route(&self.cfg, &head) {
            Err(refusal) => {
                let body = error_body(refusal.status, &refusal.reason);
                self.answer_local(&head, refusal.status, &body, now);
            }
            Ok(Decision::Health) => self.answer_local(&head, 200, HEALTH_BODY, now),
            Ok(Decision::Preferences(query)) => self.answer_preferences(&head, &query, now),
            Ok(Decision::Proxy(dest)) => self.begin_proxy(head, dest, now),
        }
    }

    fn begin_proxy(&mut self, head: RequestHead, dest: Destination, now: Now<'_>) {
        let max = self.cfg.limits.request_body_bytes_max;
        if matches!(head.framing, RequestFraming::Length(n) if n > max) {
            self.refuse_malformed(&HttpError::BodyTooLarge { limit: max }, now);
            return;
        }
        if head.method() == "PURGE" {
            self.purge(&head, &dest, now);
            return;
        }
        let mut dest = dest;
        let distill = self.distill_ctx(&head, &mut dest);
        let next = self.consult_cache(&head, &dest, distill.as_deref(), false, now);
        self.go(next, head, dest, distill, now);
    }

    /// Sends the request upstream (asks the driver for a connection).
    fn start_fetch(
        &mut self,
        head: RequestHead,
        dest: Destination,
        cache: Option<Box<CacheCtx>>,
        distill: Option<Box<DistillCtx>>,
        now: Now<'_>,
    ) {
        if head.expect_continue && head.has_body() && head.minor_version == 1 {
            // The body is within limits, so ask for it; Expect is not forwarded.
            self.out.extend(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let id = Identity {
            via_name: &self.cfg.via_name,
            x_forwarded_for: self.cfg.x_forwarded_for,
        };
        let revalidate = Conn::revalidation(cache.as_deref()).map(|o| Validators {
            etag: o.etag(),
            last_modified: o.last_modified(),
        });
        let mut up_head = Vec::with_capacity(256 + head.fields().count() * 32);
        write_upstream_request(&mut up_head, &head, &dest, &self.peer_ip, id, revalidate);
        self.actions.push_back(Action::Acquire {
            origin: dest.origin.clone(),
            pooled_ok: true,
        });
        let fetch = Stage::Fetching(Fetch {
            up_head,
            upstream: Upstream::Acquiring { since: now.instant },
            retried: false,
            response: Response::AwaitHead { buf: Vec::new() },
        });
        self.ex = Some(Exchange::new(
            head,
            dest,
            cache,
            distill,
            fetch,
            now.instant,
        ));
    }

    /// Moves request body bytes from the client's input to the origin's output, as far
    /// as the output's high-water mark allows.
    fn pump_request_body(&mut self, now: Now<'_>) {
        let watermark = self.watermark();
        let max = self.cfg.limits.request_body_bytes_max;
        let Some(ex) = self.ex.as_mut() else { return };
        if !ex.is_attached() {
            return;
        }
        let body = &mut ex.body;
        while !body.dec.is_done() && self.up_out.len() < watermark && !self.inbuf.is_empty() {
            let (n, data) = match body.dec.decode(self.inbuf.pending()) {
                Ok(step) => step,
                Err(e) => {
                    self.stats.bad_requests.incr();
                    let status = e.status();
                    self.fail_exchange(status, &e.to_string(), now);
                    return;
                }
            };
            body.bytes += data.len() as u64;
            if body.bytes > max {
                let e = HttpError::BodyTooLarge { limit: max };
                self.fail_exchange(413, &e.to_string(), now);
                return;
            }
            body.enc.encode(data, self.up_out.compacted_tail());
            self.inbuf.consume(n);
            if body.dec.is_done() {
                body.enc.finish(self.up_out.compacted_tail());
            }
        }
    }

    // ---- the response side -----------------------------------------------------------

    fn parse_response_head(&mut self, now: Now<'_>) {
        let limits = self.head_limits();
        let Some(ex) = self.ex.as_mut() else { return };
        let head_only = ex.head.is_head();
        let origin = &ex.dest.origin;
        let Some(Fetch {
            response: Response::AwaitHead { buf },
            ..
        }) = ex.stage.fetch_mut()
        else {
            return;
        };
        loop {
            match parse_response(buf, limits, head_only) {
                Ok(None) => return,
                Err(e) => {
                    self.stats.upstream_errors.incr();
                    let detail = format!("invalid response from origin {origin}: {e}");
                    self.fail_exchange(502, &detail, now);
                    return;
                }
                Ok(Some((resp, n))) if resp.is_informational() => {
                    if resp.status == 101 {
                        let detail = format!("origin {origin} switched protocols unasked");
                        self.fail_exchange(502, &detail, now);
                        return;
                    }
                    // 100 was already answered by the proxy; other 1xx are advisory.
                    buf.drain(..n);
                }
                Ok(Some((resp, n))) => {
                    let rest = buf.split_off(n);
                    *buf = Vec::new();
                    self.start_response(&resp, now);
                    self.feed_body(&rest, now);
                    return;
                }
            }
        }
    }

    fn start_response(&mut self, resp: &ResponseHead, now: Now<'_>) {
        let Some(mut ex) = self.ex.take() else { return };
        let plan = match ex.cache.take() {
            Some(mut ctx) => {
                let plan = self.on_cached_response(&mut ctx, &ex.head, resp, now);
                ex.cache = Some(ctx);
                plan
            }
            None => ResponsePlan::Stream(Vec::new()),
        };
        let (sink, enc) = match plan {
            ResponsePlan::FromStore(object, how) => {
                // Distilled from the stored object once the origin's (empty or error)
                // body is drained, when this request has a profile that applies.
                let work = ex
                    .distill
                    .as_deref()
                    .and_then(|d| self.work_on_stored(d, &object));
                let then = match work {
                    Some(work) => Some((object, work)),
                    None => {
                        self.serve_stored(&ex.head, &object, how, now);
                        None
                    }
                };
                (Sink::Discard { then }, BodyEncoder::Raw)
            }
            ResponsePlan::Stream(cache_status) => {
                self.start_client_response(&mut ex, resp, &cache_status, now)
            }
        };
        if let Some(fetch) = ex.fetch_mut() {
            fetch.response = Response::Body(ResponseBody {
                status: resp.status,
                dec: BodyDecoder::new(resp.framing),
                enc,
                sent: 0,
                reusable: resp.origin_keeps_alive(),
                sink,
            });
        }
        self.ex = Some(ex);
    }

    /// Writes the client's response head (or keeps it aside when the body is held for a
    /// job): where the origin's body goes, and how it is framed.
    fn start_client_response(
        &mut self,
        ex: &mut Exchange,
        resp: &ResponseHead,
        cache_status: &[u8],
        now: Now<'_>,
    ) -> (Sink, BodyEncoder) {
        let minor = ex.head.minor_version;
        let down = DownFraming::choose(resp.framing, minor);
        ex.keep_alive = ex.keep_alive && down != DownFraming::Close && !self.client_eof;
        let mark = self.out.compacted_tail().len();
        write_client_response(
            self.out.compacted_tail(),
            resp,
            down,
            ex.keep_alive,
            minor,
            &self.cfg.via_name,
            cache_status,
        );
        let mut sink = Sink::Client;
        if ex.distill.is_some() {
            // Taken back if the body is held for a job (written later if it streams).
            let client_head = self.out.compacted_tail().split_off(mark);
            let stored = cache_status.windows(6).any(|w| w == b"stored");
            match self.hold(ex, resp, &client_head, stored, now) {
                Some(held) => sink = Sink::Held(held),
                None => self.out.extend(&client_head),
            }
        }
        let enc = if down == DownFraming::Chunked {
            BodyEncoder::Chunked
        } else {
            BodyEncoder::Raw
        };
        (sink, enc)
    }

    fn feed_body(&mut self, data: &[u8], now: Now<'_>) {
        let max = self.cfg.cache.object_bytes_max;
        let hold_limit = self.cfg.distill.limits.input_bytes_max;
        // Bodies held for a job or captured for the cache: per connection at most these
        // limits, all connections together at most `limits.held_bytes_max` (past it the
        // response streams, unheld or unstored).
        let Some(ex) = self.ex.as_mut() else { return };
        let Some(Fetch {
            response: Response::Body(body),
            ..
        }) = ex.stage.fetch_mut()
        else {
            return;
        };
        let mut at = 0;
        while at < data.len() && !body.dec.is_done() {
            match body.dec.decode(&data[at..]) {
                Ok((n, piece)) => {
                    let keeps_holding = match &mut body.sink {
                        Sink::Held(held) => held.add(piece, hold_limit),
                        _ => true,
                    };
                    if !keeps_holding {
                        // Too large to distil after all: stream what was held, and on.
                        body.stream_held(&mut self.out);
                    }
                    if matches!(body.sink, Sink::Client) {
                        body.stream(piece, &mut self.out);
                    }
                    if let Some(ctx) = ex.cache.as_mut() {
                        ctx.capture_body(piece, max);
                    }
                    at += n;
                }
                Err(e) => {
                    self.stats.upstream_errors.incr();
                    self.truncate(&format!("invalid body from origin: {e}"));
                    return;
                }
            }
        }
        if body.dec.is_done() {
            if at < data.len() {
                body.reusable = false; // bytes past the end: the stream is unsound
            }
            if matches!(body.sink, Sink::Held(_)) {
                self.finish_held(now);
                return;
            }
            body.enc.finish(self.out.compacted_tail());
            self.complete_exchange(now);
        }
    }

    /// The held body is complete: the origin connection goes back, the original is
    /// stored if it may be, and the job starts.
    fn finish_held(&mut self, now: Now<'_>) {
        let Some(mut ex) = self.ex.take() else { return };
        self.release_upstream(&mut ex);
        if let Some(ctx) = ex.cache.as_mut() {
            self.finish_capture(ctx, &ex.head);
        }
        // The flight (if this request led one) ends here: waiters find the original.
        ex.cache = None;
        let Some(held) = ex.take_held() else { return };
        self.start_job(ex, JobInput::Fetched(held), now);
    }

    /// Gives the origin connection back to the pool, or closes it.
    fn release_upstream(&mut self, ex: &mut Exchange) {
        let request_done = ex.body.dec.is_done();
        let reusable = ex.response_body().is_some_and(|b| b.reusable);
        if reusable && request_done && self.up_out.is_empty() {
            self.actions.push_back(Action::Release);
        } else {
            self.actions.push_back(Action::CloseUpstream);
        }
        self.up_out.clear();
        if !request_done {
            self.no_more_requests = true;
        }
    }

    fn complete_exchange(&mut self, now: Now<'_>) {
        let Some(mut ex) = self.ex.take() else { return };
        if let Some(ctx) = ex.cache.as_mut() {
            // Stored before `ex` (and the flight it leads) is dropped below, so the
            // requests that waited find it.
            self.finish_capture(ctx, &ex.head);
        }
        self.release_upstream(&mut ex);
        if !ex.keep_alive {
            self.no_more_requests = true;
        }
        if let Some((object, work)) = ex.take_pending_job() {
            ex.cache = None; // the flight ends: the refreshed original is stored
            self.start_job(ex, JobInput::Stored { object, work }, now);
            return;
        }
        let streamed = ex.response_body().filter(|b| !b.discards());
        if let Some(body) = streamed {
            self.log_access(
                &ex.head,
                body.status,
                body.sent,
                ex.started,
                now,
                Some(ex.origin()),
            );
        }
        drop(ex);
        self.advance(now);
    }

    /// The response head is out but its body cannot be completed: reset the client
    /// connection so the part it got is never taken for the whole.
    fn truncate(&mut self, why: &str) {
        self.stats.truncated_responses.incr();
        if let Some(ex) = self.ex.take() {
            let sent = ex.response_body().map_or(0, |b| b.sent);
            tracing::warn!(client = %self.peer, origin = %ex.origin(), target = ex.head.target(),
                sent, "response truncated: {why}");
        }
        self.actions.push_back(Action::CloseUpstream);
        self.reset = true;
    }

    /// The exchange failed before its response started: answer with `status`.
    fn fail_exchange(&mut self, status: u16, detail: &str, now: Now<'_>) {
        let Some(ex) = self.ex.take() else { return };
        if ex.response_body().is_some() {
            self.ex = Some(ex);
            self.truncate(detail);
            return;
        }
        self.actions.push_back(Action::CloseUpstream);
        self.up_out.clear();
        if status >= 500
            && let Some(ctx) = ex.cache.as_deref()
            && self.serve_stale_on_error(ctx, &ex.head, now)
        {
            tracing::warn!(client = %self.peer, target = ex.head.target(),
                "{status}: {detail}; served the stale stored response (stale-if-error)");
            drop(ex);
            self.advance(now);
            return;
        }
        tracing::warn!(client = %self.peer, target = ex.head.target(), "{status}: {detail}");
        let keep = ex.keep_alive && ex.body.dec.is_done() && !matches!(status, 400 | 413);
        let body = error_body(status, detail);
        self.write_local(
            status,
            &body,
            ex.head.is_head(),
            keep,
            ex.head.minor_version,
            now,
        );
        self.log_access(
            &ex.head,
            status,
            body.len() as u64,
            ex.started,
            now,
            Some(ex.origin()),
        );
        self.advance(now);
    }

    // ---- answers written here --------------------------------------------------------

    fn answer_local(&mut self, head: &RequestHead, status: u16, body: &[u8], now: Now<'_>) {
        self.stats.local_responses.incr();
        // A body we did not read would be taken for the next request: close instead.
        let keep = head.wants_keep_alive() && !head.has_body();
        self.write_local(status, body, head.is_head(), keep, head.minor_version, now);
        self.log_access(head, status, body.len() as u64, now.instant, now, None);
    }

    /// The profile preference page (`proxy::prefs`).
    fn answer_preferences(&mut self, head: &RequestHead, query: &str, now: Now<'_>) {
        self.stats.local_responses.incr();
        let signals = crate::distill::profile::Signals::read(head.fields());
        let (status, extra, body) =
            super::prefs::answer(&self.cfg.distill.choice, query, signals.cookie);
        let keep = head.wants_keep_alive() && !head.has_body() && !self.client_eof;
        LocalResponse {
            status,
            body: body.as_bytes(),
            head_only: head.is_head(),
            keep_alive: keep,
            client_minor: head.minor_version,
            date: now.date,
            via_name: &self.cfg.via_name,
            content_type: b"text/html; charset=utf-8",
            extra: &extra,
        }
        .write(self.out.compacted_tail());
        if !keep {
            self.no_more_requests = true;
        }
        self.log_access(head, status, body.len() as u64, now.instant, now, None);
    }

    /// A request that cannot be parsed or accepted: answer, then close.
    fn refuse_malformed(&mut self, e: &HttpError, now: Now<'_>) {
        tracing::info!(client = %self.peer, "refused request: {e}");
        self.refuse(e.status(), &e.to_string(), now);
    }

    fn refuse(&mut self, status: u16, detail: &str, now: Now<'_>) {
        self.stats.local_responses.incr();
        self.inbuf.clear();
        self.head_started = None;
        let body = error_body(status, detail);
        self.write_local(status, &body, false, false, 1, now);
        if self.cfg.access_log {
            tracing::info!(target: "access", client = %self.peer, status, "-");
        }
    }

    fn write_local(
        &mut self,
        status: u16,
        body: &[u8],
        head_only: bool,
        keep_alive: bool,
        minor: u8,
        now: Now<'_>,
    ) {
        LocalResponse {
            status,
            body,
            head_only,
            keep_alive: keep_alive && !self.client_eof,
            client_minor: minor,
            date: now.date,
            via_name: &self.cfg.via_name,
            content_type: TEXT_PLAIN,
            extra: b"",
        }
        .write(self.out.compacted_tail());
        if !keep_alive {
            self.no_more_requests = true;
        }
    }

    fn log_access(
        &self,
        head: &RequestHead,
        status: u16,
        bytes: u64,
        started: Instant,
        now: Now<'_>,
        origin: Option<&Authority>,
    ) {
        if !self.cfg.access_log {
            return;
        }
        let micros = now.instant.saturating_duration_since(started).as_micros() as u64;
        match origin {
            Some(o) => {
                tracing::info!(target: "access", client = %self.peer, method = head.method(),
                target = head.target(), status, bytes, micros, upstream = %o)
            }
            None => tracing::info!(target: "access", client = %self.peer, method = head.method(),
                target = head.target(), status, bytes, micros, upstream = "-"),
        }
    }
}

#[cfg(test)]
mod tests;
