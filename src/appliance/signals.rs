//! The signals an operator (or systemd) sends: taken synchronously on the supervisor's
//! thread with `sigtimedwait`, never by a handler, so no shard is ever interrupted.
//! They are blocked before any thread starts, and every thread inherits the mask.

use std::time::Duration;

/// What a signal asks of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: drain and exit (a second one: exit at once).
    Stop,
    /// SIGHUP: read the config file again.
    Reload,
    /// SIGUSR2: start the binary on disk and hand the listeners over to it.
    Upgrade,
}

pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks the signals on the calling thread; call it before starting any thread.
    pub fn block() -> std::io::Result<Signals> {
        // SAFETY: sigset_t is plain data; these calls only fill it and set this
        // thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR2] {
                libc::sigaddset(&mut set, s);
            }
            let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if r != 0 {
                return Err(std::io::Error::from_raw_os_error(r));
            }
            Ok(Signals { set })
        }
    }

    /// The next signal, or None after `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<Signal> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: waits for one of the blocked signals in `set`; the info may be null.
        let s = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        match s {
            libc::SIGTERM | libc::SIGINT => Some(Signal::Stop),
            libc::SIGHUP => Some(Signal::Reload),
            libc::SIGUSR2 => Some(Signal::Upgrade),
            _ => None, // timeout (EAGAIN) or interrupted (EINTR)
        }
    }
}
