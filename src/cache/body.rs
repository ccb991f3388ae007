//! Where stored bodies live.
//!
//! The process allocator (mimalloc) serves sizes up to 16 KiB from 64 KiB pages of one
//! size class, so a 10 KiB body leaves 4 KiB of every page unused (about 7% more memory
//! per cached byte, measured with `bench/run.sh cache-memory`). Stored bodies are few,
//! long-lived and of arbitrary size, so they are allocated with the C library's malloc,
//! which fits each request to within a 16-byte header.

use std::ptr::NonNull;

use bytes::Bytes;

/// A body copied into its own C-heap allocation, exactly its size.
struct CBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: CBuf owns its allocation exclusively and never mutates it after creation.
unsafe impl Send for CBuf {}
// SAFETY: shared access is read-only.
unsafe impl Sync for CBuf {}

impl AsRef<[u8]> for CBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: ptr points to len initialised bytes owned by self (see `stored`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for CBuf {
    fn drop(&mut self) {
        // SAFETY: ptr came from libc::malloc and is freed once, here.
        unsafe { libc::free(self.ptr.as_ptr().cast()) }
    }
}

/// The bytes of `body` in an allocation of their own (refcounted, shared by hits).
pub fn stored(body: &[u8]) -> Bytes {
    if body.is_empty() {
        return Bytes::new();
    }
    // SAFETY: malloc with a non-zero size; the result is checked for null below.
    let raw = unsafe { libc::malloc(body.len()) }.cast::<u8>();
    let Some(ptr) = NonNull::new(raw) else {
        // Out of C heap: fall back to the process allocator rather than fail the store.
        return Bytes::copy_from_slice(body);
    };
    // SAFETY: ptr is a fresh allocation of body.len() bytes that cannot overlap body.
    unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), ptr.as_ptr(), body.len()) };
    Bytes::from_owner(CBuf {
        ptr,
        len: body.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_bytes_and_survives_its_clones() {
        let b = stored(b"some body");
        let c = b.clone();
        drop(b);
        assert_eq!(&c[..], b"some body");
        assert_eq!(&c.slice(5..)[..], b"body");
        assert!(stored(b"").is_empty());
    }
}
