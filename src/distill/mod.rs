//! Distillation: lossy, per-client transcoding on the request path. Images are decoded,
//! downscaled and re-encoded (`image`), text is compressed (`text`), and `profile` says
//! how hard for which client. All of it is plain functions over bytes: the proxy decides
//! when to call them (`proxy::conn`), and where (inline, or on the job pool for large
//! inputs, `pool`).

pub mod image;
pub mod pool;
pub mod profile;
pub mod text;

pub use profile::Profile;

use image::{Distilled, ImageError, Limits};
use text::CompressError;

/// One distillation job: what to do with a body.
#[derive(Debug, Clone)]
pub enum Work {
    Image {
        profile: Profile,
        limits: Limits,
    },
    /// Compress with this coding ("zstd", "br", "gzip").
    Text {
        coding: &'static str,
    },
}

/// A job's product.
#[derive(Debug)]
pub enum Made {
    Image(Distilled),
    Text {
        coding: &'static str,
        bytes: Vec<u8>,
    },
}

impl Made {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Made::Image(d) => &d.bytes,
            Made::Text { bytes, .. } => bytes,
        }
    }
}

/// Why a body is sent as it came.
#[derive(Debug, thiserror::Error)]
pub enum Passed {
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Text(#[from] CompressError),
    #[error("result not 10% smaller ({made} of {original} bytes)")]
    NotSmaller { original: usize, made: usize },
    #[error("the job pool is full")]
    PoolFull,
}

/// Runs `work` on `body`; the result is kept only when at least 10% smaller.
pub fn run(work: &Work, body: &[u8]) -> Result<Made, Passed> {
    let made = match work {
        Work::Image { profile, limits } => Made::Image(image::transcode(body, profile, limits)?),
        Work::Text { coding } => Made::Text {
            coding,
            bytes: text::compress(body, coding)?,
        },
    };
    let n = made.bytes().len();
    if n * 10 > body.len() * 9 {
        return Err(Passed::NotSmaller {
            original: body.len(),
            made: n,
        });
    }
    Ok(made)
}
