//! The bytes queued for a client: owned bytes the connection writes (heads, chunk
//! framing, relayed bodies) interleaved with shared segments (a cached object's head and
//! body), so a cache hit is sent from the stored memory itself, never copied.

use std::collections::VecDeque;

use bytes::{Buf as _, Bytes};

use super::buf::Buf;

/// At most this many segments go to one vectored send.
pub const IOV_MAX: usize = 8;

/// A queue of segments: `segs` (frozen, in order) then `open` (still being appended to).
#[derive(Debug, Default)]
pub struct Out {
    segs: VecDeque<Bytes>,
    open: Buf,
    len: usize,
}

impl Out {
    pub fn with_capacity(n: usize) -> Out {
        Out {
            segs: VecDeque::new(),
            open: Buf::with_capacity(n),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len + self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector owned bytes are appended to (compacted first, as `Buf`'s); they go
    /// after every shared segment.
    pub fn compacted_tail(&mut self) -> &mut Vec<u8> {
        self.open.compacted_tail()
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.open.extend(bytes);
    }

    /// Queues `bytes` without copying them.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.freeze_open();
        self.len += bytes.len();
        self.segs.push_back(bytes);
    }

    /// The first contiguous run of bytes to send.
    pub fn pending(&self) -> &[u8] {
        match self.segs.front() {
            Some(s) => s,
            None => self.open.pending(),
        }
    }

    /// The first runs of bytes to send, for a vectored write.
    pub fn slices<'a>(&'a self, dst: &mut [&'a [u8]; IOV_MAX]) -> usize {
        let mut n = 0;
        for s in self.segs.iter().take(IOV_MAX) {
            dst[n] = s;
            n += 1;
        }
        if n < IOV_MAX && !self.open.is_empty() {
            dst[n] = self.open.pending();
            n += 1;
        }
        n
    }

    /// `n` bytes were sent.
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segs.front_mut() else {
                self.open.consume(n);
                return;
            };
            let k = n.min(front.len());
            front.advance(k);
            self.len -= k;
            n -= k;
            if front.is_empty() {
                self.segs.pop_front();
            }
        }
    }

    /// Moves everything queued in `other` to the end of this queue, without copying.
    pub fn take_from(&mut self, other: &mut Out) {
        if other.segs.is_empty() && self.segs.is_empty() {
            other.open.take_into(self.open.compacted_tail());
            return;
        }
        self.freeze_open();
        self.len += other.len;
        other.len = 0;
        self.segs.append(&mut other.segs);
        let mut v = Vec::new();
        other.open.take_into(&mut v);
        self.push_shared(Bytes::from(v));
    }

    /// Moves the bytes of a plain buffer to the end of this queue.
    pub fn take_from_buf(&mut self, other: &mut Buf) {
        if self.segs.is_empty() {
            other.take_into(self.open.compacted_tail());
        } else {
            let mut v = Vec::new();
            other.take_into(&mut v);
            self.push_shared(Bytes::from(v));
        }
    }

    pub fn clear(&mut self) {
        self.segs.clear();
        self.len = 0;
        self.open.clear();
    }

    /// Turns the open bytes into a frozen segment so later bytes queue behind a
    /// shared one (a swap, not a copy, when nothing of them was consumed).
    fn freeze_open(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let mut v = Vec::new();
        self.open.take_into(&mut v);
        self.len += v.len();
        self.segs.push_back(Bytes::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &mut Out) -> Vec<u8> {
        let mut all = Vec::new();
        while !o.is_empty() {
            let p = o.pending().to_vec();
            // Consume in uneven steps to cross segment boundaries.
            let k = p.len().min(3);
            all.extend_from_slice(&p[..k]);
            o.consume(k);
        }
        all
    }

    #[test]
    fn order_is_kept_across_owned_and_shared_segments() {
        let mut o = Out::default();
        o.extend(b"head;");
        o.push_shared(Bytes::from_static(b"shared-body;"));
        o.extend(b"next;");
        o.push_shared(Bytes::from_static(b"two;"));
        assert_eq!(o.len(), 26);
        let mut iov = [&b""[..]; IOV_MAX];
        let n = o.slices(&mut iov);
        assert_eq!(iov[..n].concat(), b"head;shared-body;next;two;");
        let mut moved = Out::default();
        moved.extend(b">");
        moved.take_from(&mut o);
        assert!(o.is_empty());
        assert_eq!(drain(&mut moved), b">head;shared-body;next;two;");
    }

    #[test]
    fn plain_bytes_stay_in_one_buffer() {
        let mut o = Out::default();
        o.extend(b"abc");
        let mut dst = Out::default();
        dst.take_from(&mut o);
        assert_eq!(dst.pending(), b"abc");
        let mut b = Buf::default();
        b.extend(b"def");
        dst.take_from_buf(&mut b);
        assert_eq!(dst.pending(), b"abcdef");
        dst.consume(6);
        assert!(dst.is_empty());
    }
}
