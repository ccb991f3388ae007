//! Text compression for clients by their Accept-Encoding: zstd, then br, then gzip.
//! Levels are the ones measured best for speed against size on the corpus's text
//! (bench/run.sh text-compression): past them each step costs far more time than it
//! saves bytes.

use std::io::Write;

use thiserror::Error;

pub const ZSTD_LEVEL: i32 = 6;
pub const BROTLI_QUALITY: u32 = 5;
pub const GZIP_LEVEL: u32 = 6;
/// Brotli's window, log2 bytes (the format's default).
const BROTLI_WINDOW: u32 = 22;

#[derive(Debug, Error)]
#[error("cannot compress with {coding}: {source}")]
pub struct CompressError {
    coding: &'static str,
    source: std::io::Error,
}

/// Media types worth compressing when the origin sent them uncompressed.
const COMPRESSIBLE: [&[u8]; 11] = [
    b"application/javascript",
    b"application/x-javascript",
    b"application/ecmascript",
    b"application/json",
    b"application/manifest+json",
    b"application/ld+json",
    b"application/xml",
    b"application/xhtml+xml",
    b"application/rss+xml",
    b"application/atom+xml",
    b"image/svg+xml",
];

/// Whether a response of this Content-Type is worth compressing: text, and the types
/// above or ending in `+json` or `+xml`, in any case. Compared in place: a browser's
/// every hit asks (it accepts some coding), so it must not allocate.
pub fn is_compressible(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    if std::str::from_utf8(essence).is_err() {
        return false;
    }
    let starts = |p: &[u8]| {
        essence
            .get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    let ends = |p: &[u8]| {
        essence
            .len()
            .checked_sub(p.len())
            .is_some_and(|at| essence[at..].eq_ignore_ascii_case(p))
    };
    starts(b"text/")
        || COMPRESSIBLE.iter().any(|t| essence.eq_ignore_ascii_case(t))
        || ends(b"+json")
        || ends(b"+xml")
}

/// `data` compressed with `coding` ("zstd", "br" or "gzip") at the chosen level.
pub fn compress(data: &[u8], coding: &'static str) -> Result<Vec<u8>, CompressError> {
    let level = match coding {
        "zstd" => ZSTD_LEVEL,
        "br" => BROTLI_QUALITY as i32,
        _ => GZIP_LEVEL as i32,
    };
    compress_at(data, coding, level)
}

/// `data` compressed with `coding` at `level` (the benchmark tries several).
pub fn compress_at(
    data: &[u8],
    coding: &'static str,
    level: i32,
) -> Result<Vec<u8>, CompressError> {
    let err = |source| CompressError { coding, source };
    let mut out = Vec::with_capacity(data.len() / 3);
    match coding {
        "zstd" => {
            let mut enc = zstd::Encoder::new(&mut out, level).map_err(err)?;
            enc.include_contentsize(true).map_err(err)?;
            enc.set_pledged_src_size(Some(data.len() as u64))
                .map_err(err)?;
            enc.write_all(data).map_err(err)?;
            enc.finish().map_err(err)?;
        }
        "br" => {
            let quality = level.clamp(0, 11) as u32;
            let mut enc =
                brotli::CompressorWriter::new(&mut out, 64 * 1024, quality, BROTLI_WINDOW);
            enc.write_all(data).map_err(err)?;
            enc.flush().map_err(err)?;
            drop(enc);
        }
        _ => {
            let gz = flate2::Compression::new(level.clamp(0, 9) as u32);
            let mut enc = flate2::write::GzEncoder::new(&mut out, gz);
            enc.write_all(data).map_err(err)?;
            enc.finish().map_err(err)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn round_trips_in_each_coding() {
        let text = "distilld compresses text. ".repeat(400);
        for coding in ["zstd", "br", "gzip"] {
            let packed = compress(text.as_bytes(), coding).unwrap_or_default();
            assert!(packed.len() < text.len() / 10, "{coding}: {}", packed.len());
            let mut back = Vec::new();
            match coding {
                "zstd" => back = zstd::decode_all(&packed[..]).unwrap_or_default(),
                "br" => {
                    brotli::Decompressor::new(&packed[..], 4096)
                        .read_to_end(&mut back)
                        .ok();
                }
                _ => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut back)
                        .ok();
                }
            }
            assert_eq!(back, text.as_bytes(), "{coding}");
        }
    }

    #[test]
    fn types() {
        assert!(is_compressible(b"text/html; charset=utf-8"));
        assert!(is_compressible(b"application/javascript"));
        assert!(is_compressible(b"image/svg+xml"));
        assert!(is_compressible(b"application/vnd.api+json"));
        assert!(!is_compressible(b"image/png"));
        assert!(!is_compressible(b"application/octet-stream"));
        assert!(is_compressible(b" Text/Plain ;charset=utf-8"));
        assert!(is_compressible(b"APPLICATION/JSON"));
        assert!(is_compressible(b"application/Problem+JSON"));
        assert!(!is_compressible(b"json"));
        assert!(!is_compressible(b"text"));
        assert!(!is_compressible(b"text/\xff"));
        assert!(!is_compressible(b""));
    }
}
