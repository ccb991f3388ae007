//! Load while the daemon reloads, upgrades or stops: distill-load for the mix of
//! clients, and plain keep-alive clients that note when each request went out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::common::temp_path;

/// What the keep-alive clients saw around a stop signal.
#[derive(Debug, Default)]
pub struct Outcome {
    pub completed: u64,
    /// Answered after the signal, though sent before it.
    pub completed_after_signal: u64,
    /// Sent before the signal and never fully answered: must be 0.
    pub lost_before_signal: u64,
    /// Sent after the signal on a connection the daemon closed: allowed.
    pub refused_after_signal: u64,
}

/// `n` clients, each on keep-alive connections, sending `path` until the daemon is gone.
pub fn slow_clients(
    addr: SocketAddr,
    n: usize,
    path: &str,
    signal_at: Instant,
) -> Vec<JoinHandle<Outcome>> {
    (0..n)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || client_loop(addr, &path, signal_at))
        })
        .collect()
}

pub fn join(clients: Vec<JoinHandle<Outcome>>) -> Outcome {
    let mut all = Outcome::default();
    for c in clients {
        let o = c.join().expect("client thread");
        all.completed += o.completed;
        all.completed_after_signal += o.completed_after_signal;
        all.lost_before_signal += o.lost_before_signal;
        all.refused_after_signal += o.refused_after_signal;
    }
    all
}

fn client_loop(addr: SocketAddr, path: &str, signal_at: Instant) -> Outcome {
    let mut o = Outcome::default();
    let until = signal_at + Duration::from_secs(10);
    'connections: while Instant::now() < until {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return o; // the daemon no longer accepts: done
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        loop {
            let sent_at = Instant::now();
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
            let answered = if s.write_all(req.as_bytes()).is_ok() {
                read_response(&mut s)
            } else {
                None
            };
            match answered {
                Some(close) => {
                    o.completed += 1;
                    if sent_at < signal_at && Instant::now() > signal_at {
                        o.completed_after_signal += 1;
                    }
                    if close {
                        continue 'connections;
                    }
                }
                None if sent_at < signal_at => {
                    o.lost_before_signal += 1;
                    continue 'connections;
                }
                None => {
                    o.refused_after_signal += 1;
                    continue 'connections;
                }
            }
        }
    }
    o
}

/// Reads one whole response with a Content-Length body: Some(closes) when complete.
fn read_response(s: &mut TcpStream) -> Option<bool> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return None;
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())?;
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(head.contains("connection: close"));
        }
        let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A distill-load run and where its report goes.
pub struct Run {
    child: Child,
    report: std::path::PathBuf,
    what: &'static str,
}

/// The mix of clients for `seconds`: keep-alive cache hits, keep-alive proxied POSTs,
/// and proxied POSTs on a new connection each.
pub fn distill_load_mix(addr: SocketAddr, seconds: u64) -> Vec<Run> {
    let hits = format!("http://{addr}/bytes/1000");
    let echo = format!("http://{addr}/echo");
    let d = seconds.to_string();
    vec![
        run("keep-alive cache hits", &["-c", "8", "-d", &d, &hits]),
        run(
            "keep-alive proxied",
            &["-c", "4", "-d", &d, "-m", "POST", "--body", "hello", &echo],
        ),
        run(
            "connection per request, proxied",
            &[
                "-c",
                "4",
                "-d",
                &d,
                "--no-keepalive",
                "-m",
                "POST",
                "--body",
                "hi",
                &echo,
            ],
        ),
    ]
}

fn run(what: &'static str, args: &[&str]) -> Run {
    let report = temp_path("load.json");
    let child = Command::new(env!("CARGO_BIN_EXE_distill-load"))
        .args(["--timeout", "5", "--json"])
        .arg(&report)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start distill-load");
    Run {
        child,
        report,
        what,
    }
}

/// A finished run's report.
pub struct Report {
    what: &'static str,
    json: serde_json::Value,
}

pub fn finish(runs: Vec<Run>) -> Vec<Report> {
    runs.into_iter()
        .map(|mut r| {
            let status = r.child.wait().expect("distill-load");
            assert!(
                status.success(),
                "{}: distill-load failed ({status})",
                r.what
            );
            let text = std::fs::read_to_string(&r.report).expect("distill-load report");
            Report {
                what: r.what,
                json: serde_json::from_str(&text).expect("report JSON"),
            }
        })
        .collect()
}

impl Report {
    /// Requests were made, every one answered 200, no error of any kind (a reset
    /// connection is a read error).
    pub fn assert_clean(&self) {
        let j = &self.json;
        let requests = j["requests"].as_u64().unwrap_or(0);
        assert!(
            requests > 100,
            "{}: only {requests} requests: {j}",
            self.what
        );
        for kind in ["connect", "timeout", "read", "parse"] {
            assert_eq!(
                j["errors"][kind].as_u64(),
                Some(0),
                "{}: {kind} errors: {j}",
                self.what
            );
        }
        let statuses = j["status"].as_object().expect("statuses");
        assert_eq!(statuses.len(), 1, "{}: {j}", self.what);
        assert_eq!(
            statuses.get("200").and_then(|n| n.as_u64()),
            Some(requests),
            "{}: {j}",
            self.what
        );
    }
}
