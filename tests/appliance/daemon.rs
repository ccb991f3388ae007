//! A distilld process as systemd would run it, and the notification socket systemd
//! would listen on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::common::{allow_loopback, temp_path};

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// distilld in front of `origin` with `config`, two shards, the admin listener on a
    /// free port, and `env` set.
    pub fn start(config: &str, origin: SocketAddr, env: Vec<(String, String)>) -> Daemon {
        Daemon::start_on("auto", config, origin, env)
    }

    /// The same on network driver `io`. `WATCHDOG_PID=self` in `env` sets it to the
    /// daemon's own pid, as systemd does for its main process.
    pub fn start_on(
        io: &str,
        config: &str,
        origin: SocketAddr,
        env: Vec<(String, String)>,
    ) -> Daemon {
        let path = temp_path("appliance.toml");
        std::fs::write(&path, allow_loopback(config)).expect("write config");
        let log = temp_path("appliance.log");
        let own_pid = env.iter().any(|(k, v)| k == "WATCHDOG_PID" && v == "self");
        let env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k != "WATCHDOG_PID")
            .collect();
        let mut cmd = if own_pid {
            // The shell's pid is the daemon's once it execs.
            let mut c = Command::new("sh");
            let exe = env!("CARGO_BIN_EXE_distilld");
            c.args(["-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\"", exe]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_distilld"))
        };
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--workers",
                "2",
            ])
            .args(["--io", io])
            .arg("--origin")
            .arg(format!("http://{origin}"))
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("start distilld");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut addr_of = |what: &str| -> SocketAddr {
            let line = lines.next().and_then(|l| l.ok()).unwrap_or_default();
            line.split_whitespace()
                .nth(3)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {what} address in {line:?}"))
        };
        let addr = addr_of("listening");
        let admin = addr_of("admin");
        Daemon {
            child,
            addr,
            admin,
            config: path,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, allow_loopback(text)).expect("rewrite config");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, once the process has ended within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The pid the admin listener reports once it is not `old`.
    pub fn wait_new_pid(&self, old: i32, limit: Duration) -> i32 {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            let (status, body) = http_get(self.admin, "/status.json");
            if status == 200
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                && let Some(pid) = v["pid"].as_i64()
                && pid != i64::from(old)
            {
                return pid as i32;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no new process took over within {limit:?}");
    }
}

/// Kills a process that is not our child (the one a binary upgrade started) at the end.
pub struct Reaper(pub i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        signal(self.0, libc::SIGKILL);
    }
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: sends a signal to a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// A GET with `Connection: close`: the status and body (0 when nothing answered).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The socket systemd listens on for sd_notify messages, read at once by a thread of
/// its own (as systemd reads it: the kernel queues only 10 datagrams).
pub struct Notifications {
    messages: Receiver<String>,
    path: PathBuf,
}

impl Drop for Notifications {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Notifications {
    pub fn bind() -> Notifications {
        let path = temp_path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    return;
                }
            }
        });
        Notifications { messages, path }
    }

    /// `NOTIFY_SOCKET` and `extra` as a process environment.
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![("NOTIFY_SOCKET".to_string(), self.path.display().to_string())];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    fn next(&self, until: Instant) -> Option<String> {
        let left = until.saturating_duration_since(Instant::now());
        self.messages.recv_timeout(left).ok()
    }

    /// The first message with a line starting with `what` within `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        while let Some(m) = self.next(until) {
            if m.lines().any(|l| l.starts_with(what)) {
                return Some(m);
            }
        }
        None
    }

    /// How many messages with a line starting with `what` arrive within `window`.
    pub fn count(&self, what: &str, window: Duration) -> usize {
        let until = Instant::now() + window;
        let mut n = 0;
        while let Some(m) = self.next(until) {
            n += m.lines().filter(|l| l.starts_with(what)).count();
        }
        n
    }

    /// Forgets what arrived so far.
    pub fn drain(&self) {
        while self.messages.try_recv().is_ok() {}
    }
}
