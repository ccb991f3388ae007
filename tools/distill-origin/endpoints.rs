//! The synthetic endpoints: /bytes/N, /chunked/N, /delay/MS, /status/CODE, /echo,
//! /sink, /stats, and the misbehaving ones tests need (/truncate/N, /close/N,
//! /bad-chunk, /headers). Anything else is a file under --root.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use distilld::http::range::{Ranges, select};

use crate::exchange::{Request, piece_bytes, write_paced};
use crate::{Counters, Options, files};

/// Byte `i` of every synthetic body, so a receiver can check what it got.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Answers one request. `Ok(true)` when the connection may serve another.
pub fn handle(
    req: &mut Request<'_>,
    opts: &Options,
    counters: &Counters,
    keep_alive: bool,
) -> std::io::Result<bool> {
    let target = req.head.target().to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let rate = query_u64(query, "rate_kbps").unwrap_or(opts.rate_kbps);
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let first = parts.next().unwrap_or("");
    let arg = parts.next().unwrap_or("");
    let number = arg.parse::<u64>().ok();
    let head_only = req.head.is_head();
    let cc = opts.cache_control.as_str();
    match (first, number) {
        ("echo", None) => return echo(req, opts, keep_alive),
        ("sink", None) => return sink(req, keep_alive),
        ("bytes" | "chunked" | "close" | "truncate" | "delay" | "status", Some(_)) => {}
        ("bad-chunk" | "headers" | "stats", None) => {}
        _ => return files::serve(req, opts, keep_alive),
    }
    let s = req.stream();
    match (first, number) {
        ("bytes", Some(n)) => send_pattern(s, n, Frame::Length, rate, cc, head_only, keep_alive),
        ("chunked", Some(n)) => send_pattern(s, n, Frame::Chunked, rate, cc, head_only, keep_alive),
        ("close", Some(n)) => send_pattern(s, n, Frame::Close, rate, cc, head_only, false),
        ("truncate", Some(n)) => send_truncated(s, n),
        ("delay", Some(ms)) => {
            std::thread::sleep(Duration::from_millis(ms.min(600_000)));
            simple(s, 200, &format!("delayed {ms} ms\n"), keep_alive)
        }
        ("status", Some(code)) if (200..=599).contains(&code) => {
            let body = if matches!(code, 204 | 304) {
                ""
            } else {
                "status\n"
            };
            simple(s, code as u16, body, keep_alive)
        }
        ("bad-chunk", None) => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
            )?;
            Ok(false)
        }
        ("headers", None) => {
            let served = counters.requests.load(Ordering::Relaxed);
            send_headers(req, query, served, keep_alive)
        }
        ("stats", None) => {
            let body = format!(
                "{{\"connections\":{},\"requests\":{}}}\n",
                counters.connections.load(Ordering::Relaxed),
                counters.requests.load(Ordering::Relaxed)
            );
            send(
                s,
                200,
                &[
                    ("Content-Type", "application/json".into()),
                    ("Cache-Control", "no-store".into()),
                ],
                body.as_bytes(),
                keep_alive,
            )
        }
        _ => simple(s, 404, "not found\n", keep_alive),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    Length,
    Chunked,
    Close,
}

fn query_u64(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// Writes a status line and fields; framing fields are the caller's.
pub fn write_head(
    s: &mut TcpStream,
    status: u16,
    fields: &[(&str, String)],
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    head.push_str(&format!(
        "Date: {}\r\nServer: distill-origin\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    ));
    for (n, v) in fields {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
}

pub fn send(
    s: &mut TcpStream,
    status: u16,
    fields: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<bool> {
    let mut all = fields.to_vec();
    let bodiless = matches!(status, 204 | 304);
    if !bodiless {
        all.push(("Content-Length", body.len().to_string()));
    }
    write_head(s, status, &all, keep_alive)?;
    if !bodiless {
        s.write_all(body)?; // a 204 or 304 ends with its head (RFC 9112 §6.3)
    }
    Ok(keep_alive)
}

pub fn simple(
    s: &mut TcpStream,
    status: u16,
    body: &str,
    keep_alive: bool,
) -> std::io::Result<bool> {
    send(
        s,
        status,
        &[("Content-Type", "text/plain".into())],
        body.as_bytes(),
        keep_alive,
    )
}

fn send_pattern(
    s: &mut TcpStream,
    n: u64,
    frame: Frame,
    rate: u64,
    cc: &str,
    head_only: bool,
    keep_alive: bool,
) -> std::io::Result<bool> {
    let mut fields = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Cache-Control", cc.to_string()),
    ];
    match frame {
        Frame::Length => fields.push(("Content-Length", n.to_string())),
        Frame::Chunked => fields.push(("Transfer-Encoding", "chunked".into())),
        Frame::Close => {}
    }
    write_head(s, 200, &fields, keep_alive)?;
    if head_only {
        return Ok(keep_alive);
    }
    let start = Instant::now();
    let piece_len = piece_bytes(rate) as u64;
    let mut piece = Vec::with_capacity(piece_len as usize + 32);
    let mut sent = 0u64;
    while sent < n {
        let len = (n - sent).min(piece_len);
        piece.clear();
        if frame == Frame::Chunked {
            piece.extend_from_slice(format!("{len:x}\r\n").as_bytes());
        }
        piece.extend((sent..sent + len).map(pattern_byte));
        if frame == Frame::Chunked {
            piece.extend_from_slice(b"\r\n");
        }
        write_paced(s, &piece, rate, sent, start)?;
        sent += len;
    }
    if frame == Frame::Chunked {
        s.write_all(b"0\r\n\r\n")?;
    }
    Ok(keep_alive && frame != Frame::Close)
}

/// Declares `n` bytes, sends half, and closes.
fn send_truncated(s: &mut TcpStream, n: u64) -> std::io::Result<bool> {
    write_head(s, 200, &[("Content-Length", n.to_string())], true)?;
    let half: Vec<u8> = (0..n / 2).map(pattern_byte).collect();
    s.write_all(&half)?;
    s.flush()?;
    Ok(false)
}

/// `/headers?Name=value&...`: answers with those fields (hop-by-hop and cache tests).
/// Keys starting with `_` steer the answer: `_status=CODE`, `_delay_ms=MS` (before
/// answering), `_echo=Field` (the body is that request field's value), `_truncate=1`
/// (the body is cut short and the connection closed), `_early=LINK` (a `103 Early
/// Hints` with that Link field first, before the delay), `_len=N` (the body is N
/// pattern bytes), `_range=1` (a single-range Range is answered 206). The answer
/// carries `X-Origin-Request: N` (requests served so far) so a test can tell a cached
/// copy from a fresh one, and is a 304 when the request's If-None-Match names the
/// `ETag` given (or If-Modified-Since is not older than the `Last-Modified` given).
fn send_headers(
    req: &mut Request<'_>,
    query: &str,
    served: u64,
    keep_alive: bool,
) -> std::io::Result<bool> {
    let pairs: Vec<(&str, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k, percent_decode(v)))
        .collect();
    let control = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    };
    if let Some(link) = control("_early") {
        let hints = format!("HTTP/1.1 103 Early Hints\r\nLink: {link}\r\n\r\n");
        req.stream().write_all(hints.as_bytes())?;
        req.stream().flush()?;
    }
    if let Some(ms) = control("_delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms.min(60_000)));
    }
    let mut fields: Vec<(&str, String)> = pairs
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    fields.push(("X-Origin-Request", served.to_string()));
    let field = |name: &str| {
        req.head
            .fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let given = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let not_modified = match (field("if-none-match"), given("etag")) {
        (Some(inm), Some(etag)) => inm.split(',').any(|t| t.trim() == etag),
        (Some(_), None) => false,
        (None, _) => match (field("if-modified-since"), given("last-modified")) {
            (Some(ims), Some(lm)) => matches!(
                (httpdate::parse_http_date(&ims), httpdate::parse_http_date(&lm)),
                (Ok(since), Ok(modified)) if modified <= since
            ),
            _ => false,
        },
    };
    let mut status = if not_modified {
        304
    } else {
        control("_status")
            .and_then(|v| v.parse().ok())
            .filter(|c| (200..=599).contains(c))
            .unwrap_or(200)
    };
    let mut body = match (
        control("_echo"),
        control("_len").and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(name), _) => (field(name).unwrap_or_default() + "\n").into_bytes(),
        (None, Some(n)) => (0..n.min(64 << 20)).map(pattern_byte).collect(),
        (None, None) => format!("headers {served}\n").into_bytes(),
    };
    if let (Some(_), Some(range), 200) = (control("_range"), field("range"), status) {
        let len = body.len() as u64;
        if let Ranges::Parts(parts) = select(range.as_bytes(), len, 1)
            && let [p] = parts[..]
        {
            fields.push((
                "Content-Range",
                format!("bytes {}-{}/{len}", p.start, p.end - 1),
            ));
            body = body[p.start as usize..p.end as usize].to_vec();
            status = 206;
        }
    }
    let body = if req.head.is_head() { Vec::new() } else { body };
    if control("_truncate").is_some() {
        // Promises more than it sends, then closes: a body cut short.
        fields.push(("Content-Length", (body.len() + 100).to_string()));
        write_head(req.stream(), status, &fields, false)?;
        req.stream().write_all(&body)?;
        return Ok(false);
    }
    send(req.stream(), status, &fields, &body, keep_alive)
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(if c == b'+' { b' ' } else { c });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns the request head as received, then its body.
fn echo(req: &mut Request<'_>, opts: &Options, keep_alive: bool) -> std::io::Result<bool> {
    let mut body = req.raw_head.clone();
    let mut piece = Vec::new();
    while req.body.next(&mut piece)? {
        body.extend_from_slice(&piece);
        piece.clear();
        if body.len() > opts.echo_bytes_max {
            let s = req.stream();
            return simple(s, 413, "echo body too large\n", false);
        }
    }
    let s = req.stream();
    send(
        s,
        200,
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Cache-Control", "no-store".into()),
        ],
        &body,
        keep_alive,
    )
}

/// Reads the body and answers with its length and FNV-1a hash.
fn sink(req: &mut Request<'_>, keep_alive: bool) -> std::io::Result<bool> {
    let mut bytes = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    req.body.drain(|piece| {
        bytes += piece.len() as u64;
        for &b in piece {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    })?;
    let body = format!("{{\"bytes\":{bytes},\"fnv1a\":\"{hash:016x}\"}}\n");
    let s = req.stream();
    send(
        s,
        200,
        &[
            ("Content-Type", "application/json".into()),
            ("Cache-Control", "no-store".into()),
        ],
        body.as_bytes(),
        keep_alive,
    )
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
