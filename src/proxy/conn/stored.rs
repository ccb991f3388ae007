//! Answering from a stored object: its head and body as shared segments with the
//! per-response fields written fresh (Age, Cache-Status, Connection), or a 304 when the
//! client's own validators match. The stored Date is the origin's (RFC 9110 §6.6.1).

use std::rc::Rc;

use crate::cache::Object;
use crate::cache::shard_refs::Held;
use crate::http::date::parse_http_date;
use crate::http::headers::{list_items, trim, write_decimal, write_field};
use crate::http::range::{self, ByteRange, Ranges, if_range_holds};
use crate::http::request::{Field, RequestHead};
use crate::proxy::out::Part;

use super::super::heads::write_connection;
use super::{Conn, Now};

/// How a response from the cache is described in Cache-Status.
#[derive(Clone, Copy)]
pub(super) enum Served {
    Hit,
    /// Made here from what the origin (`fwd`) sent: a distilled response.
    Distilled {
        fwd: &'static str,
        stored: bool,
    },
    /// Stale, served while another request revalidates it (RFC 5861).
    StaleWhileRevalidate,
    /// Revalidated with the origin just now (it answered 304).
    Revalidated,
    /// The origin failed and the stale response is allowed on error (RFC 5861).
    StaleIfError,
    /// A copy of the owner's answer kept in the near-cache (the key is owned elsewhere).
    Near,
}

impl Conn {
    /// Writes a stored response for `head`: the stored head and body as shared segments,
    /// the per-response fields fresh; a 304 when the client's own validators match.
    pub(super) fn serve_stored(
        &mut self,
        head: &RequestHead,
        o: &Rc<Held>,
        how: Served,
        now: Now<'_>,
    ) {
        if matches!(how, Served::StaleWhileRevalidate | Served::StaleIfError) {
            self.stats.cache_stale.incr();
        }
        let age = o.age(now.unix_secs);
        let ttl = crate::cache::freshness::ttl(o.lifetime, age);
        let keep = head.wants_keep_alive() && self.may_keep_alive();
        let shape = self.shape_for(head, o);
        if matches!(shape, Shape::Whole) {
            self.out.push_stored(o, Part::Head);
        }
        // The fields written for each response go into the connection's own reused
        // buffer, between the stored head and body.
        let fresh = self.out.compacted_tail();
        match &shape {
            Shape::Whole => {}
            Shape::NotModified => write_not_modified_head(fresh, o),
            Shape::Partial(parts) => write_partial_head(fresh, o, parts),
            Shape::Unsatisfiable => write_unsatisfiable_head(fresh, o, now.date),
        }
        // The stored head carries the origin's Date: only the Age is new.
        fresh.extend_from_slice(b"Age: ");
        write_decimal(fresh, age);
        fresh.extend_from_slice(b"\r\n");
        let (fwd, fwd_status, stored, detail) = match how {
            Served::Hit => ("", None, false, None),
            Served::StaleWhileRevalidate => ("", None, false, Some("stale-while-revalidate")),
            Served::Revalidated => ("stale", Some(304), false, None),
            Served::Distilled { fwd, stored } => (fwd, Some(200), stored, None),
            Served::StaleIfError => ("", None, false, Some("stale-if-error")),
            Served::Near => ("", None, false, Some("near")),
        };
        write_cache_status(fresh, fwd, fwd_status, stored, Some(ttl), detail);
        write_connection(fresh, keep, head.minor_version);
        fresh.extend_from_slice(b"\r\n");
        let (status, sent) = match shape {
            Shape::Whole if head.is_head() => (o.status(), 0),
            Shape::Whole => {
                self.out.push_stored(o, Part::Body);
                (o.status(), o.body.len() as u64)
            }
            Shape::NotModified => (304, 0),
            Shape::Unsatisfiable => (416, 0),
            Shape::Partial(parts) => (206, self.push_parts(o, &parts)),
        };
        if !keep {
            self.no_more_requests = true;
        }
        self.log_access(head, status, sent, now.instant, now, None);
    }

    /// What a stored response is answered as: a 304 when the client's own validators
    /// match, the parts a Range asks for, or the whole response.
    fn shape_for(&self, head: &RequestHead, o: &Object) -> Shape {
        if o.status() != 200 {
            return Shape::Whole;
        }
        if client_validators_match(head, o) {
            return Shape::NotModified;
        }
        // Range is defined for GET only (RFC 9110 §14.2), and If-Range is evaluated
        // only with a Range (§13.1.5).
        let Some(range) = head.first(Field::Range).filter(|_| head.method() == "GET") else {
            return Shape::Whole;
        };
        if let Some(v) = head.first(Field::IfRange)
            && !if_range_holds(v, o.etag(), o.last_modified(), o.field("date"))
        {
            return Shape::Whole;
        }
        let len = o.body.len() as u64;
        match range::select(range, len, self.cfg.cache.range_parts_max) {
            Ranges::Whole => Shape::Whole,
            Ranges::Unsatisfiable => Shape::Unsatisfiable,
            Ranges::Parts(parts) => {
                let partial = Partial::new(parts, o);
                // Many small pieces can cost more than the whole: send the whole then.
                if partial.parts.len() > 1 && partial.body_len(len) >= len {
                    Shape::Whole
                } else {
                    Shape::Partial(partial)
                }
            }
        }
    }

    /// Queues the body of a 206: one slice of the stored body, or each slice between
    /// the multipart delimiters. Returns the bytes of body queued.
    fn push_parts(&mut self, o: &Rc<Held>, p: &Partial) -> u64 {
        let len = o.body.len() as u64;
        let slice = |r: ByteRange| (r.start as usize, r.end as usize);
        if let [only] = p.parts[..] {
            let (a, b) = slice(only);
            self.out.push_stored_range(o, Part::Body, a, b);
            return only.len();
        }
        for &r in &p.parts {
            p.write_part_head(self.out.compacted_tail(), r, len);
            let (a, b) = slice(r);
            self.out.push_stored_range(o, Part::Body, a, b);
        }
        p.write_close(self.out.compacted_tail());
        p.body_len(len)
    }
}

/// How one stored response answers one request.
enum Shape {
    Whole,
    NotModified,
    Partial(Partial),
    Unsatisfiable,
}

/// A 206's parts and, when there are several, how `multipart/byteranges` frames them.
struct Partial {
    parts: Vec<ByteRange>,
    /// The stored Content-Type, repeated in each part (multipart only).
    content_type: Option<Box<[u8]>>,
    boundary: [u8; BOUNDARY_BYTES],
}

const BOUNDARY_BYTES: usize = 24;

impl Partial {
    fn new(parts: Vec<ByteRange>, o: &Object) -> Partial {
        Partial {
            content_type: o.field("content-type").map(Box::from),
            boundary: boundary(o),
            parts,
        }
    }

    /// `\r\n--boundary\r\nContent-Type: ..\r\nContent-Range: ..\r\n\r\n` before a part.
    fn write_part_head(&self, out: &mut Vec<u8>, r: ByteRange, len: u64) {
        out.extend_from_slice(b"\r\n--");
        out.extend_from_slice(&self.boundary);
        out.extend_from_slice(b"\r\n");
        if let Some(t) = &self.content_type {
            write_field(out, b"Content-Type", t);
        }
        write_content_range(out, r, len);
        out.extend_from_slice(b"\r\n");
    }

    fn write_close(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n--");
        out.extend_from_slice(&self.boundary);
        out.extend_from_slice(b"--\r\n");
    }

    /// Bytes of the 206's body (the multipart framing included), measured by writing the
    /// framing once: what is counted is what is sent.
    fn body_len(&self, len: u64) -> u64 {
        if let [only] = self.parts[..] {
            return only.len();
        }
        let mut framing = Vec::with_capacity(160 * self.parts.len());
        for &r in &self.parts {
            self.write_part_head(&mut framing, r, len);
        }
        self.write_close(&mut framing);
        framing.len() as u64 + self.parts.iter().map(|r| r.len()).sum::<u64>()
    }
}

/// A multipart boundary no part is likely to contain: 24 characters drawn from a
/// randomly keyed hash of the object's address and length.
fn boundary(o: &Object) -> [u8; BOUNDARY_BYTES] {
    use std::hash::BuildHasher as _;
    let seed = std::collections::hash_map::RandomState::new();
    let h = seed.hash_one((std::ptr::from_ref(o) as usize, o.body.len()));
    let h2 = seed.hash_one(h);
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = [0u8; BOUNDARY_BYTES];
    for (i, b) in out.iter_mut().enumerate() {
        let bits = if i < 12 {
            h >> (5 * i)
        } else {
            h2 >> (5 * (i - 12))
        };
        *b = ALPHABET[(bits & 31) as usize];
    }
    out
}

fn write_content_range(out: &mut Vec<u8>, r: ByteRange, len: u64) {
    out.extend_from_slice(b"Content-Range: bytes ");
    write_decimal(out, r.start);
    out.push(b'-');
    write_decimal(out, r.end - 1);
    out.push(b'/');
    write_decimal(out, len);
    out.extend_from_slice(b"\r\n");
}

/// The head of a 206 (without the fields every response gets): the stored fields, the
/// range's Content-Range and length, or for several parts the multipart type.
fn write_partial_head(out: &mut Vec<u8>, o: &Object, p: &Partial) {
    out.extend_from_slice(b"HTTP/1.1 206 Partial Content\r\n");
    let multipart = p.parts.len() > 1;
    for (name, value) in o.head_fields() {
        let replaced = name.eq_ignore_ascii_case("content-length")
            || (multipart && name.eq_ignore_ascii_case("content-type"));
        if !replaced {
            write_field(out, name.as_bytes(), value);
        }
    }
    let len = o.body.len() as u64;
    if let [only] = p.parts[..] {
        write_content_range(out, only, len);
    } else {
        out.extend_from_slice(b"Content-Type: multipart/byteranges; boundary=");
        out.extend_from_slice(&p.boundary);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    write_decimal(out, p.body_len(len));
    out.extend_from_slice(b"\r\n");
}

/// The head of a 416 (RFC 9110 §15.5.17): the length the ranges missed, no body.
fn write_unsatisfiable_head(out: &mut Vec<u8>, o: &Object, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 416 Range Not Satisfiable\r\n");
    write_field(out, b"Date", date);
    if let Some(via) = o.field("via") {
        write_field(out, b"Via", via);
    }
    out.extend_from_slice(b"Content-Range: bytes */");
    write_decimal(out, o.body.len() as u64);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n");
}

/// A Cache-Status line with RFC 9211's `detail` parameter added.
pub(super) fn with_detail(mut line: Vec<u8>, detail: &str) -> Vec<u8> {
    line.truncate(line.len().saturating_sub(2));
    line.extend_from_slice(b"; detail=");
    line.extend_from_slice(detail.as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// `Cache-Status: distilld; hit|fwd=...; fwd-status=N; stored; ttl=N` (RFC 9211).
pub(super) fn cache_status_line(
    fwd: &str,
    fwd_status: Option<u16>,
    stored: bool,
    ttl: Option<i64>,
) -> Vec<u8> {
    let mut l = Vec::with_capacity(64);
    write_cache_status(&mut l, fwd, fwd_status, stored, ttl, None);
    l
}

/// `cache_status_line` (with a `detail` when given) appended to `l`.
fn write_cache_status(
    l: &mut Vec<u8>,
    fwd: &str,
    fwd_status: Option<u16>,
    stored: bool,
    ttl: Option<i64>,
    detail: Option<&str>,
) {
    l.extend_from_slice(b"Cache-Status: distilld; ");
    if fwd.is_empty() {
        l.extend_from_slice(b"hit");
    } else {
        l.extend_from_slice(b"fwd=");
        l.extend_from_slice(fwd.as_bytes());
        if let Some(s) = fwd_status {
            l.extend_from_slice(b"; fwd-status=");
            write_decimal(l, u64::from(s));
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
        write_decimal(l, t.unsigned_abs());
    }
    if let Some(d) = detail {
        l.extend_from_slice(b"; detail=");
        l.extend_from_slice(d.as_bytes());
    }
    l.extend_from_slice(b"\r\n");
}

/// RFC 9110 §13.1.2 / §13.1.3 (weak comparison for If-None-Match), evaluated by the
/// cache for GET and HEAD.
fn client_validators_match(head: &RequestHead, o: &Object) -> bool {
    let mut inm = head.named(Field::IfNoneMatch).peekable();
    if inm.peek().is_some() {
        let Some(etag) = o.etag() else {
            return false;
        };
        let ours = weak_tag(etag);
        return inm
            .flat_map(|(_, v)| list_items(v))
            .any(|t| t == b"*" || weak_tag(t) == ours);
    }
    // Most requests have no validator: the stored head is not read for them.
    let Some(since) = head.first(Field::IfModifiedSince).and_then(parse_http_date) else {
        return false;
    };
    // RFC 9111 §4.3.2: without a stored Last-Modified, the stored Date stands in.
    let modified = match o.last_modified() {
        Some(lm) => parse_http_date(lm),
        None => o.field("date").and_then(parse_http_date),
    };
    modified.is_some_and(|m| m <= since)
}

/// An entity tag for weak comparison: without `W/`.
fn weak_tag(t: &[u8]) -> &[u8] {
    trim(t.strip_prefix(b"W/").unwrap_or(t))
}

/// The head of a 304 answered from the cache: the fields RFC 9110 §15.4.5 says a 304
/// repeats (without the blank line; Date, Age and the rest follow).
fn write_not_modified_head(out: &mut Vec<u8>, o: &Object) {
    out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\n");
    for (name, value) in o.head_fields() {
        let repeated = [
            "date",
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
