//! Answering from a stored object: its head and body as shared segments with the
//! per-response fields written fresh (Age, Cache-Status, Connection), or a 304 when the
//! client's own validators match. The stored Date is the origin's (RFC 9110 §6.6.1).

use std::rc::Rc;

use crate::cache::Object;
use crate::cache::shard_refs::Held;
use crate::http::date::parse_http_date;
use crate::http::headers::{list_items, trim, write_decimal, write_field};
use crate::http::request::RequestHead;
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
        let not_modified = o.status() == 200 && client_validators_match(head, o);
        if !not_modified {
            self.out.push_stored(o, Part::Head);
        }
        // The fields written for each response go into the connection's own reused
        // buffer, between the stored head and body.
        let fresh = self.out.compacted_tail();
        if not_modified {
            write_not_modified_head(fresh, o);
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
        let mut sent = 0;
        if !not_modified && !head.is_head() {
            self.out.push_stored(o, Part::Body);
            sent = o.body.len() as u64;
        }
        if !keep {
            self.no_more_requests = true;
        }
        let status = if not_modified { 304 } else { o.status() };
        self.log_access(head, status, sent, now.instant, now, None);
    }
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
    let mut inm = head
        .fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
        .peekable();
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
    let Some(since) = head.field("if-modified-since").and_then(parse_http_date) else {
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
