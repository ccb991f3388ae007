//! Registered (fixed) files: a client or origin socket entered in the ring's file table
//! is named by its slot, so each operation on it skips the kernel's descriptor lookup
//! and reference count (`fget`/`fput`), which showed up at ~1% of a proxied request.
//! Registering and unregistering cost a system call each, once per connection.

use std::os::fd::RawFd;

use io_uring::IoUring;

pub(super) struct FixedFiles {
    free: Vec<u32>,
}

impl FixedFiles {
    /// A sparse table of `slots` entries; none when the kernel refuses it (the driver
    /// then names sockets by descriptor).
    pub(super) fn new(ring: &IoUring, slots: u32) -> FixedFiles {
        if slots == 0 {
            return FixedFiles { free: Vec::new() };
        }
        if let Err(e) = ring.submitter().register_files_sparse(slots) {
            tracing::info!("io_uring registered files unavailable ({e}); using descriptors");
            return FixedFiles { free: Vec::new() };
        }
        FixedFiles {
            free: (0..slots).rev().collect(),
        }
    }

    /// Enters `fd` in a free slot; None when the table is full (or off).
    pub(super) fn register(&mut self, ring: &IoUring, fd: RawFd) -> Option<u32> {
        let slot = self.free.pop()?;
        match ring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => Some(slot),
            Err(e) => {
                tracing::debug!("io_uring file registration failed: {e}");
                self.free.push(slot);
                None
            }
        }
    }

    /// Empties `slot` once no operation uses it any more: the table holds a reference
    /// to the socket, which would otherwise stay open after its descriptor is closed.
    pub(super) fn release(&mut self, ring: &IoUring, slot: u32) {
        match ring.submitter().register_files_update(slot, &[-1]) {
            Ok(_) => self.free.push(slot),
            // The slot stays taken (and the socket open) rather than being reused while
            // it may still name the old socket.
            Err(e) => tracing::warn!("io_uring file unregistration failed: {e}"),
        }
    }
}

/// Builds an operation on `io`'s socket, by slot when it has one, else by descriptor.
macro_rules! on_socket {
    ($io:expr, |$t:ident| $body:expr) => {
        match $io.slot {
            Some(s) => {
                let $t = io_uring::types::Fixed(s);
                $body
            }
            None => {
                let $t = io_uring::types::Fd($io.raw());
                $body
            }
        }
    };
}
pub(super) use on_socket;
