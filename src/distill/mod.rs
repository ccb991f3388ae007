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
        output: image::Output,
    },
    /// Compress with this coding ("zstd", "br", "gzip").
    Text { coding: &'static str },
}

/// A job's product.
#[derive(Debug)]
pub enum JobOutput {
    Image(Distilled),
    Text {
        coding: &'static str,
        bytes: Vec<u8>,
    },
}

impl JobOutput {
    pub fn bytes(&self) -> &[u8] {
        match self {
            JobOutput::Image(d) => &d.bytes,
            JobOutput::Text { bytes, .. } => bytes,
        }
    }
}

/// Why a body is sent as it came.
#[derive(Debug, thiserror::Error)]
pub enum Declined {
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Text(#[from] CompressError),
    #[error("result not 10% smaller ({made} of {original} bytes)")]
    NotSmaller { original: usize, made: usize },
    #[error("the job pool is full")]
    PoolFull,
    #[error("the job waited too long")]
    Overdue,
    #[error("the job failed: {0}")]
    Crashed(String),
}

/// Where a job runs: inline on the shard only when both its input and the pixels it
/// will decode are small (a 40-byte GIF can declare a 7000x7000 screen: bytes alone
/// do not say how long the job takes).
pub fn is_small(work: &Work, body: &[u8], bytes_max: u64, pixels_max: u64) -> bool {
    if body.len() as u64 > bytes_max {
        return false;
    }
    match work {
        Work::Text { .. } => true,
        // libwebp costs several times what the JPEG path does per pixel, and an animated
        // GIF's frames are not in `work_pixels`: WebP is always made off the shard.
        Work::Image {
            output: image::Output::Webp,
            ..
        } => false,
        Work::Image { .. } => image::decode::work_pixels(body).is_some_and(|p| p <= pixels_max),
    }
}

/// Runs `work` on `body`; the result is kept only when at least 10% smaller. A panic in
/// a codec (hostile input finding a bug) is caught here and ends as the original, so it
/// can take down neither a shard nor a pool thread.
pub fn run(work: &Work, body: &[u8]) -> Result<JobOutput, Declined> {
    let started = std::time::Instant::now();
    let result = guarded(|| run_unguarded(work, body));
    JOB_SECONDS.observe(started.elapsed());
    result
}

/// How long jobs take (inline and on the pool), for the metrics.
pub static JOB_SECONDS: crate::histogram::Histogram<9> =
    crate::histogram::Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0]);

fn guarded(f: impl FnOnce() -> Result<JobOutput, Declined>) -> Result<JobOutput, Declined> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tracing::error!("distillation job panicked: {what}");
            Err(Declined::Crashed(what))
        }
    }
}

fn run_unguarded(work: &Work, body: &[u8]) -> Result<JobOutput, Declined> {
    let made = match work {
        Work::Image {
            profile,
            limits,
            output,
        } => JobOutput::Image(image::transcode_to(body, profile, limits, *output)?),
        Work::Text { coding } => JobOutput::Text {
            coding,
            bytes: text::compress(body, coding)?,
        },
    };
    let n = made.bytes().len();
    if n * 10 > body.len() * 9 {
        return Err(Declined::NotSmaller {
            original: body.len(),
            made: n,
        });
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_ends_as_the_original() {
        let r = guarded(|| panic!("codec bug"));
        assert!(
            matches!(&r, Err(Declined::Crashed(w)) if w == "codec bug"),
            "{r:?}"
        );
    }

    #[test]
    fn results_not_ten_percent_smaller_are_declined() {
        let text = b"no repetition here: abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
        let r = run(&Work::Text { coding: "gzip" }, &text);
        assert!(matches!(r, Err(Declined::NotSmaller { .. })), "{r:?}");
    }
}
