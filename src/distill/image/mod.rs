//! Image distillation: decode (JPEG, PNG, GIF), turn upright, convert to sRGB, drop an
//! alpha channel that is opaque in fact, downscale to the profile's long edge (SIMD,
//! `fast_image_resize`), and re-encode: JPEG for opaque images, PNG when transparency
//! must survive, or WebP for a client that accepts it (`webp`). Every limit is checked
//! before the work it bounds starts.

mod animation;
mod colour;
pub mod decode;
pub use decode::Format;
pub mod encode;
mod orient;
pub mod webp;

use std::time::{Duration, Instant};

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use thiserror::Error;

use super::profile::Profile;

/// 8-bit pixels, `channels` per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
#[derive(Debug, Clone)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

/// What a job may use (config `[distill]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub input_bytes_max: u64,
    pub pixels_max: u64,
    pub memory_bytes_max: u64,
    pub jpeg_scans_max: usize,
    /// An animation's frames times its screen's pixels: past it, animated WebP is not
    /// made and the original is sent.
    pub animation_pixels_max: u64,
    pub time_max: Duration,
}

/// Why an image is sent as it came. None of these is an error for the client.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ImageError {
    #[error("not a JPEG, PNG or GIF")]
    Unsupported,
    #[error("corrupt image: {0}")]
    Corrupt(String),
    #[error("{width}x{height} is more than {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("would need {needed} bytes of memory, limit {max}")]
    TooMuchMemory { needed: u64, max: u64 },
    #[error("input of {bytes} bytes is over the limit of {max}")]
    TooLarge { bytes: u64, max: u64 },
    #[error("a {screen}-pixel GIF screen of which the first frame draws {drawn}")]
    MostlyEmpty { screen: u64, drawn: u64 },
    #[error("animated, and the profile keeps animations")]
    Animated,
    #[error("took longer than {0:?}")]
    TooSlow(Duration),
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("cannot resize: {0}")]
    Resize(String),
}

/// A distilled image.
#[derive(Debug)]
pub struct Distilled {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// What a distilled image is encoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// JPEG for opaque images, PNG where transparency must survive (every client).
    #[default]
    Classic,
    /// WebP: for clients whose Accept lists `image/webp`.
    Webp,
}

pub fn transcode(
    input: &[u8],
    profile: &Profile,
    limits: &Limits,
) -> Result<Distilled, ImageError> {
    transcode_to(input, profile, limits, Output::Classic)
}

/// `transcode`, encoded as `output` says.
pub fn transcode_to(
    input: &[u8],
    profile: &Profile,
    limits: &Limits,
    output: Output,
) -> Result<Distilled, ImageError> {
    let started = Instant::now();
    if input.len() as u64 > limits.input_bytes_max {
        return Err(ImageError::TooLarge {
            bytes: input.len() as u64,
            max: limits.input_bytes_max,
        });
    }
    let decoded = decode::decode_for(input, limits, Some(profile.max_edge))?;
    if decoded.animated && !profile.flatten_animation {
        return match output {
            Output::Webp => animation::gif_to_webp(input, profile, limits, started),
            Output::Classic => Err(ImageError::Animated),
        };
    }
    in_time(started, limits)?;
    let format = decoded.format;
    let (pixels, transparent) = prepared(decoded, profile)?;
    in_time(started, limits)?;
    let (bytes, content_type) = match output {
        Output::Classic => smallest(&pixels, transparent, format, profile.quality)?,
        Output::Webp => {
            check_webp_memory(&pixels, format, profile, limits)?;
            smallest_webp(&pixels, format, profile)?
        }
    };
    in_time(started, limits)?;
    Ok(Distilled {
        bytes,
        content_type,
        width: pixels.width,
        height: pixels.height,
    })
}

/// Upright, without an alpha channel that is opaque in fact, gray if the profile says
/// so, fitted to its long edge, in sRGB: what is encoded. Also true when transparent.
fn prepared(decoded: decode::Decoded, profile: &Profile) -> Result<(Pixels, bool), ImageError> {
    let mut pixels = orient::upright(decoded.pixels, decoded.orientation);
    let transparent = has_transparency(&pixels);
    if !transparent {
        pixels = drop_alpha(pixels);
    }
    if profile.grayscale {
        pixels = to_gray(pixels);
    }
    let mut pixels = fit(pixels, profile.max_edge)?;
    if let Some(icc) = &decoded.icc {
        // After the downscale, as libvips's thumbnail does: the colour transform is the
        // costliest step per pixel, so it runs on the fewest pixels.
        colour::rgb_to_srgb(&mut pixels.data, pixels.channels, icc);
    }
    Ok((pixels, transparent))
}

/// The pixels a still image's distilled versions are made from (decoded, upright,
/// fitted, sRGB), unencoded: the reference a benchmark scores them against.
pub fn reference(input: &[u8], profile: &Profile, limits: &Limits) -> Result<Pixels, ImageError> {
    let decoded = decode::decode_for(input, limits, Some(profile.max_edge))?;
    prepared(decoded, profile).map(|(p, _)| p)
}

/// The smallest encoding that keeps what must be kept: JPEG for opaque images; for
/// graphics (PNG and GIF sources with at most 256 colours) also a lossless indexed PNG,
/// which beats JPEG on flat colour; for transparent images indexed or full PNG.
fn smallest(
    p: &Pixels,
    transparent: bool,
    source: Format,
    quality: u8,
) -> Result<(Vec<u8>, &'static str), ImageError> {
    let indexed = if transparent || source != Format::Jpeg {
        encode::png_indexed(p)?
    } else {
        None
    };
    let other = if transparent {
        (encode::png(p)?, "image/png")
    } else {
        (encode::jpeg(p, quality)?, "image/jpeg")
    };
    Ok(match indexed {
        Some(png) if png.len() < other.0.len() => (png, "image/png"),
        _ => other,
    })
}

/// Lossy WebP (its alpha plane lossless, so transparency survives); for graphics (PNG
/// and GIF sources) also lossless WebP, and the smaller of the two.
fn smallest_webp(
    p: &Pixels,
    source: Format,
    profile: &Profile,
) -> Result<(Vec<u8>, &'static str), ImageError> {
    let lossy = webp::encode(
        p,
        webp::Settings {
            quality: f32::from(profile.webp_quality),
            method: WEBP_METHOD,
            lossless: false,
            sharp_yuv: profile.webp_sharp_yuv,
        },
    )?;
    if source == Format::Jpeg {
        return Ok((lossy, "image/webp"));
    }
    let lossless = webp::encode(
        p,
        webp::Settings {
            quality: 75.0,
            method: WEBP_LOSSLESS_LEVEL,
            lossless: true,
            sharp_yuv: false,
        },
    )?;
    Ok(if lossless.len() < lossy.len() {
        (lossless, "image/webp")
    } else {
        (lossy, "image/webp")
    })
}

/// What libwebp allocates beside the pixels, per output pixel, rounded up from its
/// sources and from peak RSS (`/usr/bin/time`, `distill_bench` at full size, WebP against
/// JPEG output): a plain lossy encode holds YUV 4:2:0 + alpha and the encoder's rows (no
/// peak above the JPEG path's on a 20 MP photo); the sharp conversion adds the ARGB
/// picture (4) and its scratch (about 7; +6.4 of peak measured); a graphic is also encoded
/// lossless, whose hash chains and backward references cost far more (+32.5 measured on a
/// 2.5 MP PNG).
const WEBP_LOSSY_BYTES_PER_PIXEL: u64 = 8;
const WEBP_SHARP_BYTES_PER_PIXEL: u64 = 14;
const WEBP_BOTH_BYTES_PER_PIXEL: u64 = 36;

/// The WebP encode held against `memory_bytes_max` (a profile whose long edge is above
/// the image's encodes it whole).
fn check_webp_memory(
    p: &Pixels,
    source: Format,
    profile: &Profile,
    limits: &Limits,
) -> Result<(), ImageError> {
    let per_pixel = match (source, profile.webp_sharp_yuv) {
        (Format::Jpeg, false) => WEBP_LOSSY_BYTES_PER_PIXEL,
        (Format::Jpeg, true) => WEBP_SHARP_BYTES_PER_PIXEL,
        _ => WEBP_BOTH_BYTES_PER_PIXEL,
    };
    // A gray image is expanded to RGB for libwebp.
    let expanded = if p.channels < 3 { 4 } else { 0 };
    let needed = (u64::from(p.width) * u64::from(p.height))
        .saturating_mul(per_pixel + expanded)
        .saturating_add(p.data.len() as u64)
        .saturating_add(limits.input_bytes_max);
    if needed > limits.memory_bytes_max {
        return Err(ImageError::TooMuchMemory {
            needed,
            max: limits.memory_bytes_max,
        });
    }
    Ok(())
}

/// libwebp's method for lossy WebP (0 fast – 6 small): 4 is cwebp's default.
const WEBP_METHOD: i32 = 4;
/// libwebp's lossless preset level (0 fast – 9 small): below cwebp's 6, for speed.
const WEBP_LOSSLESS_LEVEL: i32 = 4;

fn in_time(started: Instant, limits: &Limits) -> Result<(), ImageError> {
    if started.elapsed() > limits.time_max {
        return Err(ImageError::TooSlow(limits.time_max));
    }
    Ok(())
}

/// True when some pixel is not fully opaque.
fn has_transparency(p: &Pixels) -> bool {
    match p.channels {
        2 => p.data.chunks_exact(2).any(|px| px[1] != 255),
        4 => p.data.chunks_exact(4).any(|px| px[3] != 255),
        _ => false,
    }
}

fn drop_alpha(p: Pixels) -> Pixels {
    let keep = match p.channels {
        2 => 1,
        4 => 3,
        _ => return p,
    };
    let step = p.channels as usize;
    let data = p
        .data
        .chunks_exact(step)
        .flat_map(|px| px[..keep].iter().copied())
        .collect();
    Pixels {
        channels: keep as u8,
        data,
        ..p
    }
}

fn to_gray(p: Pixels) -> Pixels {
    let luma = |px: &[u8]| {
        ((u32::from(px[0]) * 299 + u32::from(px[1]) * 587 + u32::from(px[2]) * 114) / 1000) as u8
    };
    match p.channels {
        3 => Pixels {
            channels: 1,
            data: p.data.chunks_exact(3).map(luma).collect(),
            ..p
        },
        4 => Pixels {
            channels: 2,
            data: p
                .data
                .chunks_exact(4)
                .flat_map(|px| [luma(px), px[3]])
                .collect(),
            ..p
        },
        _ => p,
    }
}

/// Downscales so the long edge is at most `max_edge` (never upscales).
fn fit(p: Pixels, max_edge: u32) -> Result<Pixels, ImageError> {
    let long = p.width.max(p.height);
    if long <= max_edge || max_edge == 0 {
        return Ok(p);
    }
    let scale = f64::from(max_edge) / f64::from(long);
    let w = ((f64::from(p.width) * scale).round() as u32).max(1);
    let h = ((f64::from(p.height) * scale).round() as u32).max(1);
    let ty = match p.channels {
        1 => PixelType::U8,
        2 => PixelType::U8x2,
        3 => PixelType::U8x3,
        _ => PixelType::U8x4,
    };
    let channels = p.channels;
    let src = Image::from_vec_u8(p.width, p.height, p.data, ty)
        .map_err(|e| ImageError::Resize(e.to_string()))?;
    let mut dst = Image::new(w, h, ty);
    // Lanczos3, as libvips: Catmull-Rom measured 1% smaller but up to 0.006 SSIM lower.
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| ImageError::Resize(e.to_string()))?;
    Ok(Pixels {
        width: w,
        height: h,
        channels,
        data: dst.into_vec(),
    })
}

#[cfg(test)]
mod tests;
