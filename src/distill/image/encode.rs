//! Encoding: JPEG (jpeg-encoder, SIMD) for opaque images, PNG for images whose
//! transparency must survive.

use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder};

use super::{ImageError, Pixels};

/// Baseline with optimised Huffman tables. Progressive is smaller "where it is
/// smaller", and with this encoder that was almost nowhere: on the corpus photos its
/// progressive output was 5-12% larger than its baseline output
/// (bench/run.sh distill-vs-vips, both tried per image), so only baseline is made.
pub fn jpeg(p: &Pixels, quality: u8) -> Result<Vec<u8>, ImageError> {
    jpeg_with(p, quality, false)
}

fn jpeg_with(p: &Pixels, quality: u8, progressive: bool) -> Result<Vec<u8>, ImageError> {
    let (w, h) = (dimension(p.width)?, dimension(p.height)?);
    let color = match p.channels {
        1 => ColorType::Luma,
        3 => ColorType::Rgb,
        4 => ColorType::Rgba, // alpha already known to be opaque; the encoder drops it
        _ => return Err(ImageError::Unsupported),
    };
    let mut out = Vec::with_capacity(p.data.len() / 8);
    let mut enc = Encoder::new(&mut out, quality);
    enc.set_optimized_huffman_tables(true);
    // Box-averaged chroma (as libjpeg does) rather than one pixel per block: less chroma
    // noise to encode, so smaller at the same quality.
    enc.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    enc.set_progressive(progressive);
    enc.encode(&p.data, w, h, color)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(out)
}

/// PNG, 8 bits per channel, best compression the crate offers.
pub fn png(p: &Pixels) -> Result<Vec<u8>, ImageError> {
    let color = match p.channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        _ => return Err(ImageError::Unsupported),
    };
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, p.width, p.height);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::High);
    let mut writer = enc
        .write_header()
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    writer
        .write_image_data(&p.data)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(out)
}

fn dimension(v: u32) -> Result<u16, ImageError> {
    u16::try_from(v).map_err(|_| ImageError::Encode(format!("{v} pixels is too wide for JPEG")))
}
