//! Test harness: real distilld and distill-origin processes on loopback, and a raw
//! HTTP/1.1 client that shows exactly what came over the wire.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Forward proxy (absolute-form requests) or reverse proxy (origin-form to a route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Reverse,
}

/// The network driver the proxies of the current test run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Epoll,
    Uring,
}

impl Io {
    pub fn flag(self) -> &'static str {
        match self {
            Io::Epoll => "epoll",
            Io::Uring => "uring",
        }
    }
}

thread_local! {
    static IO: std::cell::Cell<Io> = const { std::cell::Cell::new(Io::Epoll) };
}

/// Runs `f` with every proxy it starts on driver `io` (each test has its own thread).
pub fn with_io(io: Io, f: impl FnOnce()) {
    IO.with(|c| c.set(io));
    f();
}

pub fn current_io() -> Io {
    IO.with(|c| c.get())
}

/// The files distill-origin serves in these tests: the fixtures of `tests/data/corpus`
/// (sources and licences in `tests/data/MANIFEST.tsv`).
pub fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
    assert!(dir.is_dir(), "missing test corpus {}", dir.display());
    dir
}

/// A child process killed when dropped.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `bin args`, waits for its "... listening on ADDR" line.
fn spawn(bin: &str, args: &[String], log_name: &str) -> Process {
    let log_path = temp_path(log_name);
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    // "<name> listening on ADDR [(driver)]"
    let addr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{bin} did not report its address: {line:?}"));
    Process {
        child,
        addr,
        log: log_path,
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn temp_path(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("distilld-test-{}-{n}-{name}", std::process::id()))
}

pub fn start_origin(extra: &[&str]) -> Process {
    start_origin_at(&corpus_dir(), extra)
}

/// An origin serving the files under `root`.
pub fn start_origin_at(root: &std::path::Path, extra: &[&str]) -> Process {
    let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into(), "--root".into()];
    args.push(root.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn(env!("CARGO_BIN_EXE_distill-origin"), &args, "origin.log")
}

/// The forward proxy denies loopback destinations by default (SSRF); the tests' origins
/// listen on loopback, so their configs allow it explicitly (unless a test sets the
/// destination rules itself).
pub fn allow_loopback(config: &str) -> String {
    const ALLOW: &str = "destinations_allowed = [\"127.0.0.0/8\", \"::1\"]\n";
    if config.contains("destinations_allowed") {
        return config.to_string();
    }
    match config.find("[forward]\n") {
        Some(at) => {
            let end = at + "[forward]\n".len();
            format!("{}{ALLOW}{}", &config[..end], &config[end..])
        }
        None => format!("{config}\n[forward]\n{ALLOW}"),
    }
}

/// Starts distilld with `config` (TOML, loopback destinations allowed), in `mode`, in
/// front of `origin`.
pub fn start_proxy(mode: Mode, origin: SocketAddr, config: &str, workers: usize) -> Process {
    let path = temp_path("config.toml");
    std::fs::write(&path, allow_loopback(config)).expect("write config");
    let mut args: Vec<String> = vec![
        "run".into(),
        "--config".into(),
        path.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--workers".into(),
        workers.to_string(),
        "--io".into(),
        current_io().flag().into(),
        // Tests run side by side: none takes the shipped admin port.
        "--admin".into(),
        "off".into(),
    ];
    if mode == Mode::Reverse {
        args.push("--origin".into());
        args.push(format!("http://{origin}"));
    }
    spawn(env!("CARGO_BIN_EXE_distilld"), &args, "distilld.log")
}

/// An origin and a proxy in front of it.
pub struct Setup {
    pub mode: Mode,
    pub origin: Process,
    pub proxy: Process,
}

impl Setup {
    pub fn new(mode: Mode) -> Setup {
        Setup::with(mode, "", &[])
    }

    pub fn with(mode: Mode, config: &str, origin_args: &[&str]) -> Setup {
        Setup::with_root(mode, config, &corpus_dir(), origin_args)
    }

    /// Like `with`, the origin serving files from `root`.
    pub fn with_root(
        mode: Mode,
        config: &str,
        root: &std::path::Path,
        origin_args: &[&str],
    ) -> Setup {
        let origin = start_origin_at(root, origin_args);
        let proxy = start_proxy(mode, origin.addr, config, 2);
        Setup {
            mode,
            origin,
            proxy,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.proxy.addr)
    }

    /// The request line target and Host for `path` in this mode.
    pub fn target(&self, path: &str) -> (String, String) {
        match self.mode {
            Mode::Forward => (
                format!("http://{}{path}", self.origin.addr),
                self.origin.addr.to_string(),
            ),
            Mode::Reverse => (path.to_string(), "site.test".to_string()),
        }
    }

    /// A request head: `METHOD target HTTP/1.1`, Host, the extra lines, blank line.
    pub fn head(&self, method: &str, path: &str, extra: &[&str]) -> String {
        let (target, host) = self.target(path);
        let mut s = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
        for line in extra {
            s.push_str(line);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s
    }

    /// Sends one GET on a new connection and reads the response.
    pub fn get(&self, path: &str) -> Response {
        let mut c = self.client();
        c.send(self.head("GET", path, &[]).as_bytes());
        c.response(false)
    }

    /// The origin's own counters, asked directly (not through the proxy).
    pub fn origin_stats(&self) -> (u64, u64) {
        origin_stats(self.origin.addr)
    }
}

pub fn origin_stats(origin: SocketAddr) -> (u64, u64) {
    let mut c = Client::connect(origin);
    c.send(
        format!("GET /stats HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let r = c.response(false);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("stats json");
    // The /stats request itself counts one connection and one request.
    (
        v["connections"].as_u64().unwrap_or(0) - 1,
        v["requests"].as_u64().unwrap_or(0) - 1,
    )
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// A client whose connection comes from `source` (any loopback address).
    pub fn connect_from(addr: SocketAddr, source: [u8; 4]) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&SocketAddr::from((source, 0)).into())
            .expect("bind a loopback source");
        socket.connect(&addr.into()).expect("connect");
        Client::on(socket.into())
    }

    pub fn connect(addr: SocketAddr) -> Client {
        Client::on(TcpStream::connect(addr).expect("connect"))
    }

    fn on(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
        stream.set_nodelay(true).ok();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 65536];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads one response head.
    pub fn head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) =
                resp.parse(&self.buf).expect("valid response head")
            {
                let status = resp.code.unwrap_or(0);
                let fields = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..n);
                return (status, fields);
            }
            assert!(
                self.fill().expect("read head") > 0,
                "connection closed before a response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads one whole response (skipping 1xx); panics if the body is incomplete.
    pub fn response(&mut self, head_request: bool) -> Response {
        self.try_response(head_request).expect("complete response")
    }

    /// Reads one response; `Err` describes how the body fell short.
    pub fn try_response(&mut self, head_request: bool) -> Result<Response, String> {
        let (mut status, mut headers) = self.head();
        while (100..200).contains(&status) {
            (status, headers) = self.head();
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let body = if head_request || matches!(status, 204 | 304) {
            Vec::new()
        } else if chunked {
            self.read_chunked()?
        } else if let Some(len) = get("content-length") {
            let len: usize = len.trim().parse().map_err(|_| "bad length".to_string())?;
            self.read_exact_body(len)?
        } else {
            self.read_to_close()?
        };
        Ok(Response {
            status,
            headers,
            body,
            chunked,
        })
    }

    fn read_exact_body(&mut self, len: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < len {
            match self.fill() {
                Ok(0) => return Err(format!("closed after {} of {len} bytes", self.buf.len())),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} after {} of {len} bytes", self.buf.len())),
            }
        }
        Ok(self.buf.drain(..len).collect())
    }

    fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            match self.fill() {
                Ok(0) => return Err("closed inside chunked body".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} inside chunked body")),
            }
        }
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size)?);
            if !self.read_line()?.is_empty() {
                return Err("missing CRLF after chunk".into());
            }
        }
    }

    /// Bytes already read past the last parsed head or body.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub fn read_to_close(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match self.fill() {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} before the close")),
            }
        }
    }

    /// True when the peer closed (EOF or reset) within `wait` with nothing more to read.
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).ok();
        let closed = match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok();
        closed
    }
}

/// Byte `i` of distill-origin's synthetic bodies.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

pub fn assert_pattern(body: &[u8], len: usize) {
    assert_eq!(body.len(), len, "body length");
    for (i, &b) in body.iter().enumerate() {
        assert_eq!(b, pattern_byte(i as u64), "body byte {i}");
    }
}

/// Resident and peak resident memory of a process, in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Runs each named `fn(Mode)` as a forward and as a reverse proxy, on each driver.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        $crate::in_both_modes!(@mod forward_epoll, Forward, Epoll; $($name),*);
        $crate::in_both_modes!(@mod reverse_epoll, Reverse, Epoll; $($name),*);
        $crate::in_both_modes!(@mod forward_uring, Forward, Uring; $($name),*);
        $crate::in_both_modes!(@mod reverse_uring, Reverse, Uring; $($name),*);
    };
    (@mod $module:ident, $mode:ident, $io:ident; $($name:ident),*) => {
        mod $module {
            $( #[test] fn $name() {
                super::common::with_io(super::common::Io::$io, || super::$name(super::Mode::$mode))
            } )*
        }
    };
}

/// Runs each named `fn()` once on each driver.
#[macro_export]
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $( #[test] fn $name() { super::common::with_io(super::common::Io::Epoll, super::$name) } )*
        }
        mod uring {
            $( #[test] fn $name() { super::common::with_io(super::common::Io::Uring, super::$name) } )*
        }
    };
}

/// distill-origin's `/headers` endpoint answering with the fields in `query` (already
/// percent-encoded where needed).
pub fn headers_url(query: &str) -> String {
    format!("/headers?{query}")
}

/// One GET on a new connection, with `extra` header lines.
pub fn get_with(s: &Setup, path: &str, extra: &[&str]) -> Response {
    let mut c = s.client();
    c.send(s.head("GET", path, extra).as_bytes());
    c.response(false)
}

/// Which of the origin's requests made this response (`/headers` says): the same
/// number twice means the second came from the cache.
pub fn origin_request(r: &Response) -> &str {
    r.header("x-origin-request").unwrap_or("-")
}

pub fn cache_status(r: &Response) -> &str {
    r.header("cache-status").unwrap_or("")
}
