//! A byte queue with a read position: bytes are appended at the back and consumed from
//! the front without shifting on every consume.

#[derive(Debug, Default)]
pub struct Buf {
    data: Vec<u8>,
    pos: usize,
}

impl Buf {
    pub fn with_capacity(n: usize) -> Buf {
        Buf {
            data: Vec::with_capacity(n),
            pos: 0,
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.data.len());
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        }
    }

    /// The vector to append to; consumed bytes are dropped first when they are at least
    /// half of it, so the buffer does not creep.
    pub fn compacted_tail(&mut self) -> &mut Vec<u8> {
        if self.pos > 0 && self.pos >= self.data.len() / 2 {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        &mut self.data
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.compacted_tail().extend_from_slice(bytes);
    }

    /// Moves the pending bytes to the end of `dst`: a swap, not a copy, when `dst` is
    /// empty and nothing was consumed (a driver sending from stable memory uses this).
    pub fn take_into(&mut self, dst: &mut Vec<u8>) {
        if self.pos == 0 && dst.is_empty() {
            std::mem::swap(&mut self.data, dst);
        } else {
            dst.extend_from_slice(self.pending());
            self.clear();
        }
    }

    /// Moves the first `n` pending bytes into `dst` (emptied first): the buffers are
    /// swapped, not copied, when those bytes are all there is, and this buffer goes on
    /// with `dst`'s memory.
    pub fn take_front(&mut self, n: usize, dst: &mut Vec<u8>) {
        dst.clear();
        let n = n.min(self.len());
        if self.pos == 0 && n == self.data.len() {
            std::mem::swap(&mut self.data, dst);
        } else {
            dst.extend_from_slice(&self.pending()[..n]);
            self.consume(n);
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_semantics() {
        let mut b = Buf::default();
        b.extend(b"hello");
        b.consume(2);
        assert_eq!(b.pending(), b"llo");
        b.extend(b" world");
        assert_eq!(b.pending(), b"llo world");
        b.consume(100);
        assert!(b.is_empty());
        b.extend(b"abc");
        let mut dst = Vec::new();
        b.take_into(&mut dst);
        assert_eq!((dst.as_slice(), b.len()), (&b"abc"[..], 0));
        b.extend(b"xyz");
        b.consume(1);
        b.take_into(&mut dst);
        assert_eq!(dst, b"abcyz");
    }
}
