//! A stored response: the head serialised once at store time (everything a hit repeats
//! verbatim), the body as refcounted bytes, and what freshness needs, parsed once.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use bytes::Bytes;

use super::control::CacheControl;
use super::freshness::{Heuristic, Times, current_age, lifetime};
use super::s3fifo::Hits;
use super::targeted::response_control;
use crate::http::date::parse_http_date;
use crate::http::headers::{list_items, trim, write_decimal, write_field};

/// What a stored object costs beyond its bytes (the object, its map slot and its
/// policy entry), so the budget counts memory rather than payload.
pub const OBJECT_OVERHEAD_BYTES: u64 = 320;

/// The fields of a response as stored: the ones that describe the representation,
/// without those a proxy writes for each response (framing, connection). Kept as one
/// block of `Name: value\r\n` lines (one allocation per object, not two per field).
#[derive(Debug, Clone)]
pub struct Fields {
    pub status: u16,
    pub reason: Box<[u8]>,
    raw: Box<[u8]>,
}

impl Fields {
    /// The storable fields of an origin response; `drops` names its hop-by-hop fields.
    pub fn from_response<'a>(
        status: u16,
        reason: &[u8],
        fields: impl Iterator<Item = (&'a str, &'a [u8])>,
        drops: impl Fn(&str) -> bool,
    ) -> Fields {
        let mut raw = Vec::with_capacity(256);
        for (n, v) in fields.filter(|(n, _)| !drops(n) && !is_written_per_response(n)) {
            write_field(&mut raw, n.as_bytes(), v);
        }
        Fields {
            status,
            reason: reason.into(),
            raw: raw.into_boxed_slice(),
        }
    }

    /// Name and value of each field, in order. (The block holds only lines written by
    /// `write_field` from parsed fields, so every line has a colon and no CR or LF.)
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        lines(&self.raw)
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// RFC 9111 §3.2: a 304 (or HEAD) response's fields replace the stored ones of the
    /// same name; the stored status and body stay.
    pub fn update_from(&mut self, newer: &Fields) {
        let mut raw = Vec::with_capacity(self.raw.len() + newer.raw.len());
        for (n, v) in self.iter() {
            if newer.get(n).is_none() {
                write_field(&mut raw, n.as_bytes(), v);
            }
        }
        raw.extend_from_slice(&newer.raw);
        self.raw = raw.into_boxed_slice();
    }

    fn len(&self) -> usize {
        self.raw.len() + self.reason.len()
    }

    /// RFC 9110 §6.6.1: a response cached or forwarded without a Date gets one, the
    /// time it was received (`unix_secs`).
    pub fn ensure_date(&mut self, unix_secs: u64) {
        if self.get("date").is_some() {
            return;
        }
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs);
        let mut raw = self.raw.to_vec();
        write_field(&mut raw, b"Date", httpdate::fmt_http_date(when).as_bytes());
        self.raw = raw.into_boxed_slice();
    }

    /// The Vary field names, lower-cased; `Err` for `Vary: *` (never matches).
    pub fn vary(&self) -> Result<Option<Box<[Box<str>]>>, VaryStar> {
        let mut names: Vec<Box<str>> = Vec::new();
        for (_, v) in self.iter().filter(|(n, _)| n.eq_ignore_ascii_case("vary")) {
            for item in list_items(v) {
                // A name that is not a token selects nothing a key could tell apart:
                // like `*`, it never matches.
                if item == b"*" || !is_token(item) {
                    return Err(VaryStar);
                }
                let name = String::from_utf8_lossy(item).to_ascii_lowercase();
                if !names.iter().any(|n| **n == *name) {
                    names.push(name.into());
                }
            }
        }
        names.sort();
        Ok((!names.is_empty()).then(|| names.into_boxed_slice()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaryStar;

/// RFC 9110 §5.6.2 token.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `Name: value\r\n` lines, as `write_field` writes them.
fn lines(block: &[u8]) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    block
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name, trim(&line[colon + 1..])))
        })
}

/// Fields a proxy writes itself for every response it sends: not stored.
fn is_written_per_response(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "cache-status",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// Stored (freshness needs it) but written fresh for each hit. Date is not: a hit
/// carries the origin's Date, with an Age that says how old it is (RFC 9111 §4).
fn is_per_hit(name: &str) -> bool {
    name.eq_ignore_ascii_case("age")
}

/// Times read from a response's fields, with when its request went out and when it
/// came back (UNIX seconds).
pub fn read_times(fields: &Fields, request_time: u64, response_time: u64) -> Times {
    let date_of = |name: &str| fields.get(name).and_then(parse_http_date);
    Times {
        request_time,
        response_time,
        date: date_of("date"),
        // RFC 9111 §5.1: of a list-valued Age the first member counts; a value that is
        // not a non-negative integer is ignored.
        age: fields
            .get("age")
            .and_then(|v| v.split(|&b| b == b',').next())
            .and_then(|v| super::control::delta_seconds(trim(v))),
        expires: fields.get("expires").map(|_| date_of("expires")),
        last_modified: date_of("last-modified"),
    }
}

/// One stored response.
#[derive(Debug)]
pub struct Object {
    status: u16,
    /// Status line and stored fields (the origin's Date among them), each line ending
    /// in CRLF, with Via and Content-Length; a hit adds Age, Cache-Status, Connection
    /// and the blank line. Private: `spots` index into it.
    head: Bytes,
    pub body: Bytes,
    pub times: Times,
    /// Freshness lifetime, seconds.
    pub lifetime: u64,
    pub control: CacheControl,
    pub vary: Option<Box<[Box<str>]>>,
    /// Where the fields a hit reads sit in `head`.
    spots: Spots,
    hits: AtomicU8,
}

/// The fields a hit reads (validators, Date, type, coding, Via), found in the stored
/// head once when the object is built: a hit would otherwise walk the head for each.
const SPOTTED: [&str; 6] = [
    "etag",
    "last-modified",
    "date",
    "content-type",
    "content-encoding",
    "via",
];

/// Where each of `SPOTTED` first occurs in a head: 36 bytes an object, beside a head of
/// a few hundred.
#[derive(Debug, Clone, Copy, Default)]
struct Spots([Spot; SPOTTED.len()]);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Spot {
    #[default]
    Absent,
    /// The value's start and length in the head.
    At(u16, u16),
    /// Beyond what a u16 reaches (a head over 64 KiB): read by walking the head.
    Unindexed,
}

impl Spots {
    fn find(head: &[u8]) -> Spots {
        let mut spots = Spots::default();
        for (name, value) in head_lines(head) {
            let Some(i) = SPOTTED.iter().position(|s| s.eq_ignore_ascii_case(name)) else {
                continue;
            };
            if spots.0[i] != Spot::Absent {
                continue; // the first one counts, as for `Object::field`
            }
            let start = value.as_ptr() as usize - head.as_ptr() as usize;
            spots.0[i] = match (u16::try_from(start), u16::try_from(value.len())) {
                (Ok(at), Ok(len)) => Spot::At(at, len),
                _ => Spot::Unindexed,
            };
        }
        spots
    }
}

/// What building an object needs besides the response.
#[derive(Debug, Clone, Copy)]
pub struct Build<'a> {
    pub via_name: &'a str,
    pub heuristic: Heuristic,
    /// Targeted cache-control fields this cache obeys (RFC 9213), lower-cased.
    pub targeted: &'a [String],
}

impl Object {
    /// `fields` must have passed `storable` and must not carry `Vary: *`.
    pub fn new(mut fields: Fields, body: Bytes, times: Times, b: Build<'_>) -> Object {
        fields.ensure_date(times.response_time);
        let control = response_control(fields.iter(), b.targeted);
        let life = lifetime(&control, &times, fields.status, b.heuristic);
        let head = serialise(&fields, body.len() as u64, b.via_name);
        let vary = fields.vary().ok().flatten();
        let spots = Spots::find(&head);
        Object {
            status: fields.status,
            head: Bytes::from(head.into_boxed_slice()),
            body,
            times,
            lifetime: life,
            control,
            vary,
            spots,
            hits: AtomicU8::new(0),
        }
    }

    /// Selected by `names` rather than by its own Vary. A distilled object is stored
    /// under a key that already names its profile and coding, so the fields its Vary
    /// adds for caches downstream (client hints, Accept-Encoding) select nothing here;
    /// the original's Vary still does: it may only be served where the original could.
    pub fn selected_by(mut self, names: Option<Box<[Box<str>]>>) -> Object {
        self.vary = names;
        self
    }

    /// Bytes charged against the budget.
    pub fn cost(&self, key_len: usize) -> u64 {
        (self.head.len() + self.body.len() + key_len) as u64 + OBJECT_OVERHEAD_BYTES
    }

    pub fn age(&self, now: u64) -> u64 {
        current_age(&self.times, now)
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The stored status line and fields (see the field's comment).
    pub fn head(&self) -> &Bytes {
        &self.head
    }

    pub fn etag(&self) -> Option<&[u8]> {
        self.field("etag")
    }

    pub fn last_modified(&self) -> Option<&[u8]> {
        self.field("last-modified")
    }

    /// The stored fields, read back from the head (the head is the only copy kept: a
    /// second one per object would cost more memory than the rare reads of it save).
    /// Without Content-Length, which a hit restates, and without this proxy's own Via
    /// entry, which serialising adds again.
    pub fn fields(&self, via_name: &str) -> Fields {
        let own_via = format!("1.1 {via_name}");
        let mut raw = Vec::with_capacity(self.head.len());
        for (name, value) in self.head_fields() {
            if name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            if name.eq_ignore_ascii_case("via") {
                let kept: Vec<&[u8]> = list_items(value)
                    .filter(|item| *item != own_via.as_bytes())
                    .collect();
                if !kept.is_empty() {
                    write_field(&mut raw, b"Via", &kept.join(&b", "[..]));
                }
                continue;
            }
            write_field(&mut raw, name.as_bytes(), value);
        }
        let reason = self
            .head
            .split(|&b| b == b'\r')
            .next()
            .and_then(|line| line.splitn(3, |&b| b == b' ').nth(2))
            .unwrap_or(b"");
        Fields {
            status: self.status,
            reason: reason.into(),
            raw: raw.into_boxed_slice(),
        }
    }

    /// A field of the stored head.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        let spot = SPOTTED
            .iter()
            .position(|s| s.eq_ignore_ascii_case(name))
            .map_or(Spot::Unindexed, |i| self.spots.0[i]);
        match spot {
            Spot::Absent => None,
            Spot::At(at, len) => {
                let at = usize::from(at);
                self.head.get(at..at + usize::from(len))
            }
            Spot::Unindexed => self
                .head_fields()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v),
        }
    }

    /// The head's fields (after the status line).
    pub fn head_fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        head_lines(&self.head)
    }
}

/// The fields of a stored head (after its status line).
fn head_lines(head: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    let first = head.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    lines(&head[first..])
}

impl Hits for Arc<Object> {
    fn counter(&self) -> &AtomicU8 {
        &self.hits
    }
}

fn serialise(fields: &Fields, body_len: u64, via_name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + fields.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(&mut out, u64::from(fields.status));
    out.push(b' ');
    out.extend_from_slice(&fields.reason);
    out.extend_from_slice(b"\r\n");
    let mut via = Vec::new();
    for (name, value) in fields.iter() {
        if name.eq_ignore_ascii_case("via") {
            for item in list_items(value) {
                via.extend_from_slice(item);
                via.extend_from_slice(b", ");
            }
        } else if !is_per_hit(name) {
            write_field(&mut out, name.as_bytes(), value);
        }
    }
    via.extend_from_slice(b"1.1 ");
    via.extend_from_slice(via_name.as_bytes());
    write_field(&mut out, b"Via", &via);
    if !matches!(fields.status, 204 | 304) {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(&mut out, body_len);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Fields {
        Fields::from_response(
            200,
            b"OK",
            list.iter().map(|(n, v)| (*n, v.as_bytes())),
            |n| n.eq_ignore_ascii_case("x-hop"),
        )
    }

    #[test]
    fn head_keeps_representation_fields_and_states_length() {
        let f = fields(&[
            ("Content-Type", "text/plain"),
            ("Content-Length", "999"),
            ("Date", "Sat, 28 Nov 2026 00:00:00 GMT"),
            ("X-Hop", "1"),
            ("Via", "1.0 upstream"),
            ("Cache-Control", "max-age=60"),
        ]);
        let times = read_times(&f, 100, 101);
        assert!(times.date.is_some());
        let o = Object::new(
            f,
            Bytes::from_static(b"hello"),
            times,
            Build {
                via_name: "distilld",
                heuristic: Heuristic::default(),
                targeted: &[],
            },
        );
        let head = std::str::from_utf8(&o.head).unwrap_or_default();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
             Date: Sat, 28 Nov 2026 00:00:00 GMT\r\nCache-Control: max-age=60\r\n\
             Via: 1.0 upstream, 1.1 distilld\r\nContent-Length: 5\r\n"
        );
        assert_eq!(o.lifetime, 60);
        // Read back: the origin's fields without framing or this proxy's Via entry.
        let back = o.fields("distilld");
        assert_eq!(back.get("via"), Some(&b"1.0 upstream"[..]));
        assert_eq!(back.get("content-length"), None);
        assert_eq!(back.reason.as_ref(), b"OK");
        assert_eq!(o.etag(), None);
        assert_eq!(o.field("content-type"), Some(&b"text/plain"[..]));
    }

    #[test]
    fn the_spotted_fields_read_as_a_walk_of_the_head_reads_them() {
        let f = fields(&[
            ("ETag", "\"v1\""),
            ("Content-Type", "image/jpeg"),
            ("content-type", "text/plain"),
            ("X-Other", "kept"),
            ("Via", "1.0 a"),
            ("Last-Modified", "Sat, 28 Nov 2026 00:00:00 GMT"),
        ]);
        let times = read_times(&f, 100, 101);
        let b = Build {
            via_name: "distilld",
            heuristic: Heuristic::default(),
            targeted: &[],
        };
        let o = Object::new(f, Bytes::new(), times, b);
        let walked = |name: &str| {
            o.head_fields()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let names = SPOTTED.iter().copied().chain(["x-other", "cache-control"]);
        for name in names.chain(["ETAG", "Content-Type"]) {
            assert_eq!(o.field(name), walked(name), "{name}");
        }
        assert_eq!(
            o.field("content-type"),
            Some(&b"image/jpeg"[..]),
            "the first"
        );
        assert_eq!(o.field("content-encoding"), None);
        assert!(matches!(o.spots.0[0], Spot::At(..)), "etag is indexed");

        // A value beyond what a u16 reaches is read by walking the head.
        let long = "x".repeat(70_000);
        let f = fields(&[("X-Long", long.as_str()), ("ETag", "\"far\"")]);
        let times = read_times(&f, 100, 101);
        let o = Object::new(f, Bytes::new(), times, b);
        assert_eq!(o.spots.0[0], Spot::Unindexed);
        assert_eq!(o.etag(), Some(&b"\"far\""[..]));
    }

    #[test]
    fn a_response_without_date_is_stored_with_the_time_it_arrived() {
        let f = fields(&[("Cache-Control", "max-age=60")]);
        let times = read_times(&f, 1_800_000_000, 1_800_000_001);
        let b = Build {
            via_name: "distilld",
            heuristic: Heuristic::default(),
            targeted: &[],
        };
        let o = Object::new(f, Bytes::new(), times, b);
        assert_eq!(o.field("date"), Some(&b"Fri, 15 Jan 2027 08:00:01 GMT"[..]));
        let mut dated = fields(&[("Date", "Sat, 28 Nov 2026 00:00:00 GMT")]);
        dated.ensure_date(1_800_000_001);
        assert_eq!(dated.iter().filter(|(n, _)| *n == "Date").count(), 1);
    }

    #[test]
    fn update_replaces_fields_by_name_and_vary_is_read() {
        let mut f = fields(&[
            ("ETag", "\"a\""),
            ("Vary", "Accept-Encoding, accept-language"),
        ]);
        f.update_from(&fields(&[
            ("etag", "\"b\""),
            ("Cache-Control", "max-age=5"),
        ]));
        assert_eq!(f.get("ETag"), Some(&b"\"b\""[..]));
        assert_eq!(f.get("cache-control"), Some(&b"max-age=5"[..]));
        let names = f.vary().ok().flatten().unwrap_or_default();
        assert_eq!(
            &*names,
            &["accept-encoding".into(), "accept-language".into()]
        );
        assert_eq!(fields(&[("Vary", "*")]).vary(), Err(VaryStar));
        assert_eq!(fields(&[("Vary", "a=b")]).vary(), Err(VaryStar));
    }
}
