//! The heads a proxy writes: the request sent upstream and the response sent down.
//! Both drop hop-by-hop fields, add Via, and state their own framing, so that what
//! each side reads as the body is exactly what the proxy decoded.

use crate::http::body::Framing;
use crate::http::headers::{list_items, write_decimal, write_field};
use crate::http::request::{Field, RequestFraming, RequestHead};
use crate::http::response::ResponseHead;

use crate::http::target::Destination;

/// What the proxy says about itself in the heads it writes.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub via_name: &'a str,
    pub x_forwarded_for: bool,
}

/// True when this proxy's own Via entry is already on the request: it came back to us.
pub fn is_loop(head: &RequestHead, via_name: &str) -> bool {
    head.named(Field::Via)
        .flat_map(|(_, v)| list_items(v))
        .any(|entry| {
            entry
                .split(|&b| b == b' ')
                .nth(1)
                .is_some_and(|name| name.eq_ignore_ascii_case(via_name.as_bytes()))
        })
}

/// The validators of a stored response, sent to the origin in place of the client's
/// own preconditions when the cache revalidates it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validators<'a> {
    pub etag: Option<&'a [u8]>,
    pub last_modified: Option<&'a [u8]>,
}

/// `whole`: the cache fetches the whole representation for a range request it will
/// answer itself (`Range` and `If-Range` are not sent).
pub fn write_upstream_request(
    out: &mut Vec<u8>,
    head: &RequestHead,
    dest: &Destination,
    client_ip: &str,
    id: Identity<'_>,
    revalidate: Option<Validators<'_>>,
    whole: bool,
) {
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(dest.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_field(out, b"Host", dest.host_field.as_bytes());
    for (name, value) in head.fields() {
        if name.eq_ignore_ascii_case("via")
            || (id.x_forwarded_for && name.eq_ignore_ascii_case("x-forwarded-for"))
        {
            // Written below, with our entries added.
        } else if !head.connection.drops(name)
            && !is_framing_or_local(name)
            && (revalidate.is_none() || !is_precondition_or_range(name))
            && (!whole || !is_range(name))
        {
            write_field(out, name.as_bytes(), value);
        }
    }
    if let Some(v) = revalidate {
        if let Some(etag) = v.etag {
            write_field(out, b"If-None-Match", etag);
        }
        if let Some(lm) = v.last_modified {
            write_field(out, b"If-Modified-Since", lm);
        }
    }
    let via = [version(head.minor_version), id.via_name.as_bytes()];
    write_list_field(out, b"Via", values_of(head.named(Field::Via), "via"), &via);
    if id.x_forwarded_for {
        let xff = values_of(head.named(Field::XForwardedFor), "x-forwarded-for");
        write_list_field(out, b"X-Forwarded-For", xff, &[client_ip.as_bytes()]);
    }
    end_request_head(out, head);
}

/// How the response body travels to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownFraming {
    /// No body (HEAD, 204, 304): the origin's Content-Length, if any, is kept as is.
    None,
    Length(u64),
    Chunked,
    /// Until the proxy closes the client connection (HTTP/1.0 clients).
    Close,
}

impl DownFraming {
    /// The framing for the client, given the origin's and the client's version.
    pub fn choose(origin: Framing, client_minor: u8) -> DownFraming {
        match (origin, client_minor) {
            (Framing::None, _) => DownFraming::None,
            (Framing::Length(n), _) => DownFraming::Length(n),
            (Framing::Chunked | Framing::Close, 1) => DownFraming::Chunked,
            (Framing::Chunked | Framing::Close, _) => DownFraming::Close,
        }
    }
}

/// `extra` is whole header lines (each ending in CRLF) the proxy adds, e.g. Cache-Status.
/// `date` is written when the origin sent no Date (RFC 9110 §6.6.1: a recipient with a
/// clock adds the time it received the response). `all_as_range`: the client asked
/// `Range: bytes=0-` and the whole was fetched: a 200 of known length goes out as the
/// 206 of all its bytes (a media player then knows it may seek by range).
#[allow(clippy::too_many_arguments)]
pub fn write_client_response(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    down: DownFraming,
    keep_alive: bool,
    client_minor: u8,
    via_name: &str,
    extra: &[u8],
    date: &[u8],
    all_as_range: bool,
) {
    let all_of = match down {
        DownFraming::Length(n) if all_as_range && resp.status == 200 && n > 0 => Some(n),
        _ => None,
    };
    match all_of {
        Some(_) => out.extend_from_slice(b"HTTP/1.1 206 Partial Content\r\n"),
        None => write_status_line(out, resp),
    }
    let keep_length = down == DownFraming::None;
    write_end_to_end_fields(out, resp, keep_length, Some(date), via_name);
    if let Some(n) = all_of {
        out.extend_from_slice(b"Content-Range: bytes 0-");
        write_decimal(out, n - 1);
        out.push(b'/');
        write_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    match down {
        DownFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            write_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        DownFraming::Chunked => write_field(out, b"Transfer-Encoding", b"chunked"),
        DownFraming::None | DownFraming::Close => {}
    }
    out.extend_from_slice(extra);
    write_connection(out, keep_alive, client_minor);
    out.extend_from_slice(b"\r\n");
}

/// An interim (1xx) response as forwarded to an HTTP/1.1 client (RFC 9110 §15.2): its
/// status and end-to-end fields with our Via, no framing (a 1xx has no body).
pub fn write_interim_response(out: &mut Vec<u8>, resp: &ResponseHead, via_name: &str) {
    write_status_line(out, resp);
    write_end_to_end_fields(out, resp, false, None, via_name);
    out.extend_from_slice(b"\r\n");
}

fn write_status_line(out: &mut Vec<u8>, resp: &ResponseHead) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(resp.reason());
    out.extend_from_slice(b"\r\n");
}

/// The response's fields without its hop-by-hop ones (and without Content-Length
/// unless `keep_length`), `date` when it has none, its Via list with our entry added.
fn write_end_to_end_fields(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    keep_length: bool,
    date: Option<&[u8]>,
    via_name: &str,
) {
    let mut dated = false;
    for (name, value) in resp.fields() {
        dated |= name.eq_ignore_ascii_case("date");
        if name.eq_ignore_ascii_case("via") {
            // Written below, with our entry added.
        } else if !resp.connection.drops(name)
            && (keep_length || !name.eq_ignore_ascii_case("content-length"))
        {
            write_field(out, name.as_bytes(), value);
        }
    }
    if let Some(date) = date.filter(|_| !dated) {
        write_field(out, b"Date", date);
    }
    let via = [version(resp.minor_version), via_name.as_bytes()];
    write_list_field(out, b"Via", values_of(resp.fields(), "via"), &via);
}

/// `Connection: close` when closing; `keep-alive` for an HTTP/1.0 client we keep.
pub fn write_connection(out: &mut Vec<u8>, keep_alive: bool, client_minor: u8) {
    if !keep_alive {
        write_field(out, b"Connection", b"close");
    } else if client_minor == 0 {
        write_field(out, b"Connection", b"keep-alive");
    }
}

/// Not sent when the cache revalidates: the client's own preconditions are answered by
/// the cache, and the full response is what the cache must have to store it (the
/// client's range is then cut from it, or the whole sent, as RFC 9110 §14.2 allows).
fn is_precondition_or_range(name: &str) -> bool {
    [
        "range",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

fn is_range(name: &str) -> bool {
    name.eq_ignore_ascii_case("range") || name.eq_ignore_ascii_case("if-range")
}

fn is_framing_or_local(name: &str) -> bool {
    [
        "host",
        "content-length",
        "expect",
        crate::cluster::hop::FIELD,
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// The request as forwarded to the node that owns its key: the client's request line
/// and fields (hop-by-hop ones dropped), no Via of ours (the owner adds it once, on its
/// way to the origin), and the hop field, which the owner never forwards on.
/// `extra`: whole field lines added after the client's (a warm-up probe's directives).
pub fn write_peer_request(
    out: &mut Vec<u8>,
    head: &RequestHead,
    dest: &Destination,
    hop: &crate::cluster::hop::Hop,
    extra: &[u8],
) {
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // HTTP/1.1 needs a Host: an HTTP/1.0 client may have sent none.
    let host = head.host().unwrap_or(&dest.host_field);
    write_field(out, b"Host", host.as_bytes());
    for (name, value) in head.fields() {
        if !head.connection.drops(name) && !is_framing_or_local(name) {
            write_field(out, name.as_bytes(), value);
        }
    }
    hop.write(out);
    out.extend_from_slice(extra);
    end_request_head(out, head);
}

/// The framing of the body as this proxy re-encodes it, and the blank line.
fn end_request_head(out: &mut Vec<u8>, head: &RequestHead) {
    match head.framing {
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            write_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => write_field(out, b"Transfer-Encoding", b"chunked"),
        RequestFraming::None => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The values of every field called `name`.
fn values_of<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    fields
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A list field straight into `out` (no list built on the side): the items of all
/// `values` (each a comma-separated list; empty items dropped), then our own item,
/// given in parts.
fn write_list_field<'a>(
    out: &mut Vec<u8>,
    name: &[u8],
    values: impl Iterator<Item = &'a [u8]>,
    own: &[&[u8]],
) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    let start = out.len();
    for item in values.flat_map(list_items) {
        if out.len() > start {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(item);
    }
    if out.len() > start {
        out.extend_from_slice(b", ");
    }
    for part in own {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// The protocol part of a Via entry.
fn version(minor: u8) -> &'static [u8] {
    if minor == 0 { b"1.0 " } else { b"1.1 " }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{HeadLimits, parse_request};
    use crate::http::response::parse_response;
    use crate::http::target::Authority;

    const LIMITS: HeadLimits = HeadLimits {
        header_bytes_max: 4096,
        headers_count_max: 32,
    };
    const ID: Identity<'static> = Identity {
        via_name: "distilld",
        x_forwarded_for: true,
    };

    #[test]
    fn a_list_field_joins_every_line_and_ends_with_our_item() {
        let fields = [
            ("Via", &b"1.0 a, ,1.1 b"[..]),
            ("X", b"x"),
            ("via", b" 1.1 c "),
        ];
        let mut out = Vec::new();
        let own: [&[u8]; 2] = [b"1.1 ", b"distilld"];
        write_list_field(&mut out, b"Via", values_of(fields.into_iter(), "via"), &own);
        assert_eq!(out, b"Via: 1.0 a, 1.1 b, 1.1 c, 1.1 distilld\r\n");
        out.clear();
        let none = values_of(fields.into_iter(), "x-forwarded-for");
        write_list_field(&mut out, b"X-Forwarded-For", none, &[b"10.0.0.9"]);
        assert_eq!(out, b"X-Forwarded-For: 10.0.0.9\r\n");
    }

    #[test]
    fn upstream_head_drops_hop_by_hop_and_adds_via_xff() {
        let raw = "POST http://o.test/p HTTP/1.1\r\nHost: o.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
                   Keep-Alive: 5\r\nProxy-Connection: x\r\nProxy-Authorization: y\r\nTE: trailers\r\nTrailer: z\r\n\
                   Upgrade: ws\r\nVia: 1.0 other\r\nX-Forwarded-For: 10.0.0.1\r\nExpect: 100-continue\r\n\
                   Transfer-Encoding: chunked\r\nAccept: */*\r\n\r\n";
        let (head, _) = parse_request(raw.as_bytes(), LIMITS).unwrap().unwrap();
        let dest = Destination {
            origin: Authority {
                host: "o.test".into(),
                port: 80,
            },
            path: "/p".into(),
            host_field: "o.test".into(),
            screened: true,
        };
        let mut out = Vec::new();
        write_upstream_request(&mut out, &head, &dest, "127.0.0.1", ID, None, false);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /p HTTP/1.1\r\nHost: o.test\r\nAccept: */*\r\nVia: 1.0 other, 1.1 distilld\r\n\
             X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_head_reframes() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n";
        let (resp, _) = parse_response(raw, LIMITS, false).unwrap().unwrap();
        let mut out = Vec::new();
        write_client_response(
            &mut out,
            &resp,
            DownFraming::Close,
            false,
            0,
            "distilld",
            b"",
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            true, // not a 206: the length is not known
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Via: 1.1 distilld\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn loop_detection() {
        let (h, _) = parse_request(
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\nVia: 1.1 x, 1.1 distilld\r\n\r\n",
            LIMITS,
        )
        .unwrap()
        .unwrap();
        assert!(is_loop(&h, "distilld"));
        assert!(!is_loop(&h, "other"));
    }
}
