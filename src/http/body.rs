//! Body framing, streamed: a decoder that turns framed bytes into payload pieces as they
//! arrive (never buffering a whole body), and an encoder for the other side.

use super::HttpError;
use super::headers::write_decimal;

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Runs until the sender closes the connection (responses only).
    Close,
}

/// Longest chunk-size line (digits plus extensions) accepted.
const CHUNK_LINE_BYTES_MAX: usize = 4096;
/// Longest trailer section accepted; trailers are read and dropped.
const TRAILER_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Size {
        size: u64,
        digits: u8,
        in_ext: bool,
        line: usize,
    },
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    TrailerLine {
        len: usize,
    },
    TrailerLf {
        len: usize,
    },
    Close,
    Done,
}

/// Streaming decoder of one body.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    trailer_bytes: usize,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> BodyDecoder {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size {
                size: 0,
                digits: 0,
                in_ext: false,
                line: 0,
            },
            Framing::Close => State::Close,
        };
        BodyDecoder {
            state,
            trailer_bytes: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The peer closed: complete for a close-delimited body, truncated otherwise.
    pub fn on_eof(&mut self) -> bool {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                true
            }
            _ => false,
        }
    }

    /// Consumes framing bytes from `input` until it finds payload, runs out, or the body
    /// ends. Returns how many bytes were consumed and the payload found (possibly empty).
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, &'a [u8]), HttpError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Length(rem) | State::Data(rem) => {
                    let n = (input.len() - i).min(usize::try_from(rem).unwrap_or(usize::MAX));
                    let left = rem - n as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), l) => State::Length(l),
                        (_, 0) => State::DataCr,
                        (_, l) => State::Data(l),
                    };
                    return Ok((i + n, &input[i..i + n]));
                }
                State::Close => return Ok((input.len(), &input[i..])),
                _ => {
                    self.step(input[i])?;
                    i += 1;
                }
            }
        }
        Ok((i, &[]))
    }

    /// One byte of chunk framing.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            State::Size {
                size,
                digits,
                in_ext,
                line,
            } => {
                if line >= CHUNK_LINE_BYTES_MAX {
                    return Err(HttpError::BadChunk("chunk-size line too long"));
                }
                let line = line + 1;
                match (b, in_ext) {
                    (b'\r', _) if digits > 0 => State::SizeLf(size),
                    (_, true) if b != b'\n' && b != b'\r' => State::Size {
                        size,
                        digits,
                        in_ext,
                        line,
                    },
                    (b';' | b' ' | b'\t', false) if digits > 0 => State::Size {
                        size,
                        digits,
                        in_ext: true,
                        line,
                    },
                    (_, false) => {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or(HttpError::BadChunk("invalid chunk size"))?;
                        if digits >= 16 {
                            return Err(HttpError::BadChunk("chunk size overflows"));
                        }
                        State::Size {
                            size: (size << 4) | u64::from(d),
                            digits: digits + 1,
                            in_ext,
                            line,
                        }
                    }
                    _ => return Err(HttpError::BadChunk("invalid chunk-size line")),
                }
            }
            State::SizeLf(size) => match (b, size) {
                (b'\n', 0) => State::TrailerLine { len: 0 },
                (b'\n', n) => State::Data(n),
                _ => return Err(HttpError::BadChunk("expected CRLF after chunk size")),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size {
                size: 0,
                digits: 0,
                in_ext: false,
                line: 0,
            },
            State::DataCr | State::DataLf => {
                return Err(HttpError::BadChunk("expected CRLF after chunk data"));
            }
            State::TrailerLine { len } => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > TRAILER_BYTES_MAX {
                    return Err(HttpError::BadChunk("trailer section too large"));
                }
                if b == b'\r' {
                    State::TrailerLf { len }
                } else if b == b'\n' {
                    return Err(HttpError::BadChunk("bare LF in trailer"));
                } else {
                    State::TrailerLine { len: len + 1 }
                }
            }
            State::TrailerLf { len } if b == b'\n' => {
                if len == 0 {
                    State::Done
                } else {
                    State::TrailerLine { len: 0 }
                }
            }
            State::TrailerLf { .. } => return Err(HttpError::BadChunk("bare CR in trailer")),
            s @ (State::Length(_) | State::Data(_) | State::Close | State::Done) => s,
        };
        Ok(())
    }
}

/// Writes payload in the framing chosen for the receiving side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoder {
    /// Bytes as they are (Content-Length known, or close-delimited).
    Raw,
    Chunked,
}

impl BodyEncoder {
    pub fn encode(self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if self == BodyEncoder::Chunked {
            write_hex(out, data.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
    }

    /// What goes before `len` payload bytes that are queued separately (not copied).
    pub fn frame_start(self, len: usize, out: &mut Vec<u8>) {
        if self == BodyEncoder::Chunked && len > 0 {
            write_hex(out, len as u64);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// What goes after payload queued separately.
    pub fn frame_end(self, len: usize, out: &mut Vec<u8>) {
        if self == BodyEncoder::Chunked && len > 0 {
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn finish(self, out: &mut Vec<u8>) {
        if self == BodyEncoder::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
}

fn write_hex(out: &mut Vec<u8>, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((n >> (i * 4)) & 0xf) as usize]);
    }
}

/// Length as decimal, for Content-Length.
pub fn write_length(out: &mut Vec<u8>, n: u64) {
    write_decimal(out, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns payload and whether done.
    fn decode_all(
        framing: Framing,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, bool), HttpError> {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            let mut at = 0;
            while at < piece.len() && !d.is_done() {
                let (n, data) = d.decode(&piece[at..])?;
                out.extend_from_slice(data);
                at += n;
            }
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let body = b"5;name=val\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 7, 100] {
            assert_eq!(
                decode_all(Framing::Chunked, body, step).unwrap(),
                (b"hello world".to_vec(), true)
            );
        }
    }

    #[test]
    fn bad_chunks() {
        for bad in [
            &b"z\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
            b"0\r\nX\nY",
        ] {
            assert!(
                decode_all(Framing::Chunked, bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn length_stops_at_end() {
        let mut d = BodyDecoder::new(Framing::Length(3));
        let (n, data) = d.decode(b"abcdef").unwrap();
        assert_eq!((n, data), (3, &b"abc"[..]));
        assert!(d.is_done());
        assert!(!BodyDecoder::new(Framing::Length(3)).on_eof());
        assert!(BodyDecoder::new(Framing::Close).on_eof());
    }

    #[test]
    fn hex_writer() {
        let mut v = Vec::new();
        for n in [0u64, 1, 15, 16, 255, 0x1234abcd] {
            write_hex(&mut v, n);
            v.push(b' ');
        }
        assert_eq!(v, b"0 1 f 10 ff 1234abcd ");
    }

    proptest! {
        #[test]
        fn chunked_round_trip(pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10), step in 1usize..64) {
            let mut wire = Vec::new();
            let mut expect = Vec::new();
            for p in &pieces {
                BodyEncoder::Chunked.encode(p, &mut wire);
                expect.extend_from_slice(p);
            }
            BodyEncoder::Chunked.finish(&mut wire);
            let (got, done) = decode_all(Framing::Chunked, &wire, step).unwrap();
            prop_assert!(done);
            prop_assert_eq!(got, expect);
        }

        #[test]
        fn decoder_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(Framing::Chunked, &input, 3);
        }
    }
}
