//! Responses distilld writes itself: errors (with the reason in the body, so an operator
//! reading curl's output learns the cause) and the health answer.

use crate::http::headers::{write_decimal, write_field};

use super::heads::write_connection;

pub const HEALTH_BODY: &[u8] = b"ok\n";
pub const TEXT_PLAIN: &[u8] = b"text/plain; charset=utf-8";

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        407 => "Proxy Authentication Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        508 => "Loop Detected",
        _ => "Unknown",
    }
}

/// A complete response with a text body. `date` is an IMF-fixdate supplied by the caller.
pub struct LocalResponse<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub head_only: bool,
    pub keep_alive: bool,
    pub client_minor: u8,
    pub date: &'a [u8],
    pub via_name: &'a str,
    pub content_type: &'a [u8],
    /// Whole header lines (each ending in CRLF) added as they are.
    pub extra: &'a [u8],
}

impl LocalResponse<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        write_decimal(out, u64::from(self.status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        write_field(out, b"Date", self.date);
        write_field(out, b"Server", self.via_name.as_bytes());
        write_field(out, b"Content-Type", self.content_type);
        out.extend_from_slice(self.extra);
        write_field(out, b"Cache-Control", b"no-store");
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, self.body.len() as u64);
        out.extend_from_slice(b"\r\n");
        write_connection(out, self.keep_alive, self.client_minor);
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(self.body);
        }
    }
}

/// The body of an error answer: `distilld: <status> <reason>: <detail>`.
pub fn error_body(status: u16, detail: &str) -> Vec<u8> {
    format!("distilld: {status} {}: {detail}\n", reason_phrase(status)).into_bytes()
}
