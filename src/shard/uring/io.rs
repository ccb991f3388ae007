//! One socket's side of the ring: the operation tokens carried in `user_data`, and what
//! is in flight on a socket (a multishot receive, a send and the bytes it reads).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::files::on_socket;
use crate::proxy::out::{IOV_MAX, Out};
use crate::shard::dns::Wake;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Accept = 1,
    ClientRecv,
    ClientSend,
    UpConnect,
    UpRecv,
    UpSend,
    Wake,
    Cancel,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        [
            Op::Accept,
            Op::ClientRecv,
            Op::ClientSend,
            Op::UpConnect,
            Op::UpRecv,
            Op::UpSend,
            Op::Wake,
            Op::Cancel,
        ]
        .into_iter()
        .find(|op| *op as u8 == v)
    }
}

/// A token has room for 24 bits of a socket's generation (8 for the op, 32 for the
/// slot index), so generations are counted in 24 bits: a socket's own generation is
/// then exactly what its tokens carry, before and after the counter wraps.
const GENERATION_MASK: u32 = 0x00ff_ffff;

pub(super) fn token(op: Op, index: usize, generation: u32) -> u64 {
    u64::from(op as u8) | (u64::from(generation & GENERATION_MASK) << 8) | ((index as u64) << 32)
}

pub(super) fn untoken(t: u64) -> Option<(Op, usize, u32)> {
    Some((
        Op::from_u8((t & 0xff) as u8)?,
        (t >> 32) as usize,
        ((t >> 8) as u32) & GENERATION_MASK,
    ))
}

/// The generation counter of a shard's sockets (client and origin alike): a completion
/// whose token names an older generation of a reused slot is stale.
pub(super) struct Generations(u32);

impl Generations {
    /// The counter's first value; tests start it just below the wrap.
    pub(super) fn starting_at(first: u32) -> Generations {
        Generations(first & GENERATION_MASK)
    }

    /// The next socket's generation, wrapping within what a token carries.
    pub(super) fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1) & GENERATION_MASK;
        self.0
    }
}

/// One socket's operations in flight and its send buffer.
pub(super) struct Io {
    pub(super) fd: OwnedFd,
    /// Its slot in the ring's registered files, if it has one.
    pub(super) slot: Option<u32>,
    pub(super) generation: u32,
    pub(super) recv_armed: bool,
    pub(super) cancel_sent: bool,
    /// Once a receive had to be stopped for backpressure, the socket receives one
    /// buffer at a time: a multishot receive can deliver a whole ring in one batch.
    pub(super) throttled: bool,
    pub(super) eof: bool,
    pub(super) failed: bool,
    /// What was handed to the kernel, or is waiting to be (kept alive until sent).
    pub(super) sending: Out,
    /// The vector and message header of a vectored send in flight: the kernel reads
    /// them when it processes the op, so they live here rather than on a stack.
    pub(super) iov: Box<[libc::iovec; IOV_MAX]>,
    pub(super) msg: Box<libc::msghdr>,
    pub(super) send_inflight: bool,
    pub(super) closing: bool,
    pub(super) ops: u32,
}

impl Io {
    pub(super) fn new(fd: OwnedFd, generation: u32) -> Io {
        Io {
            fd,
            slot: None,
            generation,
            recv_armed: false,
            cancel_sent: false,
            throttled: false,
            eof: false,
            failed: false,
            sending: Out::default(),
            iov: Box::new(
                [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; IOV_MAX],
            ),
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            msg: Box::new(unsafe { std::mem::zeroed() }),
            send_inflight: false,
            closing: false,
            ops: 0,
        }
    }

    pub(super) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Bytes handed to the kernel or waiting to be.
    pub(super) fn unsent(&self) -> usize {
        self.sending.len()
    }

    /// The send op for what is queued: a plain send for one run of bytes, a vectored
    /// one when a cached object's segments follow a head.
    pub(super) fn send_entry(&mut self) -> io_uring::squeue::Entry {
        use io_uring::opcode;
        let mut runs = [&b""[..]; IOV_MAX];
        let n = self.sending.slices(&mut runs);
        if n <= 1 {
            let p = self.sending.pending();
            let (ptr, len) = (p.as_ptr(), p.len() as u32);
            return on_socket!(self, |t| opcode::Send::new(t, ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build());
        }
        for (v, r) in self.iov.iter_mut().zip(&runs[..n]) {
            v.iov_base = r.as_ptr() as *mut libc::c_void;
            v.iov_len = r.len();
        }
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = n;
        let msg: *const libc::msghdr = &*self.msg;
        on_socket!(self, |t| opcode::SendMsg::new(t, msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build())
    }
}

/// Resolver threads wake a uring shard through an eventfd the ring is reading.
pub(super) struct EventFd(pub(super) OwnedFd);

impl Wake for EventFd {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

/// A multishot receive that ends (a completion without MORE) once `cap` bytes have
/// arrived, so a burst from the origin cannot outrun the client by more than that.
pub(super) fn with_total_cap(e: io_uring::squeue::Entry, cap: u32) -> io_uring::squeue::Entry {
    // SAFETY: `Entry` is repr(C) over the kernel's 64-byte SQE; bytes 44..48 are the
    // `optlen` member of a union a receive uses for nothing else.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(e) };
    raw[44..48].copy_from_slice(&cap.to_ne_bytes());
    // SAFETY: the same 64 bytes, back into the type they came from.
    unsafe { std::mem::transmute(raw) }
}
