//! A provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a free buffer
//! for each multishot receive, so idle connections hold no receive memory.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

pub struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    count: u16,
    tail: u16,
    buf_bytes: usize,
    storage: Box<[u8]>,
}

impl BufRing {
    /// Allocates `count` buffers of `buf_bytes` and registers them as group `bgid`.
    pub fn new(
        ring: &IoUring,
        count: u16,
        buf_bytes: usize,
        bgid: u16,
    ) -> std::io::Result<BufRing> {
        let layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size (count >= 16 is validated by config).
        let entries = unsafe { alloc_zeroed(layout) } as *mut BufRingEntry;
        if entries.is_null() {
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        let mut br = BufRing {
            entries,
            layout,
            count,
            tail: 0,
            buf_bytes,
            storage: vec![0u8; usize::from(count) * buf_bytes].into_boxed_slice(),
        };
        // SAFETY: `entries` stays allocated (and unmoved) until Drop, which runs after
        // the ring that uses it is gone (the shard declares the ring first).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, 0)?;
        }
        for bid in 0..count {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    pub fn buf_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// The bytes the kernel put in buffer `bid`.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.buf_bytes;
        &self.storage[start..start + len.min(self.buf_bytes)]
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        let addr = self.storage.as_ptr() as u64 + (usize::from(bid) * self.buf_bytes) as u64;
        // SAFETY: slot < count, inside the allocation.
        let entry = unsafe { &mut *self.entries.add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.buf_bytes as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of the ring, which is 2-aligned;
        // the kernel reads it with acquire semantics.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.entries as *mut u8, self.layout) }
    }
}
