//! Request heads: parsed by `httparse`, then checked for everything a proxy must refuse
//! before a byte reaches the origin (RFC 9112 §3, §6.1, §6.3).

use std::mem::MaybeUninit;
use std::ops::Range;

use super::HttpError;
use super::headers::{ConnectionOptions, chunked_is_last, merge_content_length};

/// Upper bound of the field array on the stack; config caps `headers_count_max` here.
pub const HEADERS_COUNT_CEILING: usize = 1000;
// A field's place is kept as a u16 (`Spot`).
const _: () = assert!(HEADERS_COUNT_CEILING < u16::MAX as usize);

/// Fields the proxy looks up on most requests. Where each occurs is noted when the head
/// is checked, so looking one up costs no pass over the fields: a browser sends a dozen,
/// and a hit asks for a dozen names, most of them absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Accept,
    AcceptEncoding,
    Authorization,
    CacheControl,
    Cookie,
    Downlink,
    Ect,
    IfMatch,
    IfModifiedSince,
    IfNoneMatch,
    IfRange,
    IfUnmodifiedSince,
    Pragma,
    ProxyAuthorization,
    Range,
    Referer,
    SaveData,
    UserAgent,
    Via,
    XDistillOriginal,
    XForwardedFor,
}

impl Field {
    pub const ALL: [Field; 21] = [
        Field::Accept,
        Field::AcceptEncoding,
        Field::Authorization,
        Field::CacheControl,
        Field::Cookie,
        Field::Downlink,
        Field::Ect,
        Field::IfMatch,
        Field::IfModifiedSince,
        Field::IfNoneMatch,
        Field::IfRange,
        Field::IfUnmodifiedSince,
        Field::Pragma,
        Field::ProxyAuthorization,
        Field::Range,
        Field::Referer,
        Field::SaveData,
        Field::UserAgent,
        Field::Via,
        Field::XDistillOriginal,
        Field::XForwardedFor,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Field::Accept => "accept",
            Field::AcceptEncoding => "accept-encoding",
            Field::Authorization => "authorization",
            Field::CacheControl => "cache-control",
            Field::Cookie => "cookie",
            Field::Downlink => "downlink",
            Field::Ect => "ect",
            Field::IfMatch => "if-match",
            Field::IfModifiedSince => "if-modified-since",
            Field::IfNoneMatch => "if-none-match",
            Field::IfRange => "if-range",
            Field::IfUnmodifiedSince => "if-unmodified-since",
            Field::Pragma => "pragma",
            Field::ProxyAuthorization => "proxy-authorization",
            Field::Range => "range",
            Field::Referer => "referer",
            Field::SaveData => "save-data",
            Field::UserAgent => "user-agent",
            Field::Via => "via",
            Field::XDistillOriginal => "x-distill-original",
            Field::XForwardedFor => "x-forwarded-for",
        }
    }

    /// The field called `name` (any case), if it is one of these. Run on every field of
    /// every request: the length and the first letter leave one candidate at most.
    fn of(name: &[u8]) -> Option<Field> {
        use Field::*;
        let first = *name.first()?;
        let fourth = name.get(3).copied().unwrap_or(0);
        let f = match (name.len(), first | 0x20) {
            (3, b'e') => Ect,
            (3, b'v') => Via,
            (5, b'r') => Range,
            (6, b'a') => Accept,
            (6, b'c') => Cookie,
            (6, b'p') => Pragma,
            (7, b'r') => Referer,
            (8, b'd') => Downlink,
            (8, b'i') if fourth | 0x20 == b'm' => IfMatch,
            (8, b'i') => IfRange,
            (9, b's') => SaveData,
            (10, b'u') => UserAgent,
            (13, b'a') => Authorization,
            (13, b'c') => CacheControl,
            (13, b'i') => IfNoneMatch,
            (15, b'a') => AcceptEncoding,
            (15, b'x') => XForwardedFor,
            (17, b'i') => IfModifiedSince,
            (18, b'x') => XDistillOriginal,
            (19, b'i') => IfUnmodifiedSince,
            (19, b'p') => ProxyAuthorization,
            _ => return None,
        };
        f.name().as_bytes().eq_ignore_ascii_case(name).then_some(f)
    }
}

/// Where the fields of one `Field` are: the first and last index among the
/// fields, plus one (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Spot {
    first: u16,
    last: u16,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
}

/// One parsed request head. Owns a copy of the head bytes; names and values are ranges
/// into it, so parsing allocates two buffers, not one per field.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    raw: Vec<u8>,
    method: Range<usize>,
    target: Range<usize>,
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub framing: RequestFraming,
    host: Option<Range<usize>>,
    /// The host part of the Host value (no port, no IPv6 brackets), found when the
    /// value was checked; empty when there is no Host or it is empty.
    host_name: Range<usize>,
    pub connection: ConnectionOptions,
    pub expect_continue: bool,
    /// `raw` holds the bytes the ranges were parsed from, and the method, target, Host
    /// value and field names in it were checked as UTF-8 when it was adopted: `str_at`
    /// need not check them again on every call (a hit reads them a dozen times).
    text_checked: bool,
    /// Where the fields of each `Field` are.
    spots: [Spot; Field::ALL.len()],
}

#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub header_bytes_max: usize,
    pub headers_count_max: usize,
}

impl RequestHead {
    pub fn method(&self) -> &str {
        self.str_at(&self.method)
    }

    pub fn target(&self) -> &str {
        self.str_at(&self.target)
    }

    pub fn host(&self) -> Option<&str> {
        self.host.as_ref().map(|r| self.str_at(r))
    }

    /// The Host field's host, as written: without its port or IPv6 brackets.
    pub fn host_name(&self) -> &str {
        self.str_at(&self.host_name)
    }

    /// Name and value of every field, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.fields
            .iter()
            .map(|(n, v)| (self.str_at(n), &self.raw[v.clone()]))
    }

    /// The value of the first field called `name` (any case).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| {
                self.raw
                    .get(n.clone())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            })
            .and_then(|(_, v)| self.raw.get(v.clone()))
    }

    /// The value of the first `f` field.
    pub fn first(&self, f: Field) -> Option<&[u8]> {
        self.named(f).next().map(|(_, v)| v)
    }

    /// The `f` fields, in order.
    pub fn named(&self, f: Field) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        let among = match self.spots[f as usize] {
            Spot { first: 0, .. } => &self.fields[..0],
            Spot { first, last } => {
                let (first, last) = (usize::from(first) - 1, usize::from(last));
                self.fields.get(first..last).unwrap_or(&self.fields[..0])
            }
        };
        among
            .iter()
            .filter(move |(n, _)| {
                self.raw
                    .get(n.clone())
                    .is_some_and(|n| n.eq_ignore_ascii_case(f.name().as_bytes()))
            })
            .map(|(n, v)| (self.str_at(n), &self.raw[v.clone()]))
    }

    /// Whether an `f` field was sent.
    pub fn has(&self, f: Field) -> bool {
        self.spots[f as usize].first != 0
    }

    pub fn is_head(&self) -> bool {
        self.method() == "HEAD"
    }

    /// Whether the client asked to keep the connection open after this exchange.
    pub fn wants_keep_alive(&self) -> bool {
        if self.minor_version == 0 {
            self.connection.keep_alive && !self.connection.close
        } else {
            !self.connection.close
        }
    }

    pub fn has_body(&self) -> bool {
        !matches!(
            self.framing,
            RequestFraming::None | RequestFraming::Length(0)
        )
    }

    /// Gives a head from `parse_request_reusing` its bytes: `fill` must put exactly the
    /// bytes it was parsed from into the (empty) buffer it is handed.
    pub fn adopt_raw(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        // Cleared first: a `fill` that panics half-way must not leave a stale mark.
        self.text_checked = false;
        fill(&mut self.raw);
        let checked = self.text_ranges().all(|r| {
            self.raw
                .get(r.clone())
                .is_some_and(|b| b.is_ascii() || std::str::from_utf8(b).is_ok())
        });
        self.text_checked = checked;
    }

    /// Every range `str_at` reads.
    fn text_ranges(&self) -> impl Iterator<Item = &Range<usize>> {
        [&self.method, &self.target, &self.host_name]
            .into_iter()
            .chain(self.host.as_ref())
            .chain(self.fields.iter().map(|(n, _)| n))
    }

    /// The buffers of a head that is done with, for the next one (holding no head:
    /// every range is reset with the bytes).
    pub fn recycle(self) -> RequestHead {
        let RequestHead {
            mut raw,
            mut fields,
            mut connection,
            ..
        } = self;
        raw.clear();
        fields.clear();
        connection.clear();
        RequestHead {
            raw,
            fields,
            connection,
            ..RequestHead::default()
        }
    }

    /// Heap bytes this head's buffers hold (what keeping it for the next request costs).
    pub fn held_bytes(&self) -> usize {
        self.raw.capacity()
            + self.fields.capacity() * std::mem::size_of::<(Range<usize>, Range<usize>)>()
            + self.connection.held_bytes()
    }

    /// A head kept for a whole exchange (a miss, a tunnel) gives back the spare room
    /// of the input buffer it may have been handed (`adopt_raw`).
    pub fn shrink(&mut self) {
        if self.raw.capacity() > 2 * self.raw.len() + 256 {
            self.raw.shrink_to_fit();
        }
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        let Some(bytes) = self.raw.get(r.clone()) else {
            return "";
        };
        if self.text_checked {
            // SAFETY: `adopt_raw` checked every range this is called with (the method,
            // the target, the Host value, the field names) as UTF-8 in these bytes,
            // and neither the bytes nor the ranges change until `recycle` resets both.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            std::str::from_utf8(bytes).unwrap_or("")
        }
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((head, n)))` means the head took the first `n` bytes.
pub fn parse_request(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let Some((mut head, n)) = parse_request_reusing(buf, limits, &mut RequestHead::default())?
    else {
        return Ok(None);
    };
    head.adopt_raw(|raw| raw.extend_from_slice(&buf[..n]));
    Ok(Some((head, n)))
}

/// `parse_request` into the buffers of a head that is done with (a keep-alive
/// connection's previous request; taken only once a head is complete), so a request in
/// steady state allocates nothing. The head comes back without its bytes:
/// `RequestHead::adopt_raw` gives it the first `n` bytes of `buf`, moved rather than
/// copied where they are a buffer of their own.
pub fn parse_request_reusing(
    buf: &[u8],
    limits: HeadLimits,
    reuse: &mut RequestHead,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let count = limits.headers_count_max.min(HEADERS_COUNT_CEILING);
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_COUNT_CEILING];
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut storage[..count]);
    let consumed = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.header_bytes_max {
                Err(HttpError::HeadTooLarge {
                    limit: limits.header_bytes_max,
                })
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders { limit: count });
        }
        Err(httparse::Error::Version) => return Err(HttpError::VersionNotSupported),
        Err(e) => return Err(HttpError::Malformed(describe(e))),
    };
    if consumed > limits.header_bytes_max {
        return Err(HttpError::HeadTooLarge {
            limit: limits.header_bytes_max,
        });
    }
    let head = &buf[..consumed];
    reject_bare_cr(head)?;
    let offset = |s: &[u8]| -> Range<usize> {
        let start = s.as_ptr() as usize - head.as_ptr() as usize;
        start..start + s.len()
    };
    let method = offset(req.method.unwrap_or_default().as_bytes());
    let target = offset(req.path.unwrap_or_default().as_bytes());
    let minor_version = req.version.unwrap_or(1);
    let RequestHead {
        mut raw,
        mut fields,
        mut connection,
        ..
    } = std::mem::take(reuse);
    raw.clear();
    fields.clear();
    fields.extend(
        req.headers
            .iter()
            .map(|h| (offset(h.name.as_bytes()), offset(h.value))),
    );
    connection.clear();
    let mut parsed = RequestHead {
        raw,
        method,
        target,
        fields,
        minor_version,
        framing: RequestFraming::None,
        host: None,
        host_name: 0..0,
        connection,
        expect_continue: false,
        text_checked: false,
        spots: Default::default(),
    };
    check_fields(&mut parsed, head)?;
    Ok(Some((parsed, consumed)))
}

/// RFC 9112 §3.2: a Host field that is not a valid authority is answered 400. An empty
/// one is what a client sends for a target without an authority, and stays allowed.
/// Gives the host's place within `value`.
fn check_host(value: &[u8]) -> Result<Range<usize>, HttpError> {
    if value.is_empty() {
        return Ok(0..0);
    }
    let Some((host, _)) = std::str::from_utf8(value)
        .ok()
        .and_then(|v| crate::http::target::Authority::split(v, 80).ok())
    else {
        return Err(HttpError::Malformed("invalid Host"));
    };
    // `split` gives a slice of `value`.
    let start = host.as_ptr() as usize - value.as_ptr() as usize;
    Ok(start..start + host.len())
}

/// httparse tolerates a lone CR inside a field value; RFC 9112 §2.2 says reject it.
/// Every CR must begin a CRLF; memchr's SIMD search finds them (a browser's head is
/// 500-800 bytes with a CR a line, read on every request).
fn reject_bare_cr(head: &[u8]) -> Result<(), HttpError> {
    if memchr::memchr_iter(b'\r', head).all(|at| head.get(at + 1) == Some(&b'\n')) {
        Ok(())
    } else {
        Err(HttpError::Malformed("bare CR"))
    }
}

/// `raw`: the head's bytes (the ranges in `head` point into them).
fn check_fields(head: &mut RequestHead, raw: &[u8]) -> Result<(), HttpError> {
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<Range<usize>> = None;
    let mut hosts = 0;
    for i in 0..head.fields.len() {
        let (name, value) = head.fields[i].clone();
        let n = &raw[name];
        let v = &raw[value.clone()];
        if let Some(f) = Field::of(n) {
            // Within the ceiling of 1,000 fields: the index fits.
            let at = u16::try_from(i + 1).unwrap_or(u16::MAX);
            let spot = &mut head.spots[f as usize];
            if spot.first == 0 {
                spot.first = at;
            }
            spot.last = at;
            continue;
        }
        if n.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            let name = check_host(v)?;
            head.host_name = value.start + name.start..value.start + name.end;
            head.host = Some(value);
        } else if n.eq_ignore_ascii_case(b"content-length") {
            content_length = merge_content_length(content_length, v)
                .map_err(|_| HttpError::Malformed("invalid or conflicting Content-Length"))?;
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(HttpError::Malformed("repeated Transfer-Encoding"));
            }
            transfer_encoding = Some(value);
        } else if n.eq_ignore_ascii_case(b"connection") {
            head.connection.add(v);
        } else if n.eq_ignore_ascii_case(b"expect") {
            if !v.eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::UnsupportedExpectation);
            }
            head.expect_continue = true;
        }
    }
    if hosts > 1 {
        return Err(HttpError::Malformed("duplicate Host"));
    }
    if hosts == 0 && head.minor_version == 1 {
        return Err(HttpError::Malformed("missing Host"));
    }
    head.framing = match (transfer_encoding, content_length) {
        (Some(_), Some(_)) => {
            return Err(HttpError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        (Some(te), None) => {
            let te = &raw[te];
            if head.minor_version == 0 {
                return Err(HttpError::Malformed("Transfer-Encoding in HTTP/1.0"));
            }
            if !chunked_is_last(te) {
                return Err(HttpError::Malformed(
                    "Transfer-Encoding without final chunked",
                ));
            }
            if !te.eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::UnsupportedTransferCoding);
            }
            RequestFraming::Chunked
        }
        (None, Some(n)) => RequestFraming::Length(n),
        (None, None) => RequestFraming::None,
    };
    Ok(())
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        header_bytes_max: 1024,
        headers_count_max: 16,
    };

    #[test]
    fn every_field_is_known_by_its_name_in_any_case_and_no_other() {
        for (i, f) in Field::ALL.iter().enumerate() {
            let name = f.name();
            assert_eq!(*f as usize, i, "{name}: ALL in declaration order");
            assert_eq!(Field::of(name.as_bytes()), Some(*f), "{name}");
            assert_eq!(
                Field::of(name.to_uppercase().as_bytes()),
                Some(*f),
                "{name}"
            );
            assert_eq!(Field::of(&name.as_bytes()[1..]), None, "{name}");
            assert_eq!(Field::of(format!("{name}x").as_bytes()), None, "{name}");
        }
        for other in ["host", "content-length", "connection", "accepts", "", "x"] {
            assert_eq!(Field::of(other.as_bytes()), None, "{other}");
        }
        let original = crate::distill::profile::ORIGINAL_HEADER;
        assert_eq!(Field::XDistillOriginal.name(), original);
    }

    proptest::proptest! {
        /// Looking a field up through the index finds what a walk of every field finds,
        /// in the same order, whatever the names' case, repeats and places.
        #[test]
        fn named_reads_as_a_walk_of_the_fields_reads(
            picks in proptest::collection::vec((0usize..26, proptest::bool::ANY, 0u8..10), 0..14)
        ) {
            let pool = |i: usize| match i {
                21 => "x-other",
                22 => "accept-language",
                23 => "content-type",
                24 => "via-x",
                25 => "sec-ch-ua",
                i => Field::ALL[i].name(),
            };
            let mut text = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
            for &(i, upper, v) in &picks {
                let name = if upper { pool(i).to_uppercase() } else { pool(i).to_string() };
                text.push_str(&format!("{name}: v{v}\r\n"));
            }
            text.push_str("\r\n");
            let limits = HeadLimits { header_bytes_max: 4096, headers_count_max: 32 };
            let (head, _) = parse_request(text.as_bytes(), limits).unwrap().unwrap();
            for f in Field::ALL {
                let walked: Vec<_> = head
                    .fields()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(f.name()))
                    .collect();
                let found: Vec<_> = head.named(f).collect();
                proptest::prop_assert_eq!(&found, &walked, "{:?}", f);
                proptest::prop_assert_eq!(head.has(f), !walked.is_empty());
                proptest::prop_assert_eq!(head.first(f), walked.first().map(|f| f.1));
                proptest::prop_assert_eq!(head.first(f), head.field(f.name()));
            }
        }
    }

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_request(s.as_bytes(), LIMITS)
    }

    fn status(s: &str) -> u16 {
        parse(s).expect_err("should be refused").status()
    }

    #[test]
    fn parses_a_simple_get() {
        let (h, n) = parse("GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(n, 43);
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/a?b");
        assert_eq!(h.host(), Some("x"));
        assert_eq!(h.framing, RequestFraming::None);
        assert!(h.wants_keep_alive());
        assert_eq!(h.fields().count(), 2);
    }

    #[test]
    fn the_host_name_is_found_when_the_host_is_checked() {
        let host_name = |field: &str| {
            let (h, _) = parse(&format!("GET / HTTP/1.1\r\nHost: {field}\r\n\r\n"))
                .unwrap()
                .unwrap();
            h.host_name().to_string()
        };
        assert_eq!(host_name("Example.COM:8080"), "Example.COM");
        assert_eq!(host_name("[::1]:81"), "::1");
        assert_eq!(host_name("x"), "x");
        assert_eq!(host_name("x:"), "x");
        assert_eq!(host_name("x:00080"), "x");
        assert_eq!(host_name(""), "");
        let (h, _) = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.host(), h.host_name()), (None, ""));
        for bad in ["x:0", "x:65536", "x:+1", "x:1a", "[::1", "a b"] {
            let head = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(status(&head), 400, "{bad}");
        }
    }

    #[test]
    fn text_is_checked_once_when_the_bytes_are_adopted() {
        let text = "GET /caf\u{e9} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        let (h, _) = parse(text).unwrap().unwrap();
        assert!(h.text_checked, "a parsed head reads its text unchecked");
        assert_eq!(h.target(), "/caf\u{e9}");
        assert_eq!(h.field("ACCEPT"), Some(&b"*/*"[..]));

        // Bytes that are not the ones parsed (a misuse of adopt_raw) are never read
        // unchecked: the target's range now splits a two-byte character.
        let mut reuse = RequestHead::default();
        let (mut h, n) = parse_request_reusing(text.as_bytes(), LIMITS, &mut reuse)
            .unwrap()
            .unwrap();
        h.adopt_raw(|raw| {
            raw.extend_from_slice(b"GET /caf");
            raw.resize(n, b'\xc3');
        });
        assert!(!h.text_checked);
        assert_eq!(h.target(), "");
        assert_eq!(h.method(), "GET");

        let h = h.recycle();
        assert!(!h.text_checked, "a recycled head holds no text");
        assert_eq!(h.field("host"), None);
    }

    #[test]
    fn partial_then_too_large() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2000));
        assert_eq!(status(&big), 431);
    }

    #[test]
    fn a_bare_cr_anywhere_in_the_head_is_refused() {
        for head in [
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: \ra\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{head:?}");
        }
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\nX: a b\r\n\r\n").is_ok());
        // httparse 1.10 refuses those itself; the check stands behind it on its own.
        for bare in [&b"a\rb"[..], b"\r", b"x\r\n\r", b"\r\r\n", b"\n\r"] {
            assert!(reject_bare_cr(bare).is_err(), "{bare:?}");
        }
        for fine in [&b""[..], b"\r\n", b"a\r\nb\r\n\r\n", b"\n\n"] {
            assert!(reject_bare_cr(fine).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn refuses_smuggling_shapes() {
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"), 400);
        for host in ["a:80/x", "a/x", "a:b", "u@a", "[::1", "a:0", "a b"] {
            let req = format!("GET /y HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(status(&req), 400, "Host: {host}");
        }
        assert!(parse("GET /y HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").is_ok());
        assert_eq!(status("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
        assert_eq!(status("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    }

    #[test]
    fn equal_duplicate_lengths_are_one() {
        let (h, _) =
            parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.framing, RequestFraming::Length(3));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..20 {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(status(&s), 431);
    }

    #[test]
    fn http10_keep_alive_rules() {
        let (h, _) = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.wants_keep_alive());
        let (h, _) = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.wants_keep_alive());
        let (h, _) = parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.wants_keep_alive());
    }

    #[test]
    fn expect_rules() {
        let (h, _) =
            parse("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.expect_continue);
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n"),
            417
        );
    }
}
