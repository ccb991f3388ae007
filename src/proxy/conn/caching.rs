//! What a connection does with the shared cache (RFC 9111): answer a request from it,
//! revalidate a stale entry, wait on another request's fetch of the same URL, store
//! what comes back, invalidate after unsafe methods, and purge.
//!
//! The rules themselves are sans-IO functions in `crate::cache`; this file decides, per
//! request and per response, which of them apply.

use std::sync::Arc;

use crate::cache::Object;
use crate::cache::control::CacheControl;
use crate::cache::flight::{Flight, FlightGuard};
use crate::cache::freshness::{Heuristic, Times, Verdict, storable, usable_on_error, verdict};
use crate::cache::key;
use crate::cache::object::{Build, Fields, read_times};
use crate::cache::store::{Fetch, Found};
use crate::http::body::Framing;
use crate::http::headers::{list_items, trim, write_decimal, write_field};
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;

use super::super::held::HeldBody;

use super::super::heads::write_connection;
use super::distilling::DistillCtx;
use super::{Conn, Now};
use crate::http::target::Destination;

/// A request's dealings with the cache while it is forwarded.
#[derive(Debug)]
pub(super) struct CacheCtx {
    primary: Arc<str>,
    req_cc: CacheControl,
    had_authorization: bool,
    /// The stored response being revalidated.
    stale: Option<Found>,
    /// Held while this request fetches for others (collapsing).
    leader: Option<FlightGuard>,
    capture: Option<Capture>,
    request_time: u64,
    /// RFC 9211 `fwd` parameter: why the request went to the origin.
    fwd: &'static str,
}

/// A response being stored as it streams to the client.
#[derive(Debug)]
struct Capture {
    fields: Fields,
    times: Times,
    body: HeldBody,
}

/// What a request does after consulting the cache.
pub(super) enum Consult {
    /// Answered from the cache; nothing goes upstream.
    Answered,
    Fetch(Option<Box<CacheCtx>>),
    /// Another request is fetching this URL: wait on its flight.
    Wait(Box<CacheCtx>, Arc<Flight>),
    /// A fresh stored original to distil for this request.
    DistillStored(Arc<Object>, crate::distill::Work),
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Found({})", self.key)
    }
}

/// How a response from the cache is described in Cache-Status.
#[derive(Clone, Copy)]
pub(super) enum Served {
    Hit,
    /// Made here from what the origin (`fwd`) sent: a distilled response.
    Made {
        fwd: &'static str,
        stored: bool,
    },
    /// Stale, served while another request revalidates it (RFC 5861).
    StaleWhileRevalidate,
    /// Revalidated with the origin just now (it answered 304).
    Revalidated,
    /// The origin failed and the stale response is allowed on error (RFC 5861).
    StaleIfError,
}

impl CacheCtx {
    /// Copies a piece of the body into the capture; gives up past the object limit.
    pub(super) fn capture_body(&mut self, piece: &[u8], max: u64) {
        let Some(cap) = self.capture.as_mut() else {
            return;
        };
        if !cap.body.push(piece, max) {
            self.capture = None; // streamed through, not stored
        }
    }
}

impl Conn {
    /// Decides how `head` (routed to `dest`) uses the cache. `waited` is true when the
    /// request already waited on a flight: it does not wait twice.
    pub(super) fn consult_cache(
        &mut self,
        head: &RequestHead,
        dest: &Destination,
        distill: Option<&DistillCtx>,
        waited: bool,
        now: Now<'_>,
    ) -> Consult {
        let Some(store) = self.cache.clone() else {
            return Consult::Fetch(None);
        };
        let method = head.method();
        let readable = matches!(method, "GET" | "HEAD") && !head.has_body();
        if !readable {
            return Consult::Fetch(Some(self.cache_ctx(head, dest, "bypass", now)));
        }
        let mut ctx = self.cache_ctx(head, dest, "miss", now);
        if ctx.had_authorization {
            // Never answer an authenticated request from the shared store.
            ctx.fwd = "bypass";
            return Consult::Fetch(Some(ctx));
        }
        if let Some(d) = distill
            && let Some(found) = store.lookup(&d.variant_key(&ctx.primary), head.fields())
        {
            let o = &found.object;
            let fresh = verdict(&ctx.req_cc, &o.control, o.lifetime, o.age(now.unix_secs));
            if matches!(fresh, Verdict::Fresh | Verdict::StaleAccepted) {
                self.stats.cache_hits.incr();
                self.serve_stored(head, o, Served::Hit, now);
                return Consult::Answered;
            }
            // A stale distilled variant is made again from the original (which is
            // what gets revalidated).
        }
        let found = store.lookup(&ctx.primary, head.fields());
        if let Some(found) = found {
            let o = &found.object;
            let age = o.age(now.unix_secs);
            match verdict(&ctx.req_cc, &o.control, o.lifetime, age) {
                Verdict::Fresh | Verdict::StaleAccepted => {
                    if let Some(work) = distill.and_then(|d| self.work_on_stored(d, o)) {
                        self.stats.cache_hits.incr();
                        return Consult::DistillStored(found.object.clone(), work);
                    }
                    self.stats.cache_hits.incr();
                    self.serve_stored(head, &found.object, Served::Hit, now);
                    return Consult::Answered;
                }
                Verdict::StaleWhileRevalidate => {
                    if let Fetch::Leader(guard) = store.fetch(&ctx.primary) {
                        ctx.leader = Some(guard);
                        ctx.fwd = "stale";
                        ctx.stale = Some(found);
                        return Consult::Fetch(Some(ctx));
                    }
                    self.stats.cache_hits.incr();
                    self.serve_stored(head, &found.object, Served::StaleWhileRevalidate, now);
                    return Consult::Answered;
                }
                Verdict::Revalidate => {
                    ctx.fwd = "stale";
                    ctx.stale = Some(found);
                }
            }
        }
        if ctx.req_cc.only_if_cached {
            self.stats.cache_misses.incr();
            let body = super::error_body(504, "not in the cache (only-if-cached)");
            self.answer_local(head, 504, &body, now);
            return Consult::Answered;
        }
        self.stats.cache_misses.incr();
        if method == "HEAD" {
            return Consult::Fetch(Some(ctx)); // a HEAD response is never stored
        }
        match store.fetch(&ctx.primary) {
            Fetch::Leader(guard) => {
                ctx.leader = Some(guard);
                Consult::Fetch(Some(ctx))
            }
            Fetch::Follower(_) if waited => Consult::Fetch(Some(ctx)),
            Fetch::Follower(flight) => {
                self.stats.cache_collapsed.incr();
                Consult::Wait(ctx, flight)
            }
        }
    }

    fn cache_ctx(
        &self,
        head: &RequestHead,
        dest: &Destination,
        fwd: &'static str,
        now: Now<'_>,
    ) -> Box<CacheCtx> {
        let mut req_cc = CacheControl::from_fields(head.fields());
        let has_cc = head
            .fields()
            .any(|(n, _)| n.eq_ignore_ascii_case("cache-control"));
        if !has_cc && pragma_no_cache(head) {
            req_cc.no_cache = true; // RFC 9111 §5.4: HTTP/1.0 caches' Pragma
        }
        Box::new(CacheCtx {
            primary: key::primary(dest),
            req_cc,
            had_authorization: head
                .fields()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization")),
            stale: None,
            leader: None,
            capture: None,
            request_time: now.unix_secs,
            fwd,
        })
    }

    /// Validators to send upstream when the request revalidates a stored response.
    pub(super) fn revalidation(ctx: Option<&CacheCtx>) -> Option<&Object> {
        ctx.and_then(|c| c.stale.as_ref()).map(|f| &*f.object)
    }

    /// The response head arrived for a request with a cache context. Either the cache
    /// answers instead (revalidated, or stale-if-error) and the origin's body is
    /// discarded, or the response streams on: then this returns its Cache-Status line
    /// and, when it may be stored, starts capturing it.
    pub(super) fn on_cached_response(
        &mut self,
        ctx: &mut CacheCtx,
        head: &RequestHead,
        resp: &ResponseHead,
        now: Now<'_>,
    ) -> ResponsePlan {
        let store = match self.cache.clone() {
            Some(s) => s,
            None => return ResponsePlan::Stream(Vec::new()),
        };
        if !matches!(head.method(), "GET" | "HEAD" | "OPTIONS" | "TRACE") {
            if (200..400).contains(&resp.status) {
                self.invalidate(&store, ctx, resp);
            }
            return ResponsePlan::Stream(cache_status_line(
                ctx.fwd,
                Some(resp.status),
                false,
                None,
            ));
        }
        let fields = Fields::from_response(resp.status, resp.reason(), resp.fields(), |n| {
            resp.connection.drops(n)
        });
        if let Some(stale) = ctx.stale.take() {
            if resp.status == 304 {
                let object = refreshed(&stale.object, &fields, ctx.request_time, now, self.build());
                let object = store.replace(&stale.key, object);
                self.stats.cache_revalidated.incr();
                return ResponsePlan::FromStore(object, Served::Revalidated);
            }
            let o = &stale.object;
            let age = o.age(now.unix_secs);
            if resp.status >= 500 && usable_on_error(&ctx.req_cc, &o.control, o.lifetime, age) {
                self.stats.cache_hits.incr();
                return ResponsePlan::FromStore(o.clone(), Served::StaleIfError);
            }
        }
        let times = read_times(&fields, ctx.request_time, now.unix_secs);
        let admissible = head.method() == "GET" && self.admissible(ctx, &fields, &times, resp);
        if admissible {
            let expected = match resp.framing {
                Framing::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
                _ => 0,
            };
            ctx.capture = HeldBody::new(&self.held, expected).map(|body| Capture {
                fields,
                times,
                body,
            });
            if ctx.capture.is_none() {
                self.stats.held_budget_full.incr();
            }
        }
        let stored = ctx.capture.is_some();
        ResponsePlan::Stream(cache_status_line(ctx.fwd, Some(resp.status), stored, None))
    }

    /// May this response be stored (RFC 9111 §3), and is it worth it here?
    fn admissible(
        &self,
        ctx: &CacheCtx,
        fields: &Fields,
        times: &Times,
        resp: &ResponseHead,
    ) -> bool {
        let cc = CacheControl::from_fields(fields.iter());
        let rules = storable(
            "GET",
            resp.status,
            &ctx.req_cc,
            &cc,
            times,
            ctx.had_authorization,
        );
        if rules.is_err() || fields.vary().is_err() {
            return false;
        }
        if resp.status >= 400 {
            // Errors a request's own headers can provoke are never stored, so one bad
            // request cannot poison the URL for everyone (and no heuristic for errors).
            let explicit = cc.max_age.is_some() || cc.s_maxage.is_some() || times.expires.is_some();
            if matches!(resp.status, 400 | 413 | 414 | 431) || !explicit {
                return false;
            }
        }
        let max = self.cfg.cache.object_bytes_max;
        match resp.framing {
            Framing::Length(n) => n <= max,
            Framing::Chunked => true,
            // A close-delimited body cannot be told apart from a truncated one.
            Framing::Close => false,
            Framing::None => true,
        }
    }

    /// The response ended complete: store what was captured (before the flight ends, so
    /// the requests that waited on it find it).
    pub(super) fn finish_capture(&self, ctx: &mut CacheCtx, head: &RequestHead) {
        let (Some(store), Some(cap)) = (self.cache.as_ref(), ctx.capture.take()) else {
            return;
        };
        let body = crate::cache::body::stored(cap.body.as_slice());
        drop(cap.body);
        let object = Arc::new(Object::new(cap.fields, body, cap.times, self.build()));
        if store.insert(&ctx.primary, object, head.fields()) {
            self.stats.cache_stores.incr();
        }
    }

    /// The origin could not be reached or failed: may the stale response answer?
    pub(super) fn serve_stale_on_error(
        &mut self,
        ctx: &CacheCtx,
        head: &RequestHead,
        now: Now<'_>,
    ) -> bool {
        let Some(stale) = ctx.stale.as_ref() else {
            return false;
        };
        let o = &stale.object;
        if !usable_on_error(&ctx.req_cc, &o.control, o.lifetime, o.age(now.unix_secs)) {
            return false;
        }
        self.stats.cache_hits.incr();
        self.serve_stored(head, o, Served::StaleIfError, now);
        true
    }

    /// PURGE from an allowed address removes a URL and all its variants.
    pub(super) fn purge(&mut self, head: &RequestHead, dest: &Destination, now: Now<'_>) {
        let allowed = self.cfg.cache.purge_from.contains(&self.peer.ip());
        let (status, detail) = match self.cache.as_ref() {
            None => (404, "the cache is off"),
            Some(_) if !allowed => (403, "PURGE is not allowed from this address"),
            Some(store) if self.remove_with_variants(store, &key::primary(dest)) => (200, "purged"),
            Some(_) => (404, "not in the cache"),
        };
        if status == 200 {
            self.stats.cache_purges.incr();
        }
        tracing::info!(client = %self.peer, target = head.target(), status, "PURGE: {detail}");
        let body = super::error_body(status, detail);
        self.answer_local(head, status, &body, now);
    }

    /// RFC 9111 §4.4: a successful unsafe request invalidates the target URI and the
    /// Location / Content-Location URIs of the same origin.
    fn invalidate(&self, store: &crate::cache::Store, ctx: &CacheCtx, resp: &ResponseHead) {
        self.remove_with_variants(store, &ctx.primary);
        let host = key::host_of(&ctx.primary);
        for (name, value) in resp.fields() {
            if !(name.eq_ignore_ascii_case("location")
                || name.eq_ignore_ascii_case("content-location"))
            {
                continue;
            }
            let Ok(v) = std::str::from_utf8(trim(value)) else {
                continue;
            };
            let path = match v.strip_prefix("http://") {
                Some(rest) => match rest.find('/') {
                    Some(i) if rest[..i].eq_ignore_ascii_case(host) => &rest[i..],
                    _ => continue, // another origin: not ours to invalidate
                },
                None => v,
            };
            if let Some(k) = key::with_path(&ctx.primary, path) {
                self.remove_with_variants(store, &k);
            }
        }
        self.stats.cache_invalidations.incr();
    }

    /// Removes a URL, its Vary variants and its distilled variants; true when any was
    /// stored.
    fn remove_with_variants(&self, store: &crate::cache::Store, primary: &str) -> bool {
        let profiles = &self.cfg.distill.choice.profiles;
        let mut removed = store.remove(primary);
        for k in super::distilling::all_variant_keys(primary, profiles) {
            removed |= store.remove(&k);
        }
        removed
    }

    fn build(&self) -> Build<'_> {
        Build {
            via_name: &self.cfg.via_name,
            heuristic: Heuristic {
                percent: self.cfg.cache.heuristic_percent,
                max_secs: self.cfg.cache.heuristic_max_s,
            },
        }
    }

    /// Writes a stored response for `head`: the stored head and body as shared segments,
    /// the per-response fields fresh; a 304 when the client's own validators match.
    pub(super) fn serve_stored(
        &mut self,
        head: &RequestHead,
        o: &Arc<Object>,
        how: Served,
        now: Now<'_>,
    ) {
        let age = o.age(now.unix_secs);
        let ttl = crate::cache::freshness::ttl(o.lifetime, age);
        let keep = head.wants_keep_alive() && !self.client_eof;
        let not_modified = o.status() == 200 && client_validators_match(head, o);
        let mut fresh = Vec::with_capacity(160);
        if not_modified {
            write_not_modified_head(&mut fresh, o);
        }
        write_field(&mut fresh, b"Date", now.date);
        fresh.extend_from_slice(b"Age: ");
        write_decimal(&mut fresh, age);
        fresh.extend_from_slice(b"\r\n");
        let status_line = match how {
            Served::Hit => cache_status_line("", None, false, Some(ttl)),
            Served::StaleWhileRevalidate => {
                let mut l = cache_status_line("", None, false, Some(ttl));
                l.truncate(l.len() - 2);
                l.extend_from_slice(b"; detail=stale-while-revalidate\r\n");
                l
            }
            Served::Revalidated => cache_status_line("stale", Some(304), false, Some(ttl)),
            Served::Made { fwd, stored } => cache_status_line(fwd, Some(200), stored, Some(ttl)),
            Served::StaleIfError => {
                let mut l = cache_status_line("", None, false, Some(ttl));
                l.truncate(l.len() - 2);
                l.extend_from_slice(b"; detail=stale-if-error\r\n");
                l
            }
        };
        fresh.extend_from_slice(&status_line);
        write_connection(&mut fresh, keep, head.minor_version);
        fresh.extend_from_slice(b"\r\n");
        let mut sent = 0;
        if not_modified {
            self.out.extend(&fresh);
        } else {
            self.out.push_shared(o.head.clone());
            self.out.extend(&fresh);
            if !head.is_head() {
                self.out.push_shared(o.body.clone());
                sent = o.body.len() as u64;
            }
        }
        if !keep {
            self.no_more_requests = true;
        }
        let status = if not_modified { 304 } else { o.status() };
        self.log_access(head, status, sent, now.instant, now, None);
    }
}

/// What the response path does after the cache looked at a response head.
pub(super) enum ResponsePlan {
    /// Answer from this stored object (revalidated, or stale-if-error); the origin's
    /// body is read and dropped.
    FromStore(Arc<Object>, Served),
    /// Stream the response on, with this Cache-Status line.
    Stream(Vec<u8>),
}

fn pragma_no_cache(head: &RequestHead) -> bool {
    head.fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case("pragma"))
        .flat_map(|(_, v)| list_items(v))
        .any(|d| d.eq_ignore_ascii_case(b"no-cache"))
}

/// `Cache-Status: distilld; hit|fwd=...; fwd-status=N; stored; ttl=N` (RFC 9211).
fn cache_status_line(
    fwd: &str,
    fwd_status: Option<u16>,
    stored: bool,
    ttl: Option<i64>,
) -> Vec<u8> {
    let mut l = Vec::with_capacity(64);
    l.extend_from_slice(b"Cache-Status: distilld; ");
    if fwd.is_empty() {
        l.extend_from_slice(b"hit");
    } else {
        l.extend_from_slice(b"fwd=");
        l.extend_from_slice(fwd.as_bytes());
        if let Some(s) = fwd_status {
            l.extend_from_slice(b"; fwd-status=");
            write_decimal(&mut l, u64::from(s));
        }
    }
    if stored {
        l.extend_from_slice(b"; stored");
    }
    if let Some(t) = ttl {
        l.extend_from_slice(b"; ttl=");
        if t < 0 {
            l.push(b'-');
        }
        write_decimal(&mut l, t.unsigned_abs());
    }
    l.extend_from_slice(b"\r\n");
    l
}

/// The stored object updated by a 304's fields (RFC 9111 §4.3.4), with new times.
fn refreshed(
    old: &Object,
    newer: &Fields,
    request_time: u64,
    now: Now<'_>,
    b: Build<'_>,
) -> Object {
    let mut fields = old.fields(b.via_name);
    fields.update_from(newer);
    let times = read_times(&fields, request_time, now.unix_secs);
    Object::new(fields, old.body.clone(), times, b)
}

/// RFC 9110 §13.1.2 / §13.1.3 (weak comparison for If-None-Match), evaluated by the
/// cache for GET and HEAD.
fn client_validators_match(head: &RequestHead, o: &Object) -> bool {
    let mut inm = head
        .fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
        .peekable();
    if inm.peek().is_some() {
        let Some(etag) = o.etag() else {
            return false;
        };
        let weak = |t: &[u8]| trim(t.strip_prefix(b"W/").unwrap_or(t)).to_vec();
        let ours = weak(etag);
        return inm
            .flat_map(|(_, v)| list_items(v))
            .any(|t| t == b"*" || weak(t) == ours);
    }
    let since = head
        .fields()
        .find(|(n, _)| n.eq_ignore_ascii_case("if-modified-since"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok());
    let modified = o
        .last_modified()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok());
    matches!((since, modified), (Some(s), Some(m)) if m <= s)
}

/// The head of a 304 answered from the cache: the fields RFC 9110 §15.4.5 says a 304
/// repeats (without the blank line; Date, Age and the rest follow).
fn write_not_modified_head(out: &mut Vec<u8>, o: &Object) {
    out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\n");
    for (name, value) in o.head_fields() {
        let repeated = [
            "etag",
            "cache-control",
            "content-location",
            "expires",
            "vary",
            "last-modified",
            "via",
        ]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name));
        if repeated {
            write_field(out, name.as_bytes(), value);
        }
    }
}
