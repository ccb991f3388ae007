//! The request side of a connection: parse each request as its turn comes, decide
//! where it goes, send it upstream and pump its body from the client to the origin.

use crate::config::cluster::InFlight;
use crate::http::HttpError;
use crate::http::request::{HeadLimits, RequestFraming, RequestHead, parse_request_reusing};
use crate::http::target::{Authority, Destination};

use super::super::heads::{Identity, Validators, is_loop, write_upstream_request};
use super::super::local::{HEALTH_BODY, error_body};
use super::super::route::{
    CLIENT_DENIED, DESTINATION_DENIED, Decision, ROUTE_CLIENT_DENIED, route_reusing,
};
use super::caching::CacheCtx;
use super::distilling::DistillCtx;
use super::exchange::{Exchange, Fetch, Response, Stage, Upstream};
use super::forward::PeerRoute;
use super::response::BackgroundEnd;
use super::{Action, Conn, Now};

impl Conn {
    pub(super) fn watermark(&self) -> usize {
        self.cfg.limits.io_buffer_bytes
    }

    pub(super) fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            header_bytes_max: self.cfg.limits.header_bytes_max,
            headers_count_max: self.cfg.limits.headers_count_max,
        }
    }

    /// Starts every complete request waiting in the input, one at a time: pipelined
    /// requests are answered in order because the next is parsed only when the
    /// current exchange is over.
    pub(super) fn advance(&mut self, now: Now<'_>) {
        loop {
            if self.reset || self.no_more_requests {
                return;
            }
            if let Some(ex) = self.ex.as_deref() {
                if ex.background && ex.awaits_head() && !self.inbuf.is_empty() {
                    // The client's next request comes before the refresh has an answer:
                    // the client does not wait on a revalidation it did not ask for.
                    self.drop_background(BackgroundEnd::GaveWay("the next request came first"));
                    continue;
                }
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
                // A stopping node closes a keep-alive connection once it is idle.
                self.no_more_requests =
                    self.client_eof || (self.close_when_idle && self.requests_begun > 0);
                return;
            }
            if let Some(cfg) = self.next_cfg.take() {
                self.cfg = cfg;
            }
            let limits = self.head_limits();
            match parse_request_reusing(self.inbuf.pending(), limits, &mut self.spare_head) {
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
                Ok(Some((mut head, n))) => {
                    head.adopt_raw(|raw| self.inbuf.take_front(n, raw));
                    self.head_started = None;
                    self.stats.requests.incr();
                    self.begin(head, now);
                }
            }
        }
    }

    pub(super) fn begin(&mut self, head: RequestHead, now: Now<'_>) {
        self.requests_begun += 1;
        if is_loop(&head, &self.cfg.via_name) {
            self.answer_local(
                &head,
                508,
                &error_body(508, "request already passed through this proxy"),
                now,
            );
            return;
        }
        let client = self.client_ip(&head);
        let reuse = self.spare_dest.take().unwrap_or_default();
        match route_reusing(&self.cfg, &head, client, reuse) {
            Err(refusal) => {
                self.count_refusal(&refusal.reason, client, now);
                let body = error_body(refusal.status, &refusal.reason);
                self.answer_local(&head, refusal.status, &body, now);
            }
            Ok(Decision::Health) => {
                self.answer_local(&head, 200, HEALTH_BODY, now);
                self.keep_for_next(head, None, None);
            }
            Ok(Decision::Preferences(query)) => self.answer_preferences(&head, &query, now),
            Ok(Decision::Proxy(_) | Decision::Tunnel(_)) if self.over_rate(&head, now) => {}
            Ok(Decision::Proxy(dest) | Decision::Tunnel(dest)) if self.needs_auth(&head, &dest) => {
                self.authenticate(head, dest, now)
            }
            Ok(Decision::Proxy(dest)) => self.begin_proxy(head, dest, now),
            Ok(Decision::Tunnel(dest)) => self.begin_tunnel(head, dest, now),
        }
    }

    /// A refusal by the forward proxy's rules is counted, and logged at most once a
    /// minute per client address (a scan would otherwise write a line per request).
    fn count_refusal(&self, reason: &str, client: std::net::IpAddr, now: Now<'_>) {
        let forward = &self.cfg.forward;
        if reason.starts_with(CLIENT_DENIED) {
            self.stats.forward_clients_refused.incr();
            if forward.refusals.should_log(client, now.instant) {
                tracing::warn!(%client, "refused: not in forward.clients_allowed (logged once a minute per address)");
            }
        } else if reason.starts_with(ROUTE_CLIENT_DENIED) {
            self.stats.route_clients_refused.incr();
            if forward.refusals.should_log(client, now.instant) {
                tracing::warn!(%client, "refused: {reason} (logged once a minute per address)");
            }
        } else if reason.starts_with(DESTINATION_DENIED) {
            self.stats.forward_destinations_refused.incr();
            if forward.destination_refusals.should_log(client, now.instant) {
                tracing::warn!(%client, "refused: {reason} (logged once a minute per client address)");
            }
        }
    }

    /// The client is over `forward.client_requests_per_s`: 429 with Retry-After (the
    /// time until its bucket has a token), counted, logged at most once a minute per
    /// client. A request a peer node forwards was counted at that node.
    fn over_rate(&mut self, head: &RequestHead, now: Now<'_>) -> bool {
        let Some(rate) = self.cfg.forward.request_rate.clone() else {
            return false;
        };
        if self.trusted_hop(head).is_some() {
            return false;
        }
        let client = self.client_ip(head);
        let Err(wait) = rate.take(client, now.instant) else {
            return false;
        };
        let body = error_body(429, "this client is over forward.client_requests_per_s");
        self.too_many(head, client, wait, &body, now);
        true
    }

    /// 429 with Retry-After (`wait`, rounded up to whole seconds), counted, and logged at
    /// most once a second node-wide: a flood of them must not contend on a lock.
    pub(super) fn too_many(
        &mut self,
        head: &RequestHead,
        client: std::net::IpAddr,
        wait: std::time::Duration,
        body: &[u8],
        now: Now<'_>,
    ) {
        static LOGGED_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.stats.client_limited.incr();
        let last = LOGGED_AT.load(std::sync::atomic::Ordering::Relaxed);
        if last != now.unix_secs
            && LOGGED_AT
                .compare_exchange(
                    last,
                    now.unix_secs,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(%client, "429 (logged at most once a second): {}",
                String::from_utf8_lossy(body).trim_end());
        }
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let extra = format!("Retry-After: {secs}\r\n");
        self.answer_local_with(head, 429, body, extra.as_bytes(), now);
    }

    /// The address a client-named destination resolved to is denied: 403, nothing sent.
    pub(super) fn refuse_destination(&mut self, reason: &str, now: Now<'_>) {
        let Some(ex) = self.ex.as_ref() else { return };
        let client = self.client_ip(&ex.head);
        self.count_refusal(reason, client, now);
        self.end_exchange_with(403, reason, false, now);
    }

    pub(super) fn begin_proxy(&mut self, head: RequestHead, dest: Destination, now: Now<'_>) {
        let max = self.cfg.limits.request_body_bytes_max;
        if matches!(head.framing, RequestFraming::Length(n) if n > max) {
            self.refuse_malformed(&HttpError::BodyTooLarge { limit: max }, now);
            return;
        }
        match self.peer_route(&head, &dest, now) {
            Some(route) => {
                let next = self.near_or_peer(&head, route, now);
                self.go(next, head, dest, None, now);
            }
            None => self.serve_here(head, dest, now),
        }
    }

    /// This node answers: PURGE, or the cache, a job, or the origin.
    pub(super) fn serve_here(&mut self, head: RequestHead, dest: Destination, now: Now<'_>) {
        if head.method() == "PURGE" {
            self.purge(&head, &dest, now);
            return;
        }
        let mut dest = dest;
        let reuse = self.spare_distill.take();
        let distill = self.distill_ctx_reusing(&head, &mut dest, reuse);
        let next = self.consult_cache(&head, &dest, distill.as_deref(), false, now);
        self.go(next, head, dest, distill, now);
    }

    /// Sends the request upstream (asks the driver for a connection).
    pub(super) fn start_fetch(
        &mut self,
        head: RequestHead,
        dest: Destination,
        cache: Option<Box<CacheCtx>>,
        distill: Option<Box<DistillCtx>>,
        now: Now<'_>,
    ) {
        let mut cache = cache;
        let warm = cache
            .as_deref()
            .and_then(|ctx| self.warm_source(&head, ctx, now));
        if let Some(node) = warm
            && let Some(mut ctx) = cache.take()
        {
            ctx.warm_from = Some(node);
            ctx.warm_tried = true;
            return self.start_warm(head, dest, ctx, distill, node, now);
        }
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
        let mut up_head = std::mem::take(&mut self.spare_up_head);
        up_head.reserve(256 + head.fields().count() * 32);
        let client = self.forwarded_client(&head);
        let client = client.as_deref().unwrap_or(&self.peer_ip);
        let whole = cache.as_deref().is_some_and(|c| c.whole_for_range);
        write_upstream_request(&mut up_head, &head, &dest, client, id, revalidate, whole);
        let mut origin = self.spare_to.take().unwrap_or_default();
        origin.set_from(&dest.origin);
        let to = (origin, dest.screened);
        let fetch = self.fetching(up_head, to, None, None, now);
        self.ex = Some(Exchange::new(
            head,
            dest,
            cache,
            distill,
            fetch,
            now.instant,
        ));
    }

    /// The fetching stage of a request to `to` (an origin, or a peer node), the driver
    /// asked for a connection to it.
    /// `to`: where, and whether the client named it (the destination rules apply).
    pub(super) fn fetching(
        &mut self,
        up_head: Vec<u8>,
        (to, screened): (Authority, bool),
        peer: Option<PeerRoute>,
        in_flight: Option<InFlight>,
        now: Now<'_>,
    ) -> Stage {
        self.actions.push_back(Action::Acquire {
            origin: to.clone(),
            pooled_ok: true,
            screened,
        });
        Stage::Fetching(Fetch {
            up_head,
            to,
            screened,
            opens_tunnel: false,
            peer,
            _in_flight: in_flight,
            upstream: Upstream::Acquiring { since: now.instant },
            retried: false,
            interim_bytes: 0,
            first_interim: None,
            response: Response::AwaitHead {
                buf: std::mem::take(&mut self.spare_response_head),
            },
        })
    }

    /// Moves request body bytes from the client's input to the origin's output, as far
    /// as the output's high-water mark allows.
    pub(super) fn pump_request_body(&mut self, now: Now<'_>) {
        let watermark = self.watermark();
        let max = self.cfg.limits.request_body_bytes_max;
        let Some(ex) = self.ex.as_mut() else { return };
        if !ex.is_attached() {
            return;
        }
        if ex.tunnel_mut().is_some() {
            self.relay_to_upstream(now);
            return;
        }
        let body = &mut ex.request_body;
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
}
