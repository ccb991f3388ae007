//! The response side of a connection: read the origin's head, decide where its body
//! goes (the client, a held buffer for a job, or nowhere when the cache answered),
//! stream it, and end the exchange: completed, truncated, or failed before it began.

use crate::http::body::{BodyDecoder, BodyEncoder};
use crate::http::response::{ResponseHead, parse_response_into};

use super::super::heads::{DownFraming, write_client_response, write_interim_response};
use super::super::local::error_body;
use super::super::stats::upstream_kind;
use super::caching::ResponsePlan;
use super::distilling::JobInput;
use super::exchange::{Exchange, Fetch, Response, ResponseBody, Sink, Stage};
use super::forward::peer_layer_failure;
use super::{Action, Conn, Now};

impl Conn {
    /// Reads the origin's response head into the connection's kept one (its buffers are
    /// reused from response to response, within `SPARE_BUF_MAX`).
    pub(super) fn parse_response_head(&mut self, now: Now<'_>) {
        let mut resp = std::mem::take(&mut self.spare_response);
        self.read_response_head(&mut resp, now);
        resp.recycle();
        if resp.held_bytes() <= super::SPARE_BUF_MAX {
            self.spare_response = resp;
        }
    }

    fn read_response_head(&mut self, resp: &mut ResponseHead, now: Now<'_>) {
        let limits = self.head_limits();
        let Some(ex) = self.ex.as_mut() else { return };
        let head_only = ex.head.is_head();
        let origin = &ex.dest.origin;
        let warm = ex.cache.as_deref().is_some_and(|c| c.warm_from.is_some());
        // No interim response for a client that was answered already (background).
        let client_minor = if ex.background {
            0
        } else {
            ex.head.minor_version
        };
        let Some(Fetch {
            response: Response::AwaitHead { buf },
            peer,
            interim_bytes,
            first_interim,
            ..
        }) = ex.stage.fetch_mut()
        else {
            return;
        };
        let forwarded = peer.is_some();
        // Interim heads are skipped by offset and drained once: many small ones in one
        // read cost one pass, not one move of the buffer each.
        let mut at = 0;
        loop {
            match parse_response_into(&buf[at..], limits, head_only, resp) {
                Ok(None) => {
                    buf.drain(..at);
                    return;
                }
                Err(e) => {
                    self.stats.upstream_failed(upstream_kind::INVALID);
                    let detail = format!("invalid response from origin {origin}: {e}");
                    self.fail_exchange(502, &detail, now);
                    return;
                }
                Ok(Some(n)) if resp.is_informational() => {
                    if resp.status == 101 {
                        let detail = format!("origin {origin} switched protocols unasked");
                        self.fail_exchange(502, &detail, now);
                        return;
                    }
                    *interim_bytes += n;
                    first_interim.get_or_insert(now.instant);
                    if *interim_bytes > limits.header_bytes_max {
                        self.stats.upstream_failed(upstream_kind::INVALID);
                        let detail = format!(
                            "origin {origin} sent more interim responses than \
                             limits.header_bytes_max allows"
                        );
                        self.fail_exchange(502, &detail, now);
                        return;
                    }
                    // Forwarded as they arrive (RFC 9110 §15.2), never stored or merged
                    // into the final response: 103 Early Hints lets a client on a slow
                    // link start on sub-resources. Not 100, which the proxy answered
                    // itself, and not to HTTP/1.0 clients, which know no 1xx. Advisory:
                    // dropped, not queued, while the client is not reading.
                    let queued = self.out.len();
                    if resp.status != 100
                        && client_minor >= 1
                        && queued < self.cfg.limits.io_buffer_bytes
                    {
                        write_interim_response(self.out.compacted_tail(), resp, &self.cfg.via_name);
                        self.stats.responses[0].incr();
                    }
                    at += n;
                }
                Ok(Some(n)) => {
                    if warm && (resp.status == 504 || peer_layer_failure(resp)) {
                        // Not held by the previous owner (504: only-if-cached).
                        let failed = (resp.status != 504).then_some("it answered 5xx itself");
                        self.warm_missed(failed, now);
                        return;
                    }
                    let buf = std::mem::take(buf);
                    if forwarded
                        && peer_layer_failure(resp)
                        && self.reroute("it answered 5xx itself", now)
                    {
                        return;
                    }
                    self.start_response(resp, now);
                    // Unless the exchange ended at its head (a background refresh with
                    // nothing to store): the rest is not for whatever came next.
                    if self
                        .ex
                        .as_ref()
                        .is_some_and(|ex| ex.response_body().is_some())
                    {
                        self.feed_body(&buf[at + n..], now);
                    }
                    self.spare_response_head = super::spare(buf);
                    return;
                }
            }
        }
    }

    pub(super) fn start_response(&mut self, resp: &ResponseHead, now: Now<'_>) {
        let Some(mut ex) = self.ex.take() else { return };
        let route = ex.fetch_mut().and_then(|f| f.peer.clone());
        let plan = match (ex.cache.take(), route) {
            (Some(mut ctx), Some(route)) => {
                self.keep_near(&mut ctx, resp, now);
                ex.cache = Some(ctx);
                ResponsePlan::Stream(self.forwarded_status(&route))
            }
            (Some(mut ctx), None) => {
                let plan = self.on_cached_response(&mut ctx, &ex.head, resp, now);
                ex.cache = Some(ctx);
                plan
            }
            (None, route) => {
                ResponsePlan::Stream(route.map_or_else(Vec::new, |r| self.forwarded_status(&r)))
            }
        };
        let (sink, enc) = match plan {
            // The client has its answer: the cache alone takes this response (stored
            // by `on_cached_response` or captured as it arrives).
            _ if ex.background => (Sink::Discard { then: None }, BodyEncoder::Raw),
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
                        let held = crate::cache::shard_refs::Held::new(object.clone());
                        self.serve_stored(&ex.head, &held, how, now);
                        None
                    }
                };
                (Sink::Discard { then }, BodyEncoder::Raw)
            }
            ResponsePlan::Stream(cache_status) => {
                self.start_client_response(&mut ex, resp, &cache_status, now)
            }
        };
        // The status the client sees (and the access log says): a whole fetched for
        // `bytes=0-` goes out as a 206 when its length is known.
        let down = DownFraming::choose(resp.framing, ex.head.minor_version);
        let all_as_range = ex.cache.as_deref().is_some_and(|c| c.whole_for_range)
            && resp.status == 200
            && matches!(down, DownFraming::Length(n) if n > 0);
        let status = if all_as_range { 206 } else { resp.status };
        if let Some(fetch) = ex.fetch_mut() {
            fetch.response = Response::Body(ResponseBody {
                status,
                dec: BodyDecoder::new(resp.framing),
                enc,
                sent: 0,
                reusable: resp.origin_keeps_alive(),
                sink,
            });
        }
        let moot = ex.background_is_moot() && resp.status != 304;
        self.ex = Some(ex);
        if moot {
            // Not stored: reading the rest would only hold the connection up.
            let why = BackgroundEnd::GaveWay("the new response is not to be stored");
            self.end_background(why, now);
        }
    }

    /// Writes the client's response head (or keeps it aside when the body is held for a
    /// job): where the origin's body goes, and how it is framed.
    pub(super) fn start_client_response(
        &mut self,
        ex: &mut Exchange,
        resp: &ResponseHead,
        cache_status: &[u8],
        now: Now<'_>,
    ) -> (Sink, BodyEncoder) {
        let minor = ex.head.minor_version;
        let down = DownFraming::choose(resp.framing, minor);
        ex.keep_alive = ex.keep_alive && down != DownFraming::Close && self.may_keep_alive();
        let mark = self.out.compacted_tail().len();
        write_client_response(
            self.out.compacted_tail(),
            resp,
            down,
            ex.keep_alive,
            minor,
            &self.cfg.via_name,
            cache_status,
            now.date,
            ex.cache.as_deref().is_some_and(|c| c.whole_for_range),
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

    pub(super) fn feed_body(&mut self, data: &[u8], now: Now<'_>) {
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
                    self.stats.upstream_failed(upstream_kind::INVALID);
                    self.truncate(&format!("invalid body from origin: {e}"), now);
                    return;
                }
            }
        }
        let capturing = ex.cache.as_deref().is_some_and(|c| c.is_capturing());
        if !body.dec.is_done() && ex.background && !capturing {
            // Grew past what may be stored: nothing left to gain from the rest.
            let why = BackgroundEnd::GaveWay("the new response outgrew cache.object_bytes_max");
            self.end_background(why, now);
            return;
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
    pub(super) fn finish_held(&mut self, now: Now<'_>) {
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
    pub(super) fn release_upstream(&mut self, ex: &mut Exchange) {
        let request_done = ex.request_body.dec.is_done();
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

    pub(super) fn complete_exchange(&mut self, now: Now<'_>) {
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
        self.recycle(*ex);
        self.advance(now);
    }

    /// Keeps the memory of a finished exchange's request head, destination and profile
    /// context for the connection's next request (as a hit does), then drops the rest:
    /// a keep-alive client's proxied requests then parse and route into it.
    fn recycle(&mut self, ex: Exchange) {
        let Exchange {
            head,
            dest,
            distill,
            stage,
            ..
        } = ex;
        self.keep_for_next(head, Some(dest), distill);
        if let Stage::Fetching(fetch) = stage {
            self.spare_up_head = super::spare(fetch.up_head);
            if fetch.to.host.capacity() <= super::SPARE_BUF_MAX {
                self.spare_to = Some(fetch.to);
            }
        }
    }

    /// The response head is out but its body cannot be completed: reset the client
    /// connection so the part it got is never taken for the whole.
    pub(super) fn truncate(&mut self, why: &str, now: Now<'_>) {
        if self.ex.as_ref().is_some_and(|ex| ex.background) {
            self.end_background(BackgroundEnd::Failed(why), now);
            return;
        }
        self.stats.truncated_responses.incr();
        if let Some(ex) = self.ex.take() {
            let sent = ex.response_body().map_or(0, |b| b.sent);
            tracing::warn!(client = %self.peer, origin = %ex.origin(), target = ex.head.target(),
                sent, "response truncated: {why}");
        }
        self.actions.push_back(Action::CloseUpstream);
        self.reset = true;
    }

    /// A background revalidation ended without refreshing the cache: the stale copy
    /// stays (the client has it already), the flight ends so waiting requests go on,
    /// and so does the connection. `Failed` is worth a warning; giving way is not.
    pub(super) fn end_background(&mut self, why: BackgroundEnd<'_>, now: Now<'_>) {
        self.drop_background(why);
        self.advance(now);
    }

    /// `end_background` without going on to the next request.
    pub(super) fn drop_background(&mut self, why: BackgroundEnd<'_>) {
        let Some(ex) = self.ex.take() else { return };
        match why {
            BackgroundEnd::Failed(why) => tracing::warn!(origin = %ex.origin(),
                target = ex.head.target(), "background revalidation failed: {why}"),
            BackgroundEnd::GaveWay(why) => tracing::debug!(origin = %ex.origin(),
                target = ex.head.target(), "background revalidation dropped: {why}"),
        }
        // An acquisition the driver has not taken yet is withdrawn, not cancelled: the
        // driver would carry it out for whatever exchange comes next.
        match self
            .actions
            .iter()
            .position(|a| matches!(a, Action::Acquire { .. }))
        {
            Some(queued) => {
                self.actions.remove(queued);
            }
            None => self.actions.push_back(Action::CloseUpstream),
        }
        self.up_out.clear();
        drop(ex);
    }

    /// The exchange failed before its response started: answer with `status`.
    pub(super) fn fail_exchange(&mut self, status: u16, detail: &str, now: Now<'_>) {
        self.end_exchange_with(status, detail, true, now);
    }

    /// `fail_exchange`, with the log line left to the caller when not `logged` (a
    /// refusal logged once a minute per client, not once per request).
    pub(super) fn end_exchange_with(
        &mut self,
        status: u16,
        detail: &str,
        logged: bool,
        now: Now<'_>,
    ) {
        // A tunnel's client is past its response: it is closed, never answered again.
        if self.close_tunnel(detail, now) {
            return;
        }
        if self.ex.as_ref().is_some_and(|ex| ex.background) {
            self.end_background(BackgroundEnd::Failed(&format!("{status}: {detail}")), now);
            return;
        }
        let Some(ex) = self.ex.take() else { return };
        if ex.response_body().is_some() {
            self.ex = Some(ex);
            self.truncate(detail, now);
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
        if logged {
            tracing::warn!(client = %self.peer, target = ex.head.target(), "{status}: {detail}");
        }
        // After a CONNECT that failed the client may have sent tunnel bytes already.
        let keep = ex.keep_alive
            && ex.request_body.dec.is_done()
            && !matches!(status, 400 | 413)
            && ex.head.method() != "CONNECT";
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
}

/// Why a background revalidation ended before it refreshed the cache.
#[derive(Debug, Clone, Copy)]
pub(super) enum BackgroundEnd<'a> {
    /// The origin failed, or took too long.
    Failed(&'a str),
    /// It stopped itself: nothing to store, or the client needed the connection.
    GaveWay(&'a str),
}
