//! Binary upgrade without a refused or reset connection (SIGUSR2, nginx's convention):
//! the binary on disk is started with this process's listening sockets (the same
//! sockets, so nothing in their backlogs is lost) and a pipe; it writes one byte on the
//! pipe once every shard listens, and tells systemd it is the service's main process
//! now (`MAINPID=`). Only then does this process stop accepting and drain. If the new
//! process fails or does not get ready in time, this one keeps serving.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::shard::listener::INHERITED_FDS;

/// The variable naming the pipe the new process writes its ready byte to.
pub const READY_FD: &str = "DISTILLD_UPGRADE_READY_FD";

/// How long a new process may take to get ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A new process under way.
pub struct Upgrade {
    child: Child,
    ready: std::fs::File,
    started: Instant,
}

/// How an upgrade stands.
pub enum Progress {
    Waiting,
    /// The new process (this pid) listens: hand over.
    Ready(u32),
    Failed(String),
}

impl Upgrade {
    /// Starts `exe args` with `listeners` (and the admin listener) inherited.
    pub fn start(
        exe: &Path,
        args: &[OsString],
        listeners: &[RawFd],
        admin: Option<RawFd>,
    ) -> std::io::Result<Upgrade> {
        let (read_end, write_end) = pipe()?;
        set_nonblocking(read_end.as_raw_fd())?;
        let fds: Vec<String> = listeners.iter().map(|fd| fd.to_string()).collect();
        let mut inherited: Vec<RawFd> = listeners.to_vec();
        inherited.push(write_end.as_raw_fd());
        let mut cmd = Command::new(exe);
        // The watchdog is for whichever process is the main one: not this pid.
        cmd.env_remove("WATCHDOG_PID");
        cmd.args(args)
            .env(INHERITED_FDS, fds.join(","))
            .env(READY_FD, write_end.as_raw_fd().to_string());
        if let Some(fd) = admin {
            inherited.push(fd);
            cmd.env(super::admin::INHERITED_FD, fd.to_string());
        }
        // SAFETY: between fork and exec only async-signal-safe fcntl calls are made, on
        // descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &inherited {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(write_end); // the child holds the only writer: EOF means it is gone
        Ok(Upgrade {
            child,
            ready: std::fs::File::from(read_end),
            started: Instant::now(),
        })
    }

    pub fn progress(&mut self) -> Progress {
        let mut byte = [0u8; 1];
        match self.ready.read(&mut byte) {
            Ok(1) => return Progress::Ready(self.child.id()),
            Ok(_) => return self.fail("the new process exited before it was ready"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return self.fail(&format!("cannot read its ready pipe: {e}")),
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            return self.fail(&format!("the new process exited ({status})"));
        }
        if self.started.elapsed() > READY_WITHIN {
            return self.fail("the new process did not get ready in 30 s");
        }
        Progress::Waiting
    }

    /// Stops the new process (a stop signal came while it was starting).
    pub fn abandon(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn fail(&mut self, why: &str) -> Progress {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Progress::Failed(why.to_string())
    }
}

/// In a process started by an upgrade: the pipe to tell the old one this one is
/// ready. Call it first thing, before any thread starts (it edits the environment).
pub fn take_ready_pipe() -> Option<std::fs::File> {
    let text = std::env::var(READY_FD).ok()?;
    // SAFETY: the caller runs this before any other thread exists.
    unsafe { std::env::remove_var(READY_FD) };
    let fd = text.parse::<RawFd>().ok()?;
    // SAFETY: the descriptor was inherited for this process to own; fcntl checks it is
    // open before it is owned.
    (unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .then(|| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Tells the old process this one is ready (every shard listens).
pub fn signal_ready(mut pipe: std::fs::File) {
    if let Err(e) = std::io::Write::write_all(&mut pipe, b"R") {
        tracing::warn!("cannot tell the previous process this one is ready: {e}");
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: reads and sets the status flags of a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
