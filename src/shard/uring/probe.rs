//! Can this kernel (and sandbox) run the io_uring driver? Checked once at start-up:
//! ring set-up with the flags we use, the opcodes, and a provided-buffer ring.

use std::io::Write;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, Probe, opcode};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(
        "io_uring ring set-up refused: {0} (kernel.io_uring_disabled, seccomp, or an old kernel)"
    )]
    Setup(std::io::Error),
    #[error("io_uring probe failed: {0}")]
    Probe(std::io::Error),
    #[error("io_uring lacks opcode {0}")]
    Opcode(&'static str),
    #[error("io_uring provided-buffer rings unavailable: {0}")]
    BufRing(std::io::Error),
    #[error("io_uring lacks the extended-argument wait (IORING_FEAT_EXT_ARG)")]
    ExtArg,
}

/// Builds a ring the way a shard does: single issuer, deferred task running.
pub fn build_ring(entries: u32) -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_submit_all()
        .build(entries)
}

pub fn probe() -> Result<(), ProbeError> {
    let ring = build_ring(64).map_err(ProbeError::Setup)?;
    if !ring.params().is_feature_ext_arg() {
        return Err(ProbeError::ExtArg);
    }
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(ProbeError::Probe)?;
    let needed = [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Read::CODE, "READ"),
    ];
    for (code, name) in needed {
        if !p.is_supported(code) {
            return Err(ProbeError::Opcode(name));
        }
    }
    let br = super::bufring::BufRing::new(&ring, 16, 1024, 0).map_err(ProbeError::BufRing)?;
    let result = multishot_recv_works(ring);
    drop(br);
    result
}

/// RECV exists since 5.6 but multishot only since 6.0: try one on a socket pair.
fn multishot_recv_works(mut ring: IoUring) -> Result<(), ProbeError> {
    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(ProbeError::Probe)?;
    let entry = opcode::RecvMulti::new(io_uring::types::Fd(a.as_raw_fd()), 0)
        .build()
        .user_data(1);
    // SAFETY: the entry refers to a socket and a registered buffer group that outlive it.
    unsafe {
        ring.submission()
            .push(&entry)
            .map_err(|_| ProbeError::Opcode("RECV (queue full)"))?;
    }
    (&b).write_all(b"x").map_err(ProbeError::Probe)?;
    ring.submit_and_wait(1).map_err(ProbeError::Probe)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or(ProbeError::Opcode("RECV multishot"))?;
    let ok = cqe.result() == 1
        && io_uring::cqueue::more(cqe.flags())
        && io_uring::cqueue::buffer_select(cqe.flags()).is_some();
    if ok {
        Ok(())
    } else {
        Err(ProbeError::Opcode("RECV multishot"))
    }
}

/// Whether a multishot receive ends once a byte cap is reached (the SQE's `optlen`,
/// recent kernels). Without it the driver still works, but one burst from an origin
/// can get further ahead of a slow client before the receive is cancelled.
pub fn capped_multishot_works() -> bool {
    let Ok(mut ring) = build_ring(16) else {
        return false;
    };
    let Ok(br) = super::bufring::BufRing::new(&ring, 16, 1024, 0) else {
        return false;
    };
    let works = capped_receive(&mut ring).unwrap_or(false);
    drop(br);
    works
}

/// 4096 bytes waiting, a cap of 2048: the receive must stop at 2048, without MORE.
fn capped_receive(ring: &mut IoUring) -> std::io::Result<bool> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    (&b).write_all(&[7u8; 4096])?;
    let entry = opcode::RecvMulti::new(io_uring::types::Fd(a.as_raw_fd()), 0).build();
    let entry = super::io::with_total_cap(entry, 2048).user_data(1);
    // SAFETY: the entry refers to a socket and a registered buffer group that outlive it.
    unsafe { ring.submission().push(&entry) }.map_err(std::io::Error::other)?;
    let (mut got, mut ended) = (0i64, false);
    let ts = io_uring::types::Timespec::new().nsec(20_000_000);
    for _ in 0..8 {
        // Bounded waits: a kernel that ignores the cap keeps the receive armed.
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => break,
            Err(e) => return Err(e),
        }
        for cqe in ring.completion() {
            if cqe.result() < 0 {
                return Ok(false);
            }
            got += i64::from(cqe.result());
            ended |= !io_uring::cqueue::more(cqe.flags());
        }
        if ended {
            break;
        }
    }
    Ok(ended && got == 2048)
}
