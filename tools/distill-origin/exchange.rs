//! One client connection: read requests (heads with the same parser as distilld,
//! bodies with the same decoder), answer each, keep alive while both sides agree.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use distilld::http::body::{BodyDecoder, Framing};
use distilld::http::request::{HeadLimits, RequestFraming, RequestHead, parse_request};

use crate::endpoints;
use crate::{Counters, Options};

const HEAD_LIMITS: HeadLimits = HeadLimits {
    header_bytes_max: 64 * 1024,
    headers_count_max: 200,
};

/// A request as the endpoints see it: the head, its raw bytes, and a body reader.
pub struct Request<'a> {
    pub head: RequestHead,
    pub raw_head: Vec<u8>,
    pub body: BodyReader<'a>,
}

impl Request<'_> {
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.body.conn.stream
    }
}

pub struct BodyReader<'a> {
    conn: &'a mut Connection,
    dec: BodyDecoder,
}

impl BodyReader<'_> {
    /// Appends the next piece of the body to `out`; `Ok(false)` once it has ended.
    pub fn next(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        while !self.dec.is_done() {
            if self.conn.buf.is_empty() && !self.conn.fill()? {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let (n, data) = self
                .dec
                .decode(&self.conn.buf)
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
            let got = !data.is_empty();
            out.extend_from_slice(data);
            self.conn.buf.drain(..n);
            if got {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads and counts the rest of the body.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
        let mut piece = Vec::with_capacity(64 * 1024);
        while self.next(&mut piece)? {
            each(&piece);
            piece.clear();
        }
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        self.dec.is_done()
    }
}

pub struct Connection {
    pub stream: TcpStream,
    buf: Vec<u8>,
    read_buf: Box<[u8]>,
}

impl Connection {
    fn fill(&mut self) -> std::io::Result<bool> {
        let n = self.stream.read(&mut self.read_buf)?;
        self.buf.extend_from_slice(&self.read_buf[..n]);
        Ok(n > 0)
    }
}

pub fn serve(stream: TcpStream, opts: &Options, counters: &Counters) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(opts.idle_timeout_ms.max(1))));
    let mut conn = Connection {
        stream,
        buf: Vec::new(),
        read_buf: vec![0; 64 * 1024].into_boxed_slice(),
    };
    loop {
        let head = match read_head(&mut conn) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(status) => {
                let _ = endpoints::simple(&mut conn.stream, status, "bad request\n", false);
                return;
            }
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if opts.latency_ms > 0 {
            std::thread::sleep(Duration::from_millis(opts.latency_ms));
        }
        let (head, raw_head) = head;
        let keep_alive = head.wants_keep_alive();
        let framing = match head.framing {
            RequestFraming::None => Framing::None,
            RequestFraming::Length(n) => Framing::Length(n),
            RequestFraming::Chunked => Framing::Chunked,
        };
        let mut req = Request {
            head,
            raw_head,
            body: BodyReader {
                conn: &mut conn,
                dec: BodyDecoder::new(framing),
            },
        };
        let outcome = endpoints::handle(&mut req, opts, counters, keep_alive);
        let body_done = req.body.is_done();
        match outcome {
            Ok(true) if body_done => {}
            _ => return,
        }
    }
}

type ParsedHead = (RequestHead, Vec<u8>);

/// Reads one request head; `Ok(None)` when the client closed or went idle.
fn read_head(conn: &mut Connection) -> Result<Option<ParsedHead>, u16> {
    let started = Instant::now();
    loop {
        match parse_request(&conn.buf, HEAD_LIMITS) {
            Ok(Some((head, n))) => {
                let raw: Vec<u8> = conn.buf.drain(..n).collect();
                return Ok(Some((head, raw)));
            }
            Ok(None) => {}
            Err(e) => return Err(e.status()),
        }
        match conn.fill() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(None),
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Ok(None);
        }
    }
}

/// Writes `data`, released no earlier than the rate allows: a piece goes out once the
/// bytes up to its end are due at `rate_kbps`, so the receiver never sees more.
pub fn write_paced(
    stream: &mut TcpStream,
    data: &[u8],
    rate_kbps: u64,
    sent_before: u64,
    start: Instant,
) -> std::io::Result<()> {
    if rate_kbps > 0 {
        let due_bytes = sent_before + data.len() as u64;
        let due = Duration::from_secs_f64(due_bytes as f64 / (rate_kbps as f64 * 1000.0));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    stream.write_all(data)
}

/// Piece size for a body: 64 KiB, or 50 ms worth of bytes when the rate is capped, so a
/// capped body trickles instead of arriving in bursts.
pub fn piece_bytes(rate_kbps: u64) -> usize {
    const FULL: usize = 64 * 1024;
    if rate_kbps == 0 {
        return FULL;
    }
    usize::try_from(rate_kbps * 1000 / 20)
        .unwrap_or(FULL)
        .clamp(1024, FULL)
}
