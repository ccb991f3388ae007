//! The bytes queued for a client: owned bytes the connection writes (heads, chunk
//! framing, relayed bodies) interleaved with shared segments (a cached object's head and
//! body), so a cache hit is sent from the stored memory itself, never copied.
//!
//! Owned bytes all live in one buffer, in order; a segment list says where shared
//! segments fall between runs of them. Nothing is frozen into a new allocation, and a
//! driver takes the whole queue by swapping it with its own empty one, so a keep-alive
//! connection's responses reuse the same memory.

use std::collections::VecDeque;

use bytes::{Buf as _, Bytes};

use std::rc::Rc;

use super::buf::Buf;
use crate::cache::shard_refs::Held;

/// At most this many segments go to one vectored send.
pub const IOV_MAX: usize = 8;

#[derive(Debug)]
enum Seg {
    /// The next `n` bytes of the owned buffer.
    Owned(usize),
    Shared(Bytes),
    /// Bytes `at..end` of a stored object's head or body, through the shard's
    /// reference (no reference count another core writes).
    Stored {
        held: Rc<Held>,
        part: Part,
        at: usize,
        end: usize,
    },
}

/// Which bytes of a stored object a segment sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Head,
    Body,
}

impl Seg {
    fn bytes(&self) -> &[u8] {
        match self {
            Seg::Shared(b) => b,
            Seg::Stored {
                held,
                part,
                at,
                end,
            } => match part {
                Part::Head => &held.head()[*at..*end],
                Part::Body => &held.body[*at..*end],
            },
            Seg::Owned(_) => &[],
        }
    }
}

/// A queue of segments: `segs` in order, then the owned bytes not yet in a segment.
#[derive(Debug, Default)]
pub struct Out {
    segs: VecDeque<Seg>,
    owned: Buf,
    /// Owned bytes counted in `segs` (the rest of `owned` follows every segment).
    owned_in_segs: usize,
    shared_len: usize,
}

impl Out {
    pub fn with_capacity(n: usize) -> Out {
        Out {
            owned: Buf::with_capacity(n),
            ..Out::default()
        }
    }

    pub fn len(&self) -> usize {
        self.shared_len + self.owned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector owned bytes are appended to (compacted first, as `Buf`'s); they go
    /// after every shared segment.
    pub fn compacted_tail(&mut self) -> &mut Vec<u8> {
        self.owned.compacted_tail()
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.owned.extend(bytes);
    }

    /// Queues `bytes` without copying them.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.seal_owned();
        self.shared_len += bytes.len();
        self.segs.push_back(Seg::Shared(bytes));
    }

    /// Queues a stored object's head or body without copying it.
    pub fn push_stored(&mut self, held: &Rc<Held>, part: Part) {
        let end = match part {
            Part::Head => held.head().len(),
            Part::Body => held.body.len(),
        };
        self.push_stored_range(held, part, 0, end);
    }

    /// Queues bytes `start..end` of a stored object's head or body without copying
    /// them (a range request's part); `end` is clamped to the part's length.
    pub fn push_stored_range(&mut self, held: &Rc<Held>, part: Part, start: usize, end: usize) {
        let len = match part {
            Part::Head => held.head().len(),
            Part::Body => held.body.len(),
        };
        debug_assert!(start <= end && end <= len, "a range within the stored part");
        let end = end.min(len);
        let seg = Seg::Stored {
            held: held.clone(),
            part,
            at: start.min(end),
            end,
        };
        let n = seg.bytes().len();
        if n == 0 {
            return;
        }
        self.seal_owned();
        self.shared_len += n;
        self.segs.push_back(seg);
    }

    /// The first contiguous run of bytes to send.
    pub fn pending(&self) -> &[u8] {
        match self.segs.front() {
            Some(Seg::Owned(n)) => &self.owned.pending()[..*n],
            Some(s) => s.bytes(),
            None => self.owned.pending(),
        }
    }

    /// The first runs of bytes to send, for a vectored write.
    pub fn slices<'a>(&'a self, dst: &mut [&'a [u8]; IOV_MAX]) -> usize {
        let owned = self.owned.pending();
        let mut at = 0;
        let mut n = 0;
        for s in self.segs.iter().take(IOV_MAX) {
            dst[n] = match s {
                Seg::Owned(k) => {
                    at += k;
                    &owned[at - k..at]
                }
                s => s.bytes(),
            };
            n += 1;
        }
        if n < IOV_MAX && at < owned.len() && n == self.segs.len() {
            dst[n] = &owned[at..];
            n += 1;
        }
        n
    }

    /// `n` bytes were sent.
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segs.front_mut() else {
                self.owned.consume(n);
                return;
            };
            let (k, done) = match front {
                Seg::Shared(b) => {
                    let k = n.min(b.len());
                    b.advance(k);
                    self.shared_len -= k;
                    (k, b.is_empty())
                }
                Seg::Stored { at, end, .. } => {
                    let k = n.min(*end - *at);
                    *at += k;
                    self.shared_len -= k;
                    (k, *at == *end)
                }
                Seg::Owned(left) => {
                    let k = n.min(*left);
                    *left -= k;
                    self.owned.consume(k);
                    self.owned_in_segs -= k;
                    (k, *left == 0)
                }
            };
            n -= k;
            if done {
                self.segs.pop_front();
            }
        }
    }

    /// Moves everything queued in `other` to the end of this queue: by swapping the
    /// two queues when this one is empty (no copy, and `other` goes on with this one's
    /// memory), else shared segments moved and owned bytes copied.
    pub fn take_from(&mut self, other: &mut Out) {
        if self.is_empty() {
            self.clear();
            std::mem::swap(self, other);
            return;
        }
        while let Some(seg) = other.segs.pop_front() {
            match seg {
                Seg::Shared(b) => self.push_shared(b),
                s @ Seg::Stored { .. } => {
                    self.seal_owned();
                    self.shared_len += s.bytes().len();
                    self.segs.push_back(s);
                }
                Seg::Owned(k) => {
                    self.owned.extend(&other.owned.pending()[..k]);
                    other.owned.consume(k);
                }
            }
        }
        self.owned.extend(other.owned.pending());
        other.clear();
    }

    /// Moves the bytes of a plain buffer to the end of this queue.
    pub fn take_from_buf(&mut self, other: &mut Buf) {
        other.take_into(self.owned.compacted_tail());
    }

    pub fn clear(&mut self) {
        self.segs.clear();
        self.owned.clear();
        self.owned_in_segs = 0;
        self.shared_len = 0;
    }

    /// Closes the run of owned bytes not yet in a segment, so later bytes queue behind
    /// a shared one.
    fn seal_owned(&mut self) {
        let loose = self.owned.len() - self.owned_in_segs;
        if loose > 0 {
            self.segs.push_back(Seg::Owned(loose));
            self.owned_in_segs += loose;
        }
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

    fn held(body: &'static [u8]) -> Rc<Held> {
        use crate::cache::freshness::Heuristic;
        use crate::cache::object::{Build, Fields, read_times};
        let f = Fields::from_response(200, b"OK", std::iter::empty(), |_| false);
        let t = read_times(&f, 0, 0);
        let b = Build {
            via_name: "t",
            heuristic: Heuristic::default(),
            targeted: &[],
        };
        let o = crate::cache::Object::new(f, Bytes::from_static(body), t, b);
        Held::new(std::sync::Arc::new(o))
    }

    #[test]
    fn stored_segments_keep_their_place_and_survive_a_move_into_a_busy_queue() {
        let h = held(b"BODY");
        let head = h.head().clone();
        let mut o = Out::default();
        o.extend(b"<");
        o.push_stored(&h, Part::Head);
        o.extend(b"fresh;");
        o.push_stored(&h, Part::Body);
        o.extend(b">");
        let mut want = b"<".to_vec();
        want.extend_from_slice(&head);
        want.extend_from_slice(b"fresh;BODY>");
        assert_eq!(o.len(), want.len());
        let mut busy = Out::default();
        busy.extend(b"[");
        busy.push_stored(&h, Part::Body);
        busy.consume(2); // part of what was queued before is sent
        busy.extend(b"~"); // and owned bytes not yet in a segment follow it
        busy.take_from(&mut o);
        assert!(o.is_empty());
        let mut all = b"ODY~".to_vec();
        all.extend_from_slice(&want);
        assert_eq!(drain(&mut busy), all);
        let mut empty = Out::default();
        let mut again = Out::default();
        again.push_stored(&h, Part::Body);
        again.extend(b"!");
        empty.take_from(&mut again);
        let mut iov = [&b""[..]; IOV_MAX];
        let n = empty.slices(&mut iov);
        assert_eq!(iov[..n].concat(), b"BODY!");
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
