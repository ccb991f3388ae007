//! Response heads from origins, and how their bodies are delimited (RFC 9112 §6.3).

use std::ops::Range;

use super::HttpError;
use super::body::Framing;
use super::headers::{ConnectionOptions, chunked_is_last, merge_content_length};
use super::request::{HEADERS_COUNT_CEILING, HeadLimits};

/// Fields of a response head parsed without a heap allocation.
const STACK_FIELDS: usize = 48;

#[derive(Debug, Clone)]
pub struct ResponseHead {
    raw: Vec<u8>,
    reason: Range<usize>,
    fields: Vec<(Range<usize>, Range<usize>)>,
    pub status: u16,
    pub minor_version: u8,
    pub framing: Framing,
    pub connection: ConnectionOptions,
}

/// An empty head: what `parse_response_into` fills.
impl Default for ResponseHead {
    fn default() -> ResponseHead {
        ResponseHead {
            raw: Vec::new(),
            reason: 0..0,
            fields: Vec::new(),
            status: 0,
            minor_version: 1,
            framing: Framing::Close,
            connection: ConnectionOptions::default(),
        }
    }
}

impl ResponseHead {
    pub fn reason(&self) -> &[u8] {
        &self.raw[self.reason.clone()]
    }

    /// The fields in order. A response's fields are walked several times on its way
    /// through (framing, caching, the client's head), so their names are not checked as
    /// UTF-8 again on each walk: see `name_at`.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields
            .iter()
            .map(|(n, v)| (self.name_at(n), &self.raw[v.clone()]))
    }

    fn name_at(&self, r: &Range<usize>) -> &str {
        let bytes = &self.raw[r.clone()];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: `parse_into` took every name range from an httparse `&str` inside the
        // head it copied into `raw` (or made it empty), so these bytes are that `&str`'s.
        // Only `parse_into` changes `raw` or the ranges, and it clears the ranges before
        // the bytes and sets them after, so no range outlives the bytes it was taken from.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Heap bytes this head's buffers hold (what keeping it for the next response costs).
    pub fn held_bytes(&self) -> usize {
        self.raw.capacity()
            + self.fields.capacity() * std::mem::size_of::<(Range<usize>, Range<usize>)>()
            + self.connection.held_bytes()
    }

    /// Whether the head holds nothing of a response (a kept one, between responses).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty() && self.fields.is_empty() && self.connection.named.is_empty()
    }

    /// Empties the head, keeping its buffers for the next one: nothing of the origin's
    /// response stays in a connection's memory while it is idle.
    pub fn recycle(&mut self) {
        self.fields.clear();
        self.raw.clear();
        self.reason = 0..0;
        self.status = 0;
        self.framing = Framing::Close;
        self.connection.clear();
    }

    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// Whether the origin lets this connection be reused after the body.
    pub fn origin_keeps_alive(&self) -> bool {
        let framed = !matches!(self.framing, Framing::Close);
        let version_ok = if self.minor_version == 0 {
            self.connection.keep_alive
        } else {
            true
        };
        framed && version_ok && !self.connection.close
    }
}

/// Parses a response head; `request_is_head` decides whether a body follows.
pub fn parse_response(
    buf: &[u8],
    limits: HeadLimits,
    request_is_head: bool,
) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let mut head = ResponseHead::default();
    Ok(parse_response_into(buf, limits, request_is_head, &mut head)?.map(|n| (head, n)))
}

/// `parse_response` into `head`'s memory: a connection that keeps one head for its
/// origin's responses copies each into the same buffers instead of allocating two.
/// Returns the head's length in `buf` once it is complete; `head` holds it only then.
pub fn parse_response_into(
    buf: &[u8],
    limits: HeadLimits,
    request_is_head: bool,
    head: &mut ResponseHead,
) -> Result<Option<usize>, HttpError> {
    let count = limits.headers_count_max.min(HEADERS_COUNT_CEILING);
    // httparse offers uninitialised storage only for requests: most responses fit a
    // small array on the stack; only a head with more fields pays for a heap one.
    let mut small = [httparse::EMPTY_HEADER; STACK_FIELDS];
    let small = &mut small[..count.min(STACK_FIELDS)];
    match parse_into(buf, small, limits, count, request_is_head, head) {
        Err(HttpError::TooManyHeaders { .. }) if count > STACK_FIELDS => {
            let mut large = vec![httparse::EMPTY_HEADER; count];
            parse_into(buf, &mut large, limits, count, request_is_head, head)
        }
        other => other,
    }
}

fn parse_into<'b>(
    buf: &'b [u8],
    storage: &mut [httparse::Header<'b>],
    limits: HeadLimits,
    count: usize,
    request_is_head: bool,
    parsed: &mut ResponseHead,
) -> Result<Option<usize>, HttpError> {
    let mut resp = httparse::Response::new(storage);
    let consumed = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.header_bytes_max => n,
        Ok(httparse::Status::Partial) if buf.len() <= limits.header_bytes_max => return Ok(None),
        Ok(_) => {
            return Err(HttpError::HeadTooLarge {
                limit: limits.header_bytes_max,
            });
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders { limit: count });
        }
        Err(_) => return Err(HttpError::Malformed("invalid response head")),
    };
    let head = &buf[..consumed];
    // httparse hands back a reason of obs-text (bytes past ASCII) as a static "" that is
    // not inside the buffer: such a slice is taken as empty, never as an offset.
    let offset = |s: &[u8]| -> Range<usize> {
        let start = (s.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
        match start.checked_add(s.len()) {
            Some(end) if end <= head.len() => start..end,
            _ => 0..0,
        }
    };
    let status = resp.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(HttpError::Malformed("invalid status code"));
    }
    // The ranges are replaced together with the bytes they point into (`name_at`).
    parsed.fields.clear();
    parsed.raw.clear();
    parsed.raw.extend_from_slice(head);
    parsed.fields.extend(
        resp.headers
            .iter()
            .map(|h| (offset(h.name.as_bytes()), offset(h.value))),
    );
    parsed.reason = offset(resp.reason.unwrap_or_default().as_bytes());
    parsed.status = status;
    parsed.minor_version = resp.version.unwrap_or(1);
    parsed.connection.clear();
    parsed.framing = response_framing(parsed, request_is_head)?;
    Ok(Some(consumed))
}

fn response_framing(head: &mut ResponseHead, request_is_head: bool) -> Result<Framing, HttpError> {
    let mut length = None;
    let mut chunked = None;
    let ResponseHead {
        raw,
        fields,
        connection,
        ..
    } = head;
    for (n, v) in fields.iter() {
        let name = &raw[n.clone()];
        let value = &raw[v.clone()];
        if name.eq_ignore_ascii_case(b"content-length") {
            length = merge_content_length(length, value)
                .map_err(|_| HttpError::Malformed("invalid Content-Length in response"))?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = Some(chunked_is_last(value));
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection.add(value);
        }
    }
    let no_body = request_is_head || head.is_informational() || matches!(head.status, 204 | 304);
    Ok(match (no_body, chunked, length) {
        (true, _, _) => Framing::None,
        // Transfer-Encoding overrides Content-Length; a coding other than chunked last
        // means the body runs to the close.
        (false, Some(true), _) => Framing::Chunked,
        (false, Some(false), _) => Framing::Close,
        (false, None, Some(n)) => Framing::Length(n),
        (false, None, None) => Framing::Close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the response_head fuzz target: a reason phrase of bytes past ASCII made
    /// httparse return a reason outside the buffer, and the offset arithmetic underflowed
    /// (a panic, or with overflow checks off a range that panicked when read).
    #[test]
    fn a_reason_of_obs_text_is_read_as_empty_not_as_an_offset() {
        let raw =
            b"HTTP/1.1 100 \xff\xff\xff\xff\xff\xff\xff\xff\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody";
        let (head, n) = parse_response(raw, LIMITS, false).unwrap().unwrap();
        assert_eq!(head.status, 100);
        assert_eq!(n, 25);
        assert!(head.reason().is_empty());
        let raw = b"HTTP/1.1 200 caf\xc3\xa9 \xff\r\nContent-Length: 0\r\n\r\n";
        if let Ok(Some((head, _))) = parse_response(raw, LIMITS, false) {
            let _ = head.reason();
        }
    }

    /// The names `fields()` reads without a UTF-8 check are exactly the names httparse
    /// parsed, for heads with bytes past ASCII in the reason and the values.
    #[test]
    fn field_names_read_as_httparse_parsed_them() {
        let heads: [&[u8]; 3] = [
            b"HTTP/1.1 200 caf\xc3\xa9\r\nX-A: \xff\xfe\r\nContent-Length: 0\r\nVia: 1.1 \xe2\x82\xac\r\n\r\n",
            b"HTTP/1.1 404 \xff\r\nx-\xc3: 1\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nETag: \"\x80\"\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n",
        ];
        for raw in heads {
            let mut storage = [httparse::EMPTY_HEADER; 16];
            let mut expect = httparse::Response::new(&mut storage);
            let parsed = parse_response(raw, LIMITS, false);
            match expect.parse(raw) {
                Ok(httparse::Status::Complete(_)) => {
                    let (head, _) = parsed.unwrap().unwrap();
                    let names: Vec<&str> = head.fields().map(|(n, _)| n).collect();
                    let want: Vec<&str> = expect.headers.iter().map(|h| h.name).collect();
                    assert_eq!(names, want);
                    let values: Vec<&[u8]> = head.fields().map(|(_, v)| v).collect();
                    let want: Vec<&[u8]> = expect.headers.iter().map(|h| h.value).collect();
                    assert_eq!(values, want);
                }
                _ => assert!(!matches!(parsed, Ok(Some(_)))),
            }
        }
    }

    const LIMITS: HeadLimits = HeadLimits {
        header_bytes_max: 1024,
        headers_count_max: 16,
    };

    fn framing(s: &str, head: bool) -> Framing {
        parse_response(s.as_bytes(), LIMITS, head)
            .unwrap()
            .unwrap()
            .0
            .framing
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Framing::Length(5)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Framing::None
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false),
            Framing::None
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            ),
            Framing::None
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Framing::Close
        );
        assert_eq!(framing("HTTP/1.0 200 OK\r\n\r\n", false), Framing::Close);
    }

    #[test]
    fn keep_alive_rules() {
        let p = |s: &str| {
            parse_response(s.as_bytes(), LIMITS, false)
                .unwrap()
                .unwrap()
                .0
        };
        assert!(p("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").origin_keeps_alive());
        assert!(
            !p("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .origin_keeps_alive()
        );
        assert!(!p("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").origin_keeps_alive());
        assert!(!p("HTTP/1.1 200 OK\r\n\r\n").origin_keeps_alive());
    }

    #[test]
    fn heads_with_more_fields_than_the_stack_array() {
        let limits = HeadLimits {
            header_bytes_max: 8192,
            headers_count_max: 100,
        };
        let head = |n: usize| {
            let mut s = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..n {
                s.push_str(&format!("X-{i}: v\r\n"));
            }
            s + "Content-Length: 0\r\n\r\n"
        };
        let (r, _) = parse_response(head(80).as_bytes(), limits, false)
            .unwrap()
            .unwrap();
        assert_eq!(r.fields().count(), 81);
        assert_eq!(
            parse_response(head(100).as_bytes(), limits, false).unwrap_err(),
            HttpError::TooManyHeaders { limit: 100 }
        );
    }

    #[test]
    fn bad_responses() {
        for s in [
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert!(parse_response(s.as_bytes(), LIMITS, false).is_err(), "{s}");
        }
    }
}
