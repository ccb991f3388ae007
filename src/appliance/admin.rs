//! The admin listener (`[admin] listen`, loopback by default): `/metrics`, `/status`,
//! `/status.json` and `/healthz` on a thread of its own, off the shards, one request per
//! connection. It serves operators and a scraper, not the public: requests are small
//! and handled one at a time, each bounded in size and time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::metrics;
use super::status;
use super::view::NodeView;

/// A request head larger than this is refused.
const HEAD_MAX: usize = 8 * 1024;
/// A client gets this long to send its head and take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The variable a binary upgrade passes the admin listener's descriptor in.
pub const INHERITED_FD: &str = "DISTILLD_ADMIN_FD";

/// The admin listener a binary upgrade handed over, if any. Call it first thing,
/// before any thread starts (it edits the environment).
pub fn take_inherited() -> std::io::Result<Option<TcpListener>> {
    let Ok(text) = std::env::var(INHERITED_FD) else {
        return Ok(None);
    };
    // SAFETY: the caller runs this before any other thread exists.
    unsafe { std::env::remove_var(INHERITED_FD) };
    let fd: i32 = text
        .parse()
        .map_err(|_| std::io::Error::other(format!("{INHERITED_FD}={text:?}")))?;
    crate::shard::listener::adopt(fd).map(Some)
}

/// The admin listener on `addr`: the handed-over one (its address is the old
/// process's: a changed `[admin] listen` takes a restart), or bound now (a failure
/// stops the start-up: an operator asked for it).
pub fn listener(addr: SocketAddr, inherited: Option<TcpListener>) -> std::io::Result<TcpListener> {
    let Some(l) = inherited else {
        return TcpListener::bind(addr);
    };
    if let Ok(had) = l.local_addr()
        && addr.port() != 0
        && had != addr
    {
        tracing::warn!(inherited = %had, configured = %addr,
            "admin.listen differs from the socket handed over: a restart applies it");
    }
    Ok(l)
}

/// Serves on `listener` until `stop` is set (this process handed over to a new one,
/// which serves the same socket from then on).
pub fn spawn(
    listener: TcpListener,
    view: Arc<NodeView>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        serve(s, &view);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        wait_readable(&listener)
                    }
                    Err(e) => {
                        tracing::warn!("admin listener: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map(|_| ())
}

/// Waits up to 100 ms for a connection, so a stop is seen within that.
fn wait_readable(listener: &TcpListener) {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one descriptor we own, with a bounded timeout.
    unsafe { libc::poll(&mut pfd, 1, 100) };
}

fn serve(mut stream: TcpStream, view: &Arc<NodeView>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let answer = match read_head(&mut stream) {
        Ok((method, path)) => Answer {
            head_only: method == "HEAD",
            ..route(&method, &path, view)
        },
        Err(status) => Answer::text(status, "bad request\n"),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if !answer.head_only {
        let _ = stream.write_all(&answer.body);
    }
}

struct Answer {
    head_only: bool,
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            head_only: false,
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

fn route(method: &str, path: &str, view: &Arc<NodeView>) -> Answer {
    if method != "GET" && method != "HEAD" {
        return Answer::text(405, "only GET\n");
    }
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/metrics" => Answer {
            head_only: false,
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            body: metrics::render(view).into_bytes(),
        },
        "/status.json" => Answer {
            head_only: false,
            status: 200,
            content_type: "application/json",
            body: status::json(view).into_bytes(),
        },
        "/status" | "/" => Answer {
            head_only: false,
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: status::PAGE.as_bytes().to_vec(),
        },
        "/healthz" => health(view),
        _ => Answer::text(
            404,
            "not found: try /metrics, /status, /status.json, /healthz\n",
        ),
    }
}

/// 200 while every shard's loop turns; 503 when one is stuck or stopped, or the node
/// drains (so a balancer sends new clients elsewhere).
fn health(view: &NodeView) -> Answer {
    if view.control.draining().is_some() {
        return Answer::text(503, "draining\n");
    }
    let stuck: Vec<String> = (0..view.control.shards.len())
        .filter(|&i| !view.shard_healthy(i))
        .map(|i| i.to_string())
        .collect();
    if stuck.is_empty() {
        Answer::text(200, "ok\n")
    } else {
        Answer::text(503, &format!("unhealthy shards: {}\n", stuck.join(", ")))
    }
}

/// The request line's method and path, or the status to refuse with.
fn read_head(stream: &mut TcpStream) -> Result<(String, String), u16> {
    let mut buf = vec![0u8; HEAD_MAX];
    let mut len = 0;
    // One deadline for the whole head: a client trickling bytes cannot hold the
    // listener (and with it /healthz) longer than this.
    let until = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(408);
        }
        let n = stream.read(&mut buf[len..]).map_err(|_| 408u16)?;
        if n == 0 {
            return Err(400);
        }
        len += n;
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("").to_string();
                let path = req.path.unwrap_or("").to_string();
                return Ok((method, path));
            }
            Ok(httparse::Status::Partial) if len < HEAD_MAX => continue,
            Ok(httparse::Status::Partial) => return Err(431),
            Err(_) => return Err(400),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}
