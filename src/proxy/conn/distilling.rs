//! What a connection does to distil a response: choose the profile for the request,
//! hold a distillable response's body instead of streaming it, run the job (inline when
//! small, on the pool when large), and answer with the distilled representation, or with
//! the original when the job declined. Distilled variants are stored in the cache under
//! their own key (URL + profile + accepted coding), so each is computed once.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::cache::Object;
use crate::cache::control::CacheControl;
use crate::cache::freshness::Times;
use crate::cache::object::Build;
use crate::cache::object::Fields;
use crate::distill::image::Output;
use crate::distill::pool::{self, ResultSlot};
use crate::distill::profile::{Profile, Signals, accepted_encoding, accepts_webp};
use crate::distill::text::is_compressible;
use crate::distill::{self, Declined, JobOutput, Work};
use crate::http::body::Framing;
use crate::http::headers::list_items;
use crate::http::request::{Field, RequestHead};
use crate::http::response::ResponseHead;

use super::super::held::HeldBody;

use super::exchange::{Exchange, Stage};
use super::stored::Served;
use super::{Action, Conn, Now, Ticket};
use crate::http::target::Destination;

/// The request's profile and what it accepts.
#[derive(Debug, Clone)]
pub(super) struct DistillCtx {
    profile: Profile,
    why: &'static str,
    coding: Option<&'static str>,
    /// What an image is made into: WebP for a client that named it in Accept.
    output: Output,
}

impl DistillCtx {
    /// `variant_key` into `key`, reusing its memory.
    pub(super) fn write_variant_key(&self, primary: &str, key: &mut String) {
        let coding = self.coding.unwrap_or("identity");
        write_variant_key(primary, &self.profile.name, coding, self.output, key);
    }

    /// The key of this client's variant of `primary`.
    pub(super) fn variant_key(&self, primary: &str) -> Arc<str> {
        let mut key = String::new();
        self.write_variant_key(primary, &mut key);
        key.into()
    }
}

/// Where the variant of `primary` for `profile`, `coding` and image `output` is stored
/// (into `key`, emptied first, reusing its memory). The output is keyed by the format
/// chosen, never by the Accept string, so every WebP client shares one stored copy.
fn write_variant_key(primary: &str, profile: &str, coding: &str, output: Output, key: &mut String) {
    key.clear();
    for part in [primary, "\u{1}distill=", profile, ";coding=", coding] {
        key.push_str(part);
    }
    if output == Output::Webp {
        key.push_str(";image=webp");
    }
}

/// Every key a distilled variant of `primary` can be stored under, so that a purge or
/// an invalidation of the URL removes them with it.
pub(super) fn all_variant_keys<'a>(
    primary: &'a str,
    profiles: &'a [Profile],
) -> impl Iterator<Item = String> + 'a {
    profiles.iter().flat_map(move |p| {
        ["identity", "zstd", "br", "gzip"]
            .into_iter()
            .flat_map(move |coding| {
                [Output::Classic, Output::Webp]
                    .into_iter()
                    .map(move |output| {
                        let mut key = String::new();
                        write_variant_key(primary, &p.name, coding, output, &mut key);
                        key
                    })
            })
    })
}

/// What decides whether a response can be distilled.
struct Representation<'a> {
    status: u16,
    no_transform: bool,
    content_type: Option<&'a [u8]>,
    content_encoding: Option<&'a [u8]>,
}

/// A response body being collected for a job.
#[derive(Debug)]
pub(super) struct HeldResponse {
    work: Work,
    fields: Fields,
    times: Times,
    /// The client head as it would have been streamed: written if the body outgrows the
    /// input limit and the response has to stream after all.
    head: Vec<u8>,
    body: HeldBody,
    stored_original: bool,
}

/// Where a job's input came from.
#[derive(Debug)]
pub(super) enum JobInput {
    Fetched(Box<HeldResponse>),
    Stored { object: Arc<Object>, work: Work },
}

/// A job under way on the pool.
#[derive(Debug)]
pub(super) struct Running {
    source: JobInput,
    /// The body the job works on (what is sent if it declines).
    input: Bytes,
    slot: ResultSlot<Result<JobOutput, Declined>>,
    pub(super) since: Instant,
    pub(super) ticket: Ticket,
}

/// A job for the driver to hand to the pool: `work` fills the slot.
pub struct DistillJob(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for DistillJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DistillJob")
    }
}

impl PartialEq for DistillJob {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Eq for DistillJob {}

impl Conn {
    /// The distillation context of a GET, or None when nothing would be changed.
    /// `dest` loses the refinement marker, if its query has one (the origin never sees
    /// it), and the request then gets the original.
    pub(super) fn distill_ctx(
        &self,
        head: &RequestHead,
        dest: &mut Destination,
    ) -> Option<Box<DistillCtx>> {
        self.distill_ctx_reusing(head, dest, None)
    }

    /// `distill_ctx` in `reuse`'s memory (the connection's last hit's context), so a
    /// hit allocates nothing.
    pub(super) fn distill_ctx_reusing(
        &self,
        head: &RequestHead,
        dest: &mut Destination,
        reuse: Option<Box<DistillCtx>>,
    ) -> Option<Box<DistillCtx>> {
        let marked = strip_original_marker(&mut dest.path);
        if head.method() != "GET" || request_forbids_transform(head) {
            return None;
        }
        let choice = &self.cfg.distill.choice;
        let mut signals = Signals::read(head_signals(head));
        signals.original |= marked;
        let (profile, why) = choice.choose(&signals, self.client_ip(head));
        let coding =
            accepted_encoding(head.named(Field::AcceptEncoding)).filter(|_| profile.compress_text);
        if profile.is_off() && coding.is_none() {
            return None;
        }
        let output = match accepts_webp(head.named(Field::Accept)) && !profile.is_off() {
            true => Output::Webp,
            false => Output::Classic,
        };
        Some(match reuse {
            Some(mut ctx) => {
                ctx.profile.clone_from(profile);
                ctx.why = why;
                ctx.coding = coding;
                ctx.output = output;
                ctx
            }
            None => Box::new(DistillCtx {
                profile: profile.clone(),
                why,
                coding,
                output,
            }),
        })
    }

    /// What job, if any, a response with these fields gets for this request.
    fn work_on(&self, ctx: &DistillCtx, r: &Representation<'_>) -> Option<Work> {
        if r.status != 200 || r.no_transform {
            return None;
        }
        let encoded = r
            .content_encoding
            .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
        let ctype = r.content_type.unwrap_or(b"");
        let essence = ctype
            .split(|&b| b == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        let is_image = [
            &b"image/jpeg"[..],
            b"image/png",
            b"image/gif",
            b"image/pjpeg",
        ]
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t));
        if encoded {
            return None;
        }
        if is_image && !ctx.profile.is_off() {
            return Some(Work::Image {
                profile: ctx.profile.clone(),
                limits: self.cfg.distill.limits,
                output: ctx.output,
            });
        }
        match ctx.coding {
            Some(coding) if is_compressible(ctype) => Some(Work::Text { coding }),
            _ => None,
        }
    }

    /// At the response head: hold the body for a job instead of streaming it? Returns
    /// the held state, given the head that streaming would have written.
    pub(super) fn hold(
        &self,
        ex: &Exchange,
        resp: &ResponseHead,
        client_head: &[u8],
        stored_original: bool,
        now: Now<'_>,
    ) -> Option<Box<HeldResponse>> {
        let ctx = ex.distill.as_deref()?;
        // Decided from the head as received; the stored fields are built only for a job.
        let field = |name: &str| {
            resp.fields()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let about = Representation {
            status: resp.status,
            no_transform: CacheControl::from_fields(resp.fields()).no_transform,
            content_type: field("content-type"),
            content_encoding: field("content-encoding"),
        };
        let work = self.work_on(ctx, &about)?;
        let limit = self.cfg.distill.limits.input_bytes_max;
        let min = match work {
            Work::Text { .. } => self.cfg.distill.text_bytes_min,
            Work::Image { .. } => 1,
        };
        let expected = match resp.framing {
            Framing::Length(n) if (min..=limit).contains(&n) => n as usize,
            Framing::Chunked => 0,
            _ => return None,
        };
        let Some(body) = HeldBody::new(&self.held, expected) else {
            self.stats.held_budget_full.incr();
            return None; // the node holds all it may: this one streams
        };
        let fields = Fields::from_response(resp.status, resp.reason(), resp.fields(), |n| {
            resp.connection.drops(n)
        });
        let times = crate::cache::object::read_times(&fields, now.unix_secs, now.unix_secs);
        Some(Box::new(HeldResponse {
            work,
            fields,
            times,
            head: client_head.to_vec(),
            body,
            stored_original,
        }))
    }

    /// A fresh stored original that this request wants distilled: the job to run on it.
    pub(super) fn work_on_stored(&self, ctx: &DistillCtx, o: &Object) -> Option<Work> {
        // Read straight from the stored head and the parsed Cache-Control: this runs on
        // every hit of a client with a profile or an Accept-Encoding.
        let about = Representation {
            status: o.status(),
            no_transform: o.control.no_transform,
            content_type: o.field("content-type"),
            content_encoding: o.field("content-encoding"),
        };
        self.work_on(ctx, &about)
    }

    /// Runs the job inline when its input is small, else hands it to the pool and parks
    /// the exchange until the driver wakes it (`on_wait_over`).
    pub(super) fn start_job(&mut self, mut ex: Box<Exchange>, mut source: JobInput, now: Now<'_>) {
        let (work, input) = match &mut source {
            JobInput::Fetched(h) => (h.work.clone(), h.body.take_bytes()),
            JobInput::Stored { object, work } => (work.clone(), object.body.clone()),
        };
        let d = &self.cfg.distill;
        if distill::is_small(&work, &input, d.inline_bytes_max, d.inline_pixels_max) {
            let made = distill::run(&work, &input);
            self.answer_with(ex, source, input, made, now);
            return;
        }
        let slot: ResultSlot<Result<JobOutput, Declined>> = Arc::default();
        let filled = slot.clone();
        let job_input = input.clone();
        let work_fn = Box::new(move || pool::put(&filled, distill::run(&work, &job_input)));
        let ticket = self.ticket();
        ex.stage = Stage::Distilling(Box::new(Running {
            source,
            input,
            slot,
            since: now.instant,
            ticket,
        }));
        self.ex = Some(ex);
        self.actions
            .push_back(Action::RunJob(DistillJob(work_fn), ticket));
    }

    /// The pool finished (or refused) this connection's job.
    pub(super) fn on_job_done(&mut self, ex: Box<Exchange>, now: Now<'_>) {
        self.end_job(ex, Declined::PoolFull, now);
    }

    /// The job has waited past its deadline (queued behind others, or lost): the
    /// original is sent; a result arriving later is dropped.
    pub(super) fn on_job_overdue(&mut self, ex: Box<Exchange>, now: Now<'_>) {
        tracing::warn!(
            target = ex.head.target(),
            "distillation overdue: sending the original"
        );
        self.end_job(ex, Declined::Overdue, now);
    }

    /// Answers with the job's result, or with `missing` when it left none.
    fn end_job(&mut self, mut ex: Box<Exchange>, missing: Declined, now: Now<'_>) {
        let Some(running) = ex.take_job() else {
            self.ex = Some(ex);
            return;
        };
        let made = pool::take(&running.slot).unwrap_or(Err(missing));
        let Running { source, input, .. } = *running;
        self.answer_with(ex, source, input, made, now);
    }

    /// Writes the distilled response, or the original when the job declined; stores the
    /// distilled variant when the original was storable.
    fn answer_with(
        &mut self,
        ex: Box<Exchange>,
        source: JobInput,
        input: Bytes,
        made: Result<JobOutput, Declined>,
        now: Now<'_>,
    ) {
        let Some(ctx) = ex.distill.as_deref() else {
            return;
        };
        let (fields, times, storable, fwd) = match &source {
            JobInput::Fetched(h) => (h.fields.clone(), h.times, h.stored_original, "miss"),
            JobInput::Stored { object, .. } => {
                (object.fields(&self.cfg.via_name), object.times, true, "")
            }
        };
        // The variant is selected by the original's Vary too; `Vary: *` is never stored.
        let original_vary = fields.vary();
        let storable = storable && original_vary.is_ok();
        let object = match made {
            Ok(made) => {
                self.stats.distilled.incr();
                let saved = input.len().saturating_sub(made.bytes().len());
                self.stats.distill_saved_bytes.add(saved as u64);
                let distilled = distilled_fields(&fields, &made, input.len(), ctx);
                let object = Object::new(
                    distilled,
                    self.variant_body(&made, storable),
                    times,
                    self.build(ex.dest.screened),
                );
                Arc::new(object.selected_by(original_vary.unwrap_or_default()))
            }
            Err(why) => {
                self.stats.distill_passed.incr();
                self.stats.distill_declined[decline_reason(&why)].incr();
                tracing::debug!(target = ex.head.target(), "sent the original: {why}");
                let build = self.build(ex.dest.screened);
                self.original_object(source, fields, times, input, storable, build)
            }
        };
        let stored = storable && self.store_variant(&ex, ctx, &object);
        let how = if fwd.is_empty() {
            Served::Hit
        } else {
            Served::Distilled { fwd, stored }
        };
        let held = crate::cache::shard_refs::Held::new(object);
        self.serve_stored(&ex.head, &held, how, now);
        if !ex.keep_alive {
            self.no_more_requests = true;
        }
        drop(ex);
        self.advance(now);
    }

    /// The cache will own a body of `n` bytes if it is stored.
    fn cacheable(&self, storable: bool, n: usize) -> bool {
        storable && self.cache.is_some() && n as u64 <= self.cfg.cache.object_bytes_max
    }

    /// The distilled body in memory of its own. What the cache will not own waits for
    /// the client charged to the node's budget, as the held body it came from was: a
    /// client that stops reading cannot make the node keep distilled bodies outside
    /// every bound.
    fn variant_body(&self, made: &JobOutput, storable: bool) -> Bytes {
        let body = crate::cache::body::stored(made.bytes());
        if self.cacheable(storable, body.len()) {
            body
        } else {
            self.held.charge_until_freed(body)
        }
    }

    /// The original, sent when the job declined.
    fn original_object(
        &self,
        source: JobInput,
        fields: Fields,
        times: Times,
        input: Bytes,
        storable: bool,
        build: Build<'_>,
    ) -> Arc<Object> {
        match source {
            JobInput::Stored { object, .. } => object,
            // Stored in memory of its own: the held bytes (charged to the node's budget)
            // go as soon as they are sent.
            JobInput::Fetched(_) if self.cacheable(storable, input.len()) => {
                let body = crate::cache::body::stored(&input);
                Arc::new(Object::new(fields, body, times, build))
            }
            JobInput::Fetched(_) => Arc::new(Object::new(fields, input, times, build)),
        }
    }

    /// Stores the object as this client's variant of the URL; true if the cache took it.
    fn store_variant(&self, ex: &Exchange, ctx: &DistillCtx, object: &Arc<Object>) -> bool {
        self.cache.as_ref().is_some_and(|store| {
            let primary = crate::cache::key::primary(&ex.dest);
            store.insert(&ctx.variant_key(&primary), object.clone(), ex.head.fields())
        })
    }
}

impl HeldResponse {
    /// Adds a piece of the body; false when it would outgrow `limit` or the node's
    /// budget (the hold is then abandoned by the caller, which streams the head, the
    /// body so far and the rest).
    pub(super) fn add(&mut self, piece: &[u8], limit: u64) -> bool {
        self.body.push(piece, limit)
    }

    pub(super) fn into_streamed(self) -> (Vec<u8>, HeldBody) {
        (self.head, self.body)
    }
}

/// The index of `why` in `stats::DECLINE_REASONS`.
fn decline_reason(why: &Declined) -> usize {
    match why {
        Declined::Image(_) => 0,
        Declined::Text(_) => 1,
        Declined::NotSmaller { .. } => 2,
        Declined::PoolFull => 3,
        Declined::Overdue => 4,
        Declined::Crashed(_) => 5,
    }
}

/// The query parameter that asks for the original (refinement), like the
/// `X-Distill-Original` header: `?distilld=original`.
pub const ORIGINAL_MARKER: &str = "distilld=original";

/// Removes the marker from a path's query; true if it was there.
pub(super) fn strip_original_marker(path: &mut String) -> bool {
    let at = crate::http::target::query_start(path);
    if at == path.len() {
        return false;
    }
    let (base, query) = (&path[..at], &path[at + 1..]);
    let kept: Vec<&str> = query.split('&').filter(|p| *p != ORIGINAL_MARKER).collect();
    if kept.len() == query.split('&').count() {
        return false;
    }
    *path = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    true
}

fn request_forbids_transform(head: &RequestHead) -> bool {
    CacheControl::from_fields(head.named(Field::CacheControl)).no_transform
}

/// The fields `Signals::read` reads, found through the head's index.
pub(super) fn head_signals(head: &RequestHead) -> impl Iterator<Item = (&str, &[u8])> {
    [
        Field::SaveData,
        Field::Ect,
        Field::Downlink,
        Field::UserAgent,
        Field::XDistillOriginal,
        Field::Cookie,
    ]
    .into_iter()
    .filter(|&f| head.has(f))
    .flat_map(|f| head.named(f))
}

/// The fields of the distilled representation: the original's, with its type, coding,
/// length and validators restated, Vary extended, and what was done in X-Distill.
fn distilled_fields(
    orig: &Fields,
    made: &JobOutput,
    original_bytes: usize,
    ctx: &DistillCtx,
) -> Fields {
    let mut list: Vec<(String, Vec<u8>)> = Vec::new();
    let mut vary: Vec<Vec<u8>> = Vec::new();
    for (name, value) in orig.iter() {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "vary" => vary.extend(list_items(value).map(<[u8]>::to_vec)),
            "etag" => {
                // Another representation: a weak validator of its own.
                let tag = value.strip_prefix(b"W/").unwrap_or(value);
                let inner = tag
                    .strip_prefix(b"\"")
                    .and_then(|t| t.strip_suffix(b"\""))
                    .unwrap_or(tag);
                let mut v = b"W/\"".to_vec();
                v.extend_from_slice(inner);
                let format = if ctx.output == Output::Webp {
                    "-webp"
                } else {
                    ""
                };
                v.extend_from_slice(format!("-d-{}{format}\"", ctx.profile.name).as_bytes());
                list.push((name.to_string(), v));
            }
            "content-type" if matches!(made, JobOutput::Image(_)) => {}
            "content-md5" | "digest" | "content-digest" | "repr-digest" => {}
            _ => list.push((name.to_string(), value.to_vec())),
        }
    }
    let mut note = format!(
        "original-bytes={original_bytes}; profile={}; reason={}",
        ctx.profile.name, ctx.why
    );
    match made {
        JobOutput::Image(d) => {
            list.push(("Content-Type".into(), d.content_type.as_bytes().to_vec()));
            note.push_str(&format!("; size={}x{}", d.width, d.height));
            // The format depends on Accept (WebP or not) and the size on the hints.
            for hint in ["Accept", "Save-Data", "ECT", "Downlink"] {
                vary.push(hint.as_bytes().to_vec());
            }
        }
        JobOutput::Text { coding, .. } => {
            list.push(("Content-Encoding".into(), coding.as_bytes().to_vec()));
            vary.push(b"Accept-Encoding".to_vec());
        }
    }
    if !vary.is_empty() {
        list.push(("Vary".into(), vary.join(&b", "[..])));
    }
    list.push(("X-Distill".into(), note.into_bytes()));
    Fields::from_response(
        orig.status,
        &orig.reason,
        list.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        |_| false,
    )
}

#[cfg(test)]
mod tests {
    use super::strip_original_marker;

    #[test]
    fn the_marker_is_stripped_and_only_it() {
        let strip = |p: &str| {
            let mut s = p.to_string();
            (strip_original_marker(&mut s), s)
        };
        assert_eq!(strip("/a.jpg?distilld=original"), (true, "/a.jpg".into()));
        assert_eq!(
            strip("/a.jpg?x=1&distilld=original&y=2"),
            (true, "/a.jpg?x=1&y=2".into())
        );
        assert_eq!(strip("/a.jpg?x=1"), (false, "/a.jpg?x=1".into()));
        assert_eq!(strip("/a.jpg"), (false, "/a.jpg".into()));
    }
}
