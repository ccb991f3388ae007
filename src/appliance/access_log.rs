//! The access log: one line per answered request, formatted by the shard that answered
//! it into the shard's own batch, with no allocation and no lock, and handed whole to a
//! writer thread, which writes it to stderr (the journal, under systemd). A shard never
//! waits for the writer: when the writer falls behind and the shard's buffers are all
//! in flight, the batch's lines are dropped and counted
//! (`distilld_access_log_lines_dropped_total`); lines a failed write loses are counted
//! too (`distilld_access_log_lines_unwritten_total`). None is lost silently, except at
//! exit the lines of a shard that had not ended (a drain deadline passed, a second
//! stop signal, a failed shard).
//!
//! Memory: at most `BUFFERS_PER_SHARD` batches of about `BATCH_BYTES` per shard.

use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use thiserror::Error;

use crate::http::headers::write_decimal;
use crate::http::target::Authority;
use crate::proxy::stats::{Counter, Stats};

/// A batch is handed to the writer once it holds this much.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Batches a shard may have at once (filling, queued, being written).
pub const BUFFERS_PER_SHARD: usize = 4;
/// Writes to stderr end at a line and are at most this long where lines allow, so
/// that on a pipe (PIPE_BUF) they never interleave with other log lines mid-line.
const WRITE_MAX: usize = 4096;

/// How lines are written (`log.access_log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `2026-12-01T16:48:40.123Z access client=... method=GET target="/x" status=200 ...`
    #[default]
    Text,
    /// One JSON object per line (JSON Lines).
    Json,
}

#[derive(Debug, Error)]
pub enum AccessLogError {
    #[error("cannot start the access log writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// What one line says.
pub struct Entry<'a> {
    /// The client's address and port, as text (formatted once per connection).
    pub client: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    pub micros: u64,
    /// The origin or peer the request went to; None when answered here.
    pub upstream: Option<&'a Authority>,
    /// A tunnel's bytes from the client, and why it ended.
    pub tunnel: Option<(u64, &'a str)>,
}

/// One batch of lines on its way to the writer.
struct Batch {
    shard: usize,
    bytes: Vec<u8>,
}

/// The shard's end of the writer: full batches go out, emptied ones come back.
struct Sink {
    shard: usize,
    full: Sender<Batch>,
    empty: Receiver<Vec<u8>>,
}

/// A shard's access log, shared (not across threads) by its connections.
pub struct AccessLog {
    batch: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    /// Buffers this shard has made (at most `BUFFERS_PER_SHARD`).
    made: Cell<usize>,
    /// The UNIX second `stamp` spells, and the spelling (`YYYY-MM-DDTHH:MM:SS`).
    stamp_secs: Cell<u64>,
    /// A moment read from both clocks, so a line's wall time comes from the driver's
    /// monotonic reading (read once per batch of events) without a clock call per
    /// line; taken again every second.
    anchor: Cell<Option<(Instant, Duration)>>,
    stamp: RefCell<[u8; 19]>,
    sink: Option<Sink>,
    stats: Arc<Stats>,
}

impl AccessLog {
    /// A log whose lines stay in memory until `take` (tests, and a node whose writer
    /// could not start); past a batch's worth they are dropped and counted.
    pub fn in_memory(stats: Arc<Stats>) -> AccessLog {
        AccessLog::new(None, stats)
    }

    fn new(sink: Option<Sink>, stats: Arc<Stats>) -> AccessLog {
        AccessLog {
            batch: RefCell::new(Vec::with_capacity(BATCH_BYTES + 1024)),
            lines: Cell::new(0),
            made: Cell::new(1),
            stamp_secs: Cell::new(u64::MAX),
            anchor: Cell::new(None),
            stamp: RefCell::new([b'0'; 19]),
            sink,
            stats,
        }
    }

    /// Appends one line for a request answered `at`; hands the batch over once it is
    /// full.
    pub fn write(&self, format: Format, e: &Entry<'_>, at: Instant) {
        let now = self.wall_time(at);
        self.refresh_stamp(now.as_secs());
        {
            let mut b = self.batch.borrow_mut();
            let stamp = self.stamp.borrow();
            let millis = now.subsec_millis();
            match format {
                Format::Text => write_text(&mut b, &stamp, millis, e),
                Format::Json => write_json(&mut b, &stamp, millis, e),
            }
        }
        self.lines.set(self.lines.get() + 1);
        if self.batch.borrow().len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Hands what is batched to the writer (the driver calls this every tick, so a
    /// line is written within one tick of its request).
    pub fn flush(&self) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        let Some(sink) = &self.sink else {
            if self.batch.borrow().len() >= BATCH_BYTES {
                self.batch.borrow_mut().clear();
                self.stats.access_log_dropped.add(lines);
            } else {
                self.lines.set(lines);
            }
            return;
        };
        let Some(fresh) = self.spare(sink) else {
            // Every buffer is queued or being written: the writer is behind.
            self.batch.borrow_mut().clear();
            self.stats.access_log_dropped.add(lines);
            return;
        };
        let bytes = self.batch.replace(fresh);
        let batch = Batch {
            shard: sink.shard,
            bytes,
        };
        if let Err(e) = sink.full.try_send(batch) {
            let mut back = match e {
                TrySendError::Full(b) | TrySendError::Disconnected(b) => b.bytes,
            };
            back.clear();
            self.batch.replace(back);
            self.stats.access_log_dropped.add(lines);
        }
    }

    /// The lines kept in memory (an `in_memory` log), taken.
    pub fn take(&self) -> String {
        self.lines.set(0);
        let text = String::from_utf8_lossy(&self.batch.borrow()).into_owned();
        self.batch.borrow_mut().clear();
        text
    }

    /// An empty buffer: one the writer gave back, or a new one while fewer than
    /// `BUFFERS_PER_SHARD` exist.
    fn spare(&self, sink: &Sink) -> Option<Vec<u8>> {
        if let Ok(v) = sink.empty.try_recv() {
            return Some(v);
        }
        if self.made.get() < BUFFERS_PER_SHARD {
            self.made.set(self.made.get() + 1);
            return Some(Vec::with_capacity(BATCH_BYTES + 1024));
        }
        None
    }

    /// The wall-clock time (since the UNIX epoch) of the monotonic instant `at`.
    fn wall_time(&self, at: Instant) -> Duration {
        match self.anchor.get() {
            Some((mono, wall)) if at >= mono && at - mono < Duration::from_secs(1) => {
                wall + (at - mono)
            }
            _ => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let mono = Instant::now();
                let wall = if at >= mono {
                    wall + (at - mono)
                } else {
                    wall.saturating_sub(mono - at)
                };
                self.anchor.set(Some((at, wall)));
                wall
            }
        }
    }

    fn refresh_stamp(&self, secs: u64) {
        if self.stamp_secs.get() == secs {
            return;
        }
        self.stamp_secs.set(secs);
        spell_utc(secs, &mut self.stamp.borrow_mut());
    }
}

impl Drop for AccessLog {
    /// A shard that ends hands over what it has batched.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The writer thread and each shard's end of it.
pub struct Writer {
    thread: JoinHandle<()>,
    /// Disconnects when the writer has written everything and ended.
    done: Receiver<()>,
}

impl Writer {
    /// Starts the writer and returns one log per shard. The lines the writer cannot
    /// write are counted in the first shard's `access_log_unwritten` (a counter only
    /// the writer thread writes).
    pub fn start(shard_stats: &[Arc<Stats>]) -> Result<(Writer, Vec<LogParts>), AccessLogError> {
        let counts: Arc<Stats> = shard_stats.first().cloned().unwrap_or_default();
        let shards = shard_stats.len();
        let (full_tx, full_rx) = crossbeam_channel::bounded::<Batch>(shards * BUFFERS_PER_SHARD);
        let mut returns = Vec::with_capacity(shards);
        let mut parts = Vec::with_capacity(shards);
        for (shard, stats) in shard_stats.iter().enumerate() {
            let (empty_tx, empty_rx) = crossbeam_channel::bounded(BUFFERS_PER_SHARD);
            returns.push(empty_tx);
            parts.push(LogParts {
                sink: Sink {
                    shard,
                    full: full_tx.clone(),
                    empty: empty_rx,
                },
                stats: stats.clone(),
            });
        }
        drop(full_tx);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                write_batches(
                    full_rx,
                    returns,
                    std::io::stderr(),
                    &counts.access_log_unwritten,
                );
                drop(done_tx);
            })
            .map_err(AccessLogError::Spawn)?;
        Ok((Writer { thread, done }, parts))
    }

    /// Waits until every shard's log is gone and what they handed over is written.
    pub fn join(self) {
        let _ = self.thread.join();
    }

    /// `join`, for at most `within` (shards that did not end keep their logs).
    pub fn finish(self, within: std::time::Duration) -> bool {
        let ended = matches!(
            self.done.recv_timeout(within),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        if ended {
            self.join();
        }
        ended
    }
}

/// What a shard's thread builds its log from (the log itself is not `Send`).
pub struct LogParts {
    sink: Sink,
    stats: Arc<Stats>,
}

impl LogParts {
    pub fn build(self) -> AccessLog {
        AccessLog::new(Some(self.sink), self.stats)
    }
}

/// Writes each batch; the lines of a batch whose write fails (stderr closed, a full
/// disk) are counted in `unwritten`, a counter only this thread writes.
fn write_batches(
    full: Receiver<Batch>,
    returns: Vec<Sender<Vec<u8>>>,
    mut to: impl std::io::Write,
    unwritten: &Counter,
) {
    for mut batch in full {
        let mut rest = &batch.bytes[..];
        while !rest.is_empty() {
            let n = chunk_end(rest);
            if to.write_all(&rest[..n]).is_err() {
                unwritten.add(rest.iter().filter(|&&b| b == b'\n').count() as u64);
                break;
            }
            rest = &rest[n..];
        }
        batch.bytes.clear();
        if let Some(back) = returns.get(batch.shard) {
            let _ = back.try_send(batch.bytes);
        }
    }
}

/// The length of the next write: whole lines, at most `WRITE_MAX` bytes unless one
/// line is longer.
fn chunk_end(bytes: &[u8]) -> usize {
    if bytes.len() <= WRITE_MAX {
        return bytes.len();
    }
    match bytes[..WRITE_MAX].iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1),
    }
}

// Lines are written field by field with no `fmt` machinery: this runs once per request.

fn write_text(b: &mut Vec<u8>, stamp: &[u8; 19], millis: u32, e: &Entry<'_>) {
    write_stamp(b, stamp, millis);
    b.extend_from_slice(b" access client=");
    b.extend_from_slice(e.client.as_bytes());
    b.extend_from_slice(b" method=");
    escape_text(b, e.method);
    b.extend_from_slice(b" target=\"");
    escape_text(b, e.target);
    b.extend_from_slice(b"\" status=");
    write_decimal(b, u64::from(e.status));
    b.extend_from_slice(b" bytes=");
    write_decimal(b, e.bytes);
    b.extend_from_slice(b" micros=");
    write_decimal(b, e.micros);
    b.extend_from_slice(b" upstream=");
    match e.upstream {
        Some(u) => write_authority(b, u),
        None => b.push(b'-'),
    }
    if let Some((up, end)) = e.tunnel {
        b.extend_from_slice(b" bytes_up=");
        write_decimal(b, up);
        b.extend_from_slice(b" end=\"");
        escape_text(b, end);
        b.push(b'"');
    }
    b.push(b'\n');
}

fn write_json(b: &mut Vec<u8>, stamp: &[u8; 19], millis: u32, e: &Entry<'_>) {
    b.extend_from_slice(b"{\"time\":\"");
    write_stamp(b, stamp, millis);
    b.extend_from_slice(b"\",\"client\":\"");
    escape_json(b, e.client);
    b.extend_from_slice(b"\",\"method\":\"");
    escape_json(b, e.method);
    b.extend_from_slice(b"\",\"target\":\"");
    escape_json(b, e.target);
    b.extend_from_slice(b"\",\"status\":");
    write_decimal(b, u64::from(e.status));
    b.extend_from_slice(b",\"bytes\":");
    write_decimal(b, e.bytes);
    b.extend_from_slice(b",\"micros\":");
    write_decimal(b, e.micros);
    b.extend_from_slice(b",\"upstream\":");
    match e.upstream {
        Some(u) => {
            b.push(b'"');
            let start = b.len();
            write_authority(b, u);
            // An authority has no character JSON must escape; checked, not assumed.
            if b[start..]
                .iter()
                .any(|&c| c == b'"' || c == b'\\' || c < 0x20)
            {
                b.truncate(start);
                b.push(b'?');
            }
            b.push(b'"');
        }
        None => b.extend_from_slice(b"null"),
    }
    if let Some((up, end)) = e.tunnel {
        b.extend_from_slice(b",\"bytes_up\":");
        write_decimal(b, up);
        b.extend_from_slice(b",\"end\":\"");
        escape_json(b, end);
        b.push(b'"');
    }
    b.extend_from_slice(b"}\n");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn write_stamp(b: &mut Vec<u8>, stamp: &[u8; 19], millis: u32) {
    b.extend_from_slice(stamp);
    let m = millis.min(999);
    b.extend_from_slice(&[
        b'.',
        b'0' + (m / 100) as u8,
        b'0' + (m / 10 % 10) as u8,
        b'0' + (m % 10) as u8,
        b'Z',
    ]);
}

/// `host:port`, an IPv6 host in brackets (as `Authority`'s Display writes it).
fn write_authority(b: &mut Vec<u8>, a: &Authority) {
    let v6 = a.host.contains(':');
    if v6 {
        b.push(b'[');
    }
    b.extend_from_slice(a.host.as_bytes());
    if v6 {
        b.push(b']');
    }
    b.push(b':');
    write_decimal(b, u64::from(a.port));
}

/// A value inside double quotes on a text line: `"` and `\` escaped, bytes outside
/// visible ASCII as `\xNN`, so a line is always one line.
fn escape_text(b: &mut Vec<u8>, s: &str) {
    for &c in s.as_bytes() {
        match c {
            b'"' | b'\\' => b.extend_from_slice(&[b'\\', c]),
            0x20..=0x7e => b.push(c),
            _ => b.extend_from_slice(&[b'\\', b'x', hex(c >> 4), hex(c & 15)]),
        }
    }
}

/// A JSON string's contents (RFC 8259 §7); the input is UTF-8 already.
fn escape_json(b: &mut Vec<u8>, s: &str) {
    for &c in s.as_bytes() {
        match c {
            b'"' | b'\\' => b.extend_from_slice(&[b'\\', c]),
            0..0x20 | 0x7f => {
                b.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(c >> 4), hex(c & 15)])
            }
            _ => b.push(c),
        }
    }
}

fn hex(nibble: u8) -> u8 {
    b"0123456789abcdef"[usize::from(nibble & 15)]
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for UNIX seconds `secs`.
fn spell_utc(secs: u64, out: &mut [u8; 19]) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    let _ = write!(
        cursor,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (H. Hinnant's
/// well-known algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
