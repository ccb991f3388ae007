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

    fn fail(&mut self, why: &str) -> Progress {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Progress::Failed(why.to_string())
    }
}

/// In a process started by an upgrade: tell the old one this one is ready.
pub fn signal_ready() {
    let Ok(text) = std::env::var(READY_FD) else {
        return;
    };
    // SAFETY: called on the main thread while no other thread reads the environment.
    unsafe { std::env::remove_var(READY_FD) };
    let Ok(fd) = text.parse::<RawFd>() else {
        tracing::warn!("{READY_FD}={text:?} is not a descriptor");
        return;
    };
    // SAFETY: the descriptor was inherited for this process to own and write once.
    let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(pipe);
    if let Err(e) = std::io::Write::write_all(&mut file, b"R") {
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
