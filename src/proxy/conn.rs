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
use crate::http::target::Authority;

use super::buf::Buf;
use super::held::HeldBudget;
use super::out::Out;
use super::stats::{Stats, upstream_kind};
use distilling::DistillCtx;
pub use distilling::DistillJob;
use exchange::{Exchange, Fetch, Response, Stage, Upstream};
use response::BackgroundEnd;

mod answer;
mod auth;
mod caching;
mod distilling;
mod exchange;
mod forward;
mod next;
mod request;
mod response;
mod stored;
mod tunnel;

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
    /// `screened`: named by the client, so its address must pass the forward proxy's
    /// destination rules first. Answered by `on_upstream_ready` or `on_upstream_failed`.
    Acquire {
        origin: Authority,
        pooled_ok: bool,
        screened: bool,
    },
    /// The exchange is over and the upstream connection can be reused.
    Release,
    /// Close the upstream connection, or cancel its acquisition.
    CloseUpstream,
    /// The client closed its side of a tunnel: end the destination's side too (a FIN,
    /// once everything queued for it is sent), and keep reading its answer.
    ShutdownUpstreamWrite,
    /// Another request is fetching what this one needs: call `on_wait_over` with the
    /// ticket when its flight ends.
    AwaitFlight(FlightWait, Ticket),
    /// Run this distillation job on the pool, then call `on_wait_over` with the ticket.
    RunJob(DistillJob, Ticket),
    /// Check these credentials on the node's verifier threads, then `on_wait_over`.
    CheckCredentials(DistillJob, Ticket),
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
    /// The address the name resolved to is one the destination rules deny.
    #[error("{}: {denied}", crate::proxy::route::DESTINATION_DENIED, denied = .0)]
    Denied(crate::access::destinations::Denied),
}

pub struct Conn {
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    /// What the shard's connections share: the access log, object references.
    local: std::rc::Rc<crate::proxy::shard_local::ShardLocal>,
    cache: Option<Arc<Store>>,
    /// The node's budget for held response bodies.
    held: Arc<HeldBudget>,
    peer: SocketAddr,
    /// The client address as written into X-Forwarded-For, formatted once.
    peer_ip: String,
    /// The client's address and port as the access log writes it, formatted once.
    peer_text: String,
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
    /// The node is draining: every response says `Connection: close`.
    draining: bool,
    /// ... and stopping: the connection closes as soon as it is between requests.
    close_when_idle: bool,
    /// Requests begun on this connection.
    requests_begun: u64,
    /// A config put in force by a reload, taken before the next request.
    next_cfg: Option<Arc<Config>>,
    head_started: Option<Instant>,
    last_client: Instant,
    /// The memory of the last request's head and destination once it was answered,
    /// reused for the next (a keep-alive connection's hits allocate nothing).
    spare_head: crate::http::request::RequestHead,
    spare_dest: Option<crate::http::target::Destination>,
    /// Cache keys are written here for a lookup (the primary key, a variant's).
    key_buf: String,
    variant_buf: String,
    spare_distill: Option<Box<DistillCtx>>,
    /// The last exchange's upstream request head and response-head buffer, cleared: a
    /// keep-alive client's next proxied request writes and reads into them.
    spare_up_head: Vec<u8>,
    spare_response_head: Vec<u8>,
    /// The last response head parsed, for the next one's.
    spare_response: crate::http::response::ResponseHead,
    /// The last fetch's copy of where it went, for the next fetch's.
    spare_to: Option<crate::http::target::Authority>,
}

/// The most each of a connection's spares (`spare_*`) keeps between requests, but for
/// the request head's, which is kept up to `SPARE_HEAD_MAX` (a browser's head with its
/// cookies can take a few KiB, and is read on every request): with the two cache-key
/// buffers (`spare_text`), an idle connection holds at most 36 KiB of them, beside its
/// I/O buffers. A request that needed more was an exception, not worth keeping memory
/// for.
const SPARE_BUF_MAX: usize = 4096;
const SPARE_HEAD_MAX: usize = 2 * SPARE_BUF_MAX;

/// `text`, emptied, if it is worth keeping as a spare (the cache keys' buffers); else an
/// empty string.
fn spare_text(text: String) -> String {
    // `spare` hands back an empty vector, which is always UTF-8.
    String::from_utf8(spare(text.into_bytes())).unwrap_or_default()
}

/// `buf`, emptied, if it is worth keeping as a spare; else an empty vector.
fn spare(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > SPARE_BUF_MAX {
        return Vec::new();
    }
    buf.clear();
    buf
}

impl Conn {
    /// Keeps an answered request's head, destination and profile context for the
    /// connection's next request, each only within its bound.
    fn keep_for_next(
        &mut self,
        head: crate::http::request::RequestHead,
        dest: Option<crate::http::target::Destination>,
        distill: Option<Box<DistillCtx>>,
    ) {
        self.spare_head = match head.held_bytes() <= SPARE_HEAD_MAX {
            true => head.recycle(),
            false => Default::default(),
        };
        if let Some(dest) = dest {
            self.spare_dest = (dest.held_bytes() <= SPARE_BUF_MAX).then_some(dest);
        }
        if distill.is_some() {
            self.spare_distill = distill;
        }
    }
}

/// How long a request waits for its credentials to be checked (the verifier threads'
/// queue); past it, 503.
const VERIFY_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);

impl Conn {
    pub fn new(
        cfg: Arc<Config>,
        stats: Arc<Stats>,
        cache: Option<Arc<Store>>,
        held: Arc<HeldBudget>,
        peer: SocketAddr,
        now: Now<'_>,
        local: std::rc::Rc<crate::proxy::shard_local::ShardLocal>,
    ) -> Conn {
        let cap = cfg.limits.io_buffer_bytes.min(16 * 1024);
        Conn {
            cfg,
            stats,
            local,
            cache,
            held,
            peer,
            peer_ip: peer.ip().to_string(),
            peer_text: peer.to_string(),
            inbuf: Buf::with_capacity(cap),
            out: Out::with_capacity(cap),
            up_out: Buf::default(),
            actions: VecDeque::new(),
            ex: None,
            tickets: 0,
            no_more_requests: false,
            reset: false,
            client_eof: false,
            draining: false,
            close_when_idle: false,
            requests_begun: 0,
            next_cfg: None,
            head_started: None,
            last_client: now.instant,
            spare_head: Default::default(),
            spare_dest: None,
            key_buf: String::new(),
            variant_buf: String::new(),
            spare_distill: None,
            spare_up_head: Vec::new(),
            spare_response_head: Vec::new(),
            spare_response: Default::default(),
            spare_to: None,
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
        // A background revalidation's response goes to the cache, not the client: the
        // client's reading does not pace it.
        self.ex.as_ref().is_some_and(|ex| {
            ex.is_attached() && (ex.background || self.out.len() < self.watermark())
        })
    }

    /// The client connection should be closed now.
    pub fn is_finished(&self) -> bool {
        self.reset || (self.no_more_requests && self.ex.is_none() && self.out.is_empty())
    }

    /// Close with a reset rather than a clean end of stream.
    pub fn wants_reset(&self) -> bool {
        self.reset
    }

    // ---- events from the node --------------------------------------------------------

    /// A reloaded config: the exchange under way finishes on the config it began with,
    /// and the next request reads this one.
    pub fn reconfigure(&mut self, cfg: Arc<Config>) {
        if self.ex.is_none() {
            self.cfg = cfg;
        } else {
            self.next_cfg = Some(cfg);
        }
    }

    /// The node is draining: the response under way (or the next one) is the last and
    /// says `Connection: close`. With `close_idle` (a stop) a keep-alive connection
    /// closes as soon as it is between requests — now, or when the response under way
    /// (which may have promised keep-alive already) is done. A connection that has not
    /// carried a request yet is not idle: its client connected before the stop and its
    /// request may be on the way. Without `close_idle` (a hand-over) a connection stays
    /// until its next request, so a client is never cut off between sending a request
    /// and reading the answer.
    pub fn drain(&mut self, close_idle: bool) {
        self.draining = true;
        self.close_when_idle |= close_idle;
        let idle = self.ex.is_none() && self.inbuf.is_empty() && self.head_started.is_none();
        if self.close_when_idle && idle && self.requests_begun > 0 {
            self.no_more_requests = true;
        }
    }

    /// Responses may keep the connection open for another request.
    fn may_keep_alive(&self) -> bool {
        !self.client_eof && !self.draining
    }

    // ---- events from the client ------------------------------------------------------

    pub fn on_client_data(&mut self, data: &[u8], now: Now<'_>) {
        self.last_client = now.instant;
        self.stats.client_bytes_in.add(data.len() as u64);
        self.inbuf.extend(data);
        self.advance(now);
    }

    pub fn on_client_eof(&mut self, now: Now<'_>) {
        self.client_eof = true;
        let body_unfinished = self
            .ex
            .as_ref()
            .is_some_and(|ex| !ex.request_body.dec.is_done());
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
        let ex_is_connect = fetch.opens_tunnel;
        fetch.upstream = Upstream::Attached {
            reused,
            last_active: now.instant,
        };
        if reused {
            self.stats.upstream_reuses.incr();
        } else if !ex_is_connect {
            self.stats.upstream_connects.incr();
        }
        self.up_out.clear();
        self.up_out.extend(&fetch.up_head);
        if self.open_tunnel(now) {
            return;
        }
        self.pump_request_body(now);
    }

    pub fn on_upstream_failed(&mut self, failure: UpstreamFailure, now: Now<'_>) {
        if self.ex.is_none() {
            return;
        }
        if let UpstreamFailure::Denied(_) = failure {
            self.refuse_destination(&failure.to_string(), now);
            return;
        }
        self.stats.upstream_failed(match failure {
            UpstreamFailure::Resolve { .. } => upstream_kind::RESOLVE,
            UpstreamFailure::Connect { .. } | UpstreamFailure::Denied(_) => upstream_kind::CONNECT,
        });
        if self.reroute(&failure.to_string(), now) {
            return;
        }
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
        if self.relay_to_client(data, now) {
            return;
        }
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
        if self.close_tunnel(error.unwrap_or("destination closed"), now) {
            return;
        }
        let Some(ex) = self.ex.as_mut() else {
            return;
        };
        let has_body = ex.head.has_body();
        let Some(fetch) = ex.fetch_mut() else {
            return;
        };
        let origin = fetch.to.clone();
        match &mut fetch.response {
            Response::AwaitHead { buf } => {
                let reused = matches!(fetch.upstream, Upstream::Attached { reused: true, .. });
                let retry_safe = reused
                    && !fetch.retried
                    && !has_body
                    && buf.is_empty()
                    && fetch.interim_bytes == 0;
                if retry_safe {
                    // A pooled connection the origin had already closed: nothing was
                    // processed, so the request is sent again on a fresh connection.
                    self.stats.upstream_retries.incr();
                    fetch.retried = true;
                    fetch.upstream = Upstream::Acquiring { since: now.instant };
                    self.up_out.clear();
                    self.actions.push_back(Action::CloseUpstream);
                    let screened = fetch.screened;
                    self.actions.push_back(Action::Acquire {
                        origin,
                        pooled_ok: false,
                        screened,
                    });
                    return;
                }
                if self.reroute(error.unwrap_or("closed without a response"), now) {
                    return;
                }
                self.stats.upstream_failed(upstream_kind::CLOSED);
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
                    self.truncate(why, now);
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
            Stage::Verifying(v) if v.ticket == ticket => self.on_verified(ex, now),
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
        let client_idle = now.instant.saturating_duration_since(self.last_client)
            >= self.cfg.timeouts.client_idle;
        if self.ex.is_some() {
            self.exchange_tick(client_idle, now);
        } else {
            self.between_requests_tick(client_idle, now);
        }
    }

    /// No exchange: a request head that takes too long, or a keep-alive gone idle.
    fn between_requests_tick(&mut self, client_idle: bool, now: Now<'_>) {
        if let Some(started) = self.head_started
            && now.instant.saturating_duration_since(started) >= self.cfg.timeouts.request_head
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
    }

    /// The deadline of the exchange's stage.
    fn exchange_tick(&mut self, client_idle: bool, now: Now<'_>) {
        if self.forward_abandoned() {
            // Membership declared the peer down: it will not answer. Elsewhere if the
            // request may go again; else an error now rather than at the deadline.
            if !self.reroute("declared down while a request waited", now) {
                self.fail_exchange(502, "the cluster peer that owns this URL went down", now);
            }
            return;
        }
        let t = now.instant;
        let to = self.cfg.timeouts;
        let Some(ex) = self.ex.as_ref() else { return };
        if ex.background {
            // Bounded as a whole, not only by silence, and shorter while the client's
            // next request waits behind it: it holds the client's connection.
            let running = t.saturating_duration_since(ex.started);
            let why = if running >= to.upstream_response {
                Some(BackgroundEnd::Failed(
                    "it took longer than timeouts.upstream_response_ms",
                ))
            } else if running >= self.cfg.cache.collapse_wait && !self.inbuf.is_empty() {
                Some(BackgroundEnd::GaveWay(
                    "the next request waited cache.collapse_wait_ms",
                ))
            } else {
                None
            };
            if let Some(why) = why {
                self.end_background(why, now);
                return;
            }
        }
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
                    let detail = format!("connecting to origin {} timed out", ex.origin());
                    if self.reroute("connect timed out", now) {
                        return;
                    }
                    self.stats.upstream_timeouts.incr();
                    self.stats.upstream_failures[upstream_kind::TIMEOUT].incr();
                    self.fail_exchange(504, &detail, now);
                }
            }
            Stage::Fetching(Fetch {
                upstream: Upstream::Attached { last_active, .. },
                response,
                first_interim,
                ..
            }) => {
                // Interim responses do not put off the final head's deadline.
                let head_since = match (response, first_interim) {
                    (Response::AwaitHead { .. }, Some(first)) => *first,
                    _ => *last_active,
                };
                let waiting_on_client = !ex.background
                    && ((!ex.request_body.dec.is_done() && self.up_out.is_empty())
                        || self.out.len() >= self.watermark());
                if waiting_on_client {
                    if client_idle {
                        self.stats.client_timeouts.incr();
                        self.truncate("client stalled", now);
                    }
                } else if t.saturating_duration_since(*last_active) >= to.upstream_response
                    || t.saturating_duration_since(head_since) >= to.upstream_response
                {
                    let head_due = matches!(
                        ex.stage,
                        Stage::Fetching(Fetch {
                            response: Response::AwaitHead { .. },
                            ..
                        })
                    );
                    let detail = format!("origin {} did not answer in time", ex.origin());
                    // A previous owner asked only-if-cached answers from memory: past the
                    // deadline it failed, and the origin is asked. A forward is not passed
                    // over here: its owner may be waiting on a slow origin itself (a
                    // silent peer is membership's to declare down).
                    if head_due && self.warm_missed(Some("did not answer in time"), now) {
                        return;
                    }
                    self.stats.upstream_timeouts.incr();
                    self.stats.upstream_failures[upstream_kind::TIMEOUT].incr();
                    self.fail_exchange(504, &detail, now);
                }
            }
            Stage::Tunnel(_) => self.tunnel_tick(now),
            Stage::Verifying(v) => {
                if t.saturating_duration_since(v.since) >= VERIFY_WAIT_MAX
                    && let Some(ex) = self.ex.take()
                {
                    self.answer_unverified(ex, now);
                }
            }
            Stage::Answering => {}
        }
    }
}

#[cfg(test)]
mod tests;
