//! What a connection does with the shared cache (RFC 9111): answer a request from it,
//! revalidate a stale entry, wait on another request's fetch of the same URL, store
//! what comes back, invalidate after unsafe methods, and purge.
//!
//! The rules themselves are sans-IO functions in `crate::cache`; this file decides, per
//! request and per response, which of them apply.

use std::sync::Arc;

use crate::cache::Object;
use crate::cache::Store;
use crate::cache::control::CacheControl;
use crate::cache::flight::FlightGuard;
use crate::cache::freshness::{
    Heuristic, Times, Verdict, lifetime, storable, usable_on_error, verdict,
};
use crate::cache::key;
use crate::cache::object::{Build, Fields, read_times};
use crate::cache::shard_refs::Held;
use crate::cache::store::{FlightRole, Found};
use crate::cache::targeted::response_control;
use crate::http::body::Framing;
use crate::http::headers::{list_items, trim};
use crate::http::request::{Field, RequestHead};
use crate::http::response::ResponseHead;

use super::super::held::HeldBody;

use super::super::local::error_body;
use super::distilling::DistillCtx;
use super::next::Next;
use super::stored::{Served, cache_status_line, with_detail};
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
    /// What this context stores into: the node's cache, or the near-cache (a forward's
    /// answer kept under `primary`, which is then the client's variant key).
    near: bool,
    /// The miss is being filled from this peer, the key's previous owner, instead of
    /// the origin (`Cache-Control: only-if-cached`).
    pub(super) warm_from: Option<usize>,
    /// The previous owner was asked already: the origin is next.
    pub(super) warm_tried: bool,
    /// A near copy's freshness left at the owner (its Cache-Status `ttl`): the owner may
    /// read freshness differently (its targeted fields, its heuristics), so the lifetime
    /// computed here could outrun the owner's.
    owner_ttl: Option<i64>,
    /// The client named the destination (the forward proxy): targeted cache-control
    /// fields are not for this cache then.
    screened: bool,
    /// The request asked for part of the response or set a precondition: only a 200
    /// answer to it is the whole representation, fit to store for everyone.
    asks_part: bool,
    /// `Range: bytes=0-` on a miss: what is asked is the whole representation, so it is
    /// fetched whole (and stored, and shared with the requests that wait on it) and
    /// sent as a 206 of all its bytes when its length is known.
    pub(super) whole_for_range: bool,
}

/// A response being stored as it streams to the client.
#[derive(Debug)]
struct Capture {
    fields: Fields,
    times: Times,
    body: HeldBody,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Found({})", self.key)
    }
}

impl CacheCtx {
    /// A miss this request fetches for the cache (it leads the flight), with nothing
    /// stored to revalidate and no previous owner asked yet.
    pub(super) fn is_cold_miss(&self) -> bool {
        !self.near
            && self.leader.is_some()
            && self.stale.is_none()
            && !self.had_authorization
            && !self.warm_tried
            && !self.req_cc.only_if_cached
            && !self.whole_for_range // a warm-up asks its peer for the request as sent
    }

    pub(super) fn primary(&self) -> &str {
        &self.primary
    }

    /// The response is being copied for the store.
    pub(super) fn is_capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Copies a piece of the body into the capture; gives up past the object limit.
    pub(super) fn capture_body(&mut self, piece: &[u8], max: u64) {
        let Some(cap) = self.capture.as_mut() else {
            return;
        };
        if !cap.body.push(piece, max) {
            self.capture = None; // streamed through, not stored
            self.leader = None; // and those waiting on it fetch for themselves
        }
    }
}

impl Conn {
    /// Decides where `head` (routed to `dest`) goes: the cache or the origin, or it
    /// waits on another request's fetch. `waited` is true when the request already
    /// waited on a flight: it does not wait twice.
    pub(super) fn consult_cache(
        &mut self,
        head: &RequestHead,
        dest: &Destination,
        distill: Option<&DistillCtx>,
        waited: bool,
        now: Now<'_>,
    ) -> Next {
        if self.cache.is_none() {
            return Next::Origin(None);
        }
        let method = head.method();
        let readable = matches!(method, "GET" | "HEAD")
            && !head.has_body()
            && !has_unevaluated_precondition(head);
        if !readable {
            return Next::Origin(Some(self.cache_ctx(head, dest, "bypass", now)));
        }
        // A usable stored response is looked up with keys written into the
        // connection's reused buffers and borrowed from the table: a hit builds nothing.
        let (mut key, mut variant) = (
            std::mem::take(&mut self.key_buf),
            std::mem::take(&mut self.variant_buf),
        );
        key::write_primary(dest, &mut key);
        let hit = self.usable_stored(head, &key, &mut variant, distill, now);
        (self.key_buf, self.variant_buf) = (super::spare_text(key), super::spare_text(variant));
        match hit {
            Some(next) => next,
            None => self.consult_cache_for_fetch(head, dest, distill, waited, now),
        }
    }

    /// A fresh (or acceptably stale) stored response for `head`: this client's
    /// distilled variant, or the original (served, or distilled for this client).
    fn usable_stored(
        &self,
        head: &RequestHead,
        primary: &str,
        variant: &mut String,
        distill: Option<&DistillCtx>,
        now: Now<'_>,
    ) -> Option<Next> {
        let store = self.cache.as_deref()?;
        let req_cc = request_cache_control(head);
        if head.first(Field::Authorization).is_some() {
            return None; // never answered from the shared store
        }
        let usable = |o: &Object| {
            let fresh = verdict(&req_cc, &o.control, o.lifetime, o.age(now.unix_secs));
            matches!(fresh, Verdict::Fresh | Verdict::StaleAccepted)
        };
        // The shard's own reference: no count another core writes.
        let held = |o: &Arc<Object>| usable(o).then(|| self.local.refs.get(o));
        if let Some(d) = distill {
            d.write_variant_key(primary, variant);
            if let Some(o) = store.with_stored(variant, head.fields(), |o, _| held(o)) {
                self.stats.cache_hits.incr();
                return Some(Next::Stored(o, Served::Hit));
            }
        }
        let o = store.with_stored(primary, head.fields(), |o, _| held(o))?;
        self.stats.cache_hits.incr();
        Some(match distill.and_then(|d| self.work_on_stored(d, &o)) {
            Some(work) => Next::DistillStored(o.arc().clone(), work),
            None => Next::Stored(o, Served::Hit),
        })
    }

    /// `consult_cache` when nothing stored can be served as it is: a miss, a stale
    /// response to revalidate, or a fetch to wait on.
    fn consult_cache_for_fetch(
        &mut self,
        head: &RequestHead,
        dest: &Destination,
        distill: Option<&DistillCtx>,
        waited: bool,
        now: Now<'_>,
    ) -> Next {
        let Some(store) = self.cache.clone() else {
            return Next::Origin(None);
        };
        let method = head.method();
        let mut ctx = self.cache_ctx(head, dest, "miss", now);
        if ctx.had_authorization {
            // Never answer an authenticated request from the shared store.
            ctx.fwd = "bypass";
            return Next::Origin(Some(ctx));
        }
        // (A usable variant was looked for by `usable_stored` already.)
        let ctx = match self.stored_original(&store, head, ctx, distill, now) {
            Ok(next) => return next,
            Err(ctx) => ctx,
        };
        self.stats.cache_misses.incr();
        if ctx.req_cc.only_if_cached {
            return Next::Local(504, error_body(504, "not in the cache (only-if-cached)"));
        }
        if method == "HEAD" {
            return Next::Origin(Some(ctx)); // a HEAD response is never stored
        }
        let mut ctx = ctx;
        let ranged = match head.first(Field::Range) {
            // (With If-Range the answer depends on the validator: that is the origin's.)
            Some(r)
                if is_from_start(r) && method == "GET" && head.first(Field::IfRange).is_none() =>
            {
                ctx.whole_for_range = true;
                ctx.asks_part = false; // the answer is the whole, fit to store
                false
            }
            Some(_) => true,
            None => false,
        };
        self.join_flight(&store, ctx, waited, ranged)
    }

    /// The stored original: served (or distilled) when usable, revalidated by this
    /// request while others are served it stale, or else (`Err`) a miss, remembered in
    /// the context when it is to be revalidated.
    fn stored_original(
        &self,
        store: &Store,
        head: &RequestHead,
        mut ctx: Box<CacheCtx>,
        distill: Option<&DistillCtx>,
        now: Now<'_>,
    ) -> Result<Next, Box<CacheCtx>> {
        let Some(found) = store.lookup(&ctx.primary, head.fields()) else {
            return Err(ctx);
        };
        let o = &found.object;
        let age = o.age(now.unix_secs);
        match verdict(&ctx.req_cc, &o.control, o.lifetime, age) {
            Verdict::Fresh | Verdict::StaleAccepted => {
                self.stats.cache_hits.incr();
                Ok(match distill.and_then(|d| self.work_on_stored(d, o)) {
                    Some(work) => Next::DistillStored(found.object, work),
                    None => Next::Stored(Held::new(found.object), Served::Hit),
                })
            }
            Verdict::StaleWhileRevalidate => {
                // only-if-cached: the stale copy, and no request to the origin at all.
                let may_fetch = !ctx.req_cc.only_if_cached;
                if may_fetch && let FlightRole::Leader(guard) = store.fetch(&ctx.primary) {
                    ctx.leader = Some(guard);
                    ctx.fwd = "stale";
                    let stale = Held::new(found.object.clone());
                    ctx.stale = Some(found);
                    ctx.asks_part = false;
                    self.stats.cache_hits.incr();
                    // RFC 5861 §3: this request too is answered with the stale copy at
                    // once; it revalidates in the background. A HEAD (whose answer is
                    // never stored) and a request that wants the copy distilled wait for
                    // the revalidation, as before.
                    let distilled = distill.and_then(|d| self.work_on_stored(d, &stale));
                    return Ok(match (head.method(), distilled) {
                        ("GET", None) => Next::StaleThenRevalidate(stale, ctx),
                        _ => Next::Origin(Some(ctx)),
                    });
                }
                self.stats.cache_hits.incr();
                Ok(Next::Stored(
                    Held::new(found.object),
                    Served::StaleWhileRevalidate,
                ))
            }
            Verdict::Revalidate => {
                ctx.fwd = "stale";
                ctx.stale = Some(found);
                ctx.asks_part = false; // the cache's own validators go, not the client's
                Err(ctx)
            }
        }
    }

    /// A miss: lead the URL's fetch, or wait on the request that leads it. A range
    /// request waits on another's fetch of the whole (and is then answered from the
    /// cache) but leads none: its 206 is not stored, so others would wait for nothing.
    fn join_flight(
        &self,
        store: &Store,
        mut ctx: Box<CacheCtx>,
        waited: bool,
        ranged: bool,
    ) -> Next {
        match store.fetch(&ctx.primary) {
            FlightRole::Leader(guard) if ranged => {
                // Ended at once: a request that joined it meanwhile (from another shard)
                // is woken now and fetches for itself.
                drop(guard);
                Next::Origin(Some(ctx))
            }
            FlightRole::Leader(guard) => {
                ctx.leader = Some(guard);
                Next::Origin(Some(ctx))
            }
            FlightRole::Follower(_) if waited => Next::Origin(Some(ctx)),
            FlightRole::Follower(flight) => {
                self.stats.cache_collapsed.incr();
                Next::Wait(ctx, flight)
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
        Box::new(CacheCtx {
            primary: key::primary(dest),
            req_cc: request_cache_control(head),
            had_authorization: head.has(Field::Authorization),
            stale: None,
            leader: None,
            capture: None,
            request_time: now.unix_secs,
            fwd,
            near: false,
            warm_from: None,
            warm_tried: false,
            owner_ttl: None,
            screened: dest.screened,
            asks_part: PART_OR_CONDITION.iter().any(|&f| head.has(f)),
            whole_for_range: false,
        })
    }

    /// A context that keeps a forward's answer in the near-cache under `key`.
    pub(super) fn near_ctx(
        &self,
        head: &RequestHead,
        dest: &Destination,
        key: Arc<str>,
        now: Now<'_>,
    ) -> Box<CacheCtx> {
        let mut ctx = self.cache_ctx(head, dest, "bypass", now);
        ctx.primary = key;
        ctx.near = true;
        ctx
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
        if ctx.warm_from.is_some() {
            self.stats.cluster_warm_fills.incr();
        }
        let fields = Fields::from_response(resp.status, resp.reason(), resp.fields(), |n| {
            resp.connection.drops(n)
        });
        if let Some(stale) = ctx.stale.take() {
            if resp.status == 304 {
                let b = self.build(ctx.screened);
                let object = refreshed(&stale.object, &fields, ctx.request_time, now, b);
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
            self.start_capture(ctx, fields, times, resp);
        }
        if ctx.capture.is_none() {
            // Nothing will be stored: requests waiting on this fetch go on now.
            ctx.leader = None;
        }
        let stored = ctx.capture.is_some();
        let line = cache_status_line(ctx.fwd, Some(resp.status), stored, None);
        ResponsePlan::Stream(match ctx.warm_from.and_then(|n| self.node_id(n)) {
            Some(id) => with_detail(line, &format!("warm-from-{id}")),
            None => line,
        })
    }

    fn node_id(&self, node: usize) -> Option<&str> {
        let c = self.cfg.cluster.as_ref()?;
        c.nodes.get(node).map(|n| n.id.as_str())
    }

    /// May this response be stored (RFC 9111 §3), and is it worth it here?
    fn admissible(
        &self,
        ctx: &CacheCtx,
        fields: &Fields,
        times: &Times,
        resp: &ResponseHead,
    ) -> bool {
        let cc = response_control(fields.iter(), self.build(ctx.screened).targeted);
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
        // Errors a request's own fields or body can provoke (a bad head, a failed
        // precondition, an unsatisfiable range) are never stored, even with explicit
        // freshness, and neither is anything but a 200 to a request for part of the
        // response or with a precondition, so one request cannot poison the URL for
        // everyone. (414 is about the target, which is the key itself: stored as any 4xx.)
        if matches!(resp.status, 400 | 412 | 413 | 416 | 417 | 431)
            || (ctx.asks_part && resp.status != 200)
        {
            return false;
        }
        // An error stale on arrival is never worth keeping: it would only be
        // "revalidated" by a 304 meant for the representation it replaced.
        if resp.status >= 400
            && lifetime(&cc, times, resp.status, self.build(ctx.screened).heuristic) == 0
        {
            return false;
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
        let Some(cap) = ctx.capture.take() else {
            return;
        };
        let near = self.cfg.cluster.as_ref().and_then(|c| c.near.as_ref());
        let store = match (ctx.near, near) {
            (true, Some(near)) => &near.store,
            (false, _) => match self.cache.as_ref() {
                Some(store) => store,
                None => return,
            },
            (true, None) => return,
        };
        let body = crate::cache::body::stored(cap.body.as_slice());
        drop(cap.body);
        let mut object = Object::new(cap.fields, body, cap.times, self.build(ctx.screened));
        if let (true, Some(near)) = (ctx.near, near) {
            let age = object.age(ctx.request_time);
            object.lifetime = near.capped_lifetime(object.lifetime, age);
            if let Some(ttl) = ctx.owner_ttl {
                let left = u64::try_from(ttl).unwrap_or(0);
                object.lifetime = object.lifetime.min(age.saturating_add(left));
            }
        }
        if store.insert(&ctx.primary, Arc::new(object), head.fields()) {
            match ctx.near {
                true => self.stats.cluster_near_stores.incr(),
                false => self.stats.cache_stores.incr(),
            }
        }
    }

    /// A forward's answer arrived: keep it in the near-cache when it may be stored.
    pub(super) fn keep_near(&mut self, ctx: &mut CacheCtx, resp: &ResponseHead, now: Now<'_>) {
        let fields = Fields::from_response(resp.status, resp.reason(), resp.fields(), |n| {
            resp.connection.drops(n)
        });
        let times = read_times(&fields, ctx.request_time, now.unix_secs);
        let near_max = self
            .cfg
            .cluster
            .as_ref()
            .and_then(|c| c.near.as_ref())
            .map_or(0, |n| n.store.budget());
        let fits = match resp.framing {
            Framing::Length(n) => n < near_max,
            _ => true,
        };
        if !fits || !self.admissible(ctx, &fields, &times, resp) {
            return;
        }
        ctx.owner_ttl = owner_ttl(resp);
        self.start_capture(ctx, fields, times, resp);
    }

    /// Starts copying the response into held memory for the store (none when the
    /// node's held budget is spent: the response then streams through unstored).
    fn start_capture(&self, ctx: &mut CacheCtx, fields: Fields, times: Times, resp: &ResponseHead) {
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

    /// A fresh copy in the near-cache of what the owner of this request's key would
    /// answer (never stale: the owner decides about stale copies).
    pub(super) fn near_copy(
        &self,
        head: &RequestHead,
        key: &str,
        now: Now<'_>,
    ) -> Option<Arc<Object>> {
        let near = self.cfg.cluster.as_ref()?.near.as_ref()?;
        let found = near.store.lookup(key, head.fields())?;
        let o = &found.object;
        let mut req_cc = CacheControl::from_fields(head.named(Field::CacheControl));
        req_cc.no_cache |= pragma_no_cache(head);
        match verdict(&req_cc, &o.control, o.lifetime, o.age(now.unix_secs)) {
            Verdict::Fresh => Some(found.object),
            _ => None,
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
        self.serve_stored(head, &Held::new(o.clone()), Served::StaleIfError, now);
        true
    }

    /// PURGE from an allowed address removes a URL and all its variants.
    pub(super) fn purge(&mut self, head: &RequestHead, dest: &Destination, now: Now<'_>) {
        let allowed = self.cfg.cache.purge_from.contains(&self.client_ip(head));
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
        let body = error_body(status, detail);
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

    /// Removes a URL, its Vary variants and its distilled variants, in both namespaces
    /// (the forward proxy's and the routes'); true when any was stored.
    pub(super) fn remove_with_variants(&self, store: &crate::cache::Store, primary: &str) -> bool {
        let profiles = &self.cfg.distill.choice.profiles;
        let mut removed = false;
        for primary in [primary, &key::twin(primary)] {
            removed |= store.remove(primary);
            for k in super::distilling::all_variant_keys(primary, profiles) {
                removed |= store.remove(&k);
            }
        }
        removed
    }

    /// How objects are built; targeted cache-control fields (RFC 9213) are for caches
    /// that work for the origin — reverse routes — not for the forward proxy
    /// (`screened`: the client named the destination).
    pub(super) fn build(&self, screened: bool) -> Build<'_> {
        Build {
            via_name: &self.cfg.via_name,
            heuristic: Heuristic {
                percent: self.cfg.cache.heuristic_percent,
                max_secs: self.cfg.cache.heuristic_max_s,
            },
            targeted: match screened {
                true => &[],
                false => &self.cfg.cache.targeted_fields,
            },
        }
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

/// The `ttl` of the last Cache-Status member (the owner's, the cache nearest this one).
fn owner_ttl(resp: &ResponseHead) -> Option<i64> {
    let (_, last) = resp
        .fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .last()?;
    let member = std::str::from_utf8(last).ok()?.rsplit(',').next()?;
    member
        .split(';')
        .find_map(|p| p.trim().strip_prefix("ttl="))
        .and_then(|t| t.trim().parse().ok())
}

/// `bytes=0-`: every byte from the first, i.e. the whole representation (what media
/// players ask first).
fn is_from_start(range: &[u8]) -> bool {
    let Some((unit, set)) = std::str::from_utf8(range)
        .ok()
        .and_then(|r| r.split_once('='))
    else {
        return false;
    };
    unit.trim().eq_ignore_ascii_case("bytes") && set.trim() == "0-"
}

/// Fields that make the response to a request something other than the plain whole
/// representation (a part, or an answer to a precondition).
const PART_OR_CONDITION: [Field; 6] = [
    Field::Range,
    Field::IfRange,
    Field::IfMatch,
    Field::IfUnmodifiedSince,
    Field::IfNoneMatch,
    Field::IfModifiedSince,
];

/// Preconditions the cache does not evaluate itself (RFC 9110 §13.2.1 says a cache
/// must evaluate what it answers): such a request goes to the origin.
pub(super) fn has_unevaluated_precondition(head: &RequestHead) -> bool {
    head.has(Field::IfMatch) || head.has(Field::IfUnmodifiedSince)
}

/// The request's Cache-Control, with HTTP/1.0's `Pragma: no-cache` read as no-cache
/// when it has none (RFC 9111 §5.4).
fn request_cache_control(head: &RequestHead) -> CacheControl {
    let mut req_cc = CacheControl::from_fields(head.named(Field::CacheControl));
    if !head.has(Field::CacheControl) && pragma_no_cache(head) {
        req_cc.no_cache = true;
    }
    req_cc
}

fn pragma_no_cache(head: &RequestHead) -> bool {
    head.named(Field::Pragma)
        .flat_map(|(_, v)| list_items(v))
        .any(|d| d.eq_ignore_ascii_case(b"no-cache"))
}

/// The stored object updated by a 304's fields (RFC 9111 §4.3.4), with new times.
fn refreshed(
    old: &Object,
    newer: &Fields,
    request_time: u64,
    now: Now<'_>,
    b: Build<'_>,
) -> Object {
    // A 304 without a Date is dated when it arrived, so the stored Date it would
    // otherwise keep does not make the refreshed response look old at once.
    let mut newer = newer.clone();
    newer.ensure_date(now.unix_secs);
    let mut fields = old.fields(b.via_name);
    fields.update_from(&newer);
    let times = read_times(&fields, request_time, now.unix_secs);
    Object::new(fields, old.body.clone(), times, b)
}
