//! Decoding JPEG, PNG and GIF into 8-bit pixels, after checking the header against the
//! limits, so a decompression bomb is refused before any pixel buffer is allocated.

use std::io::Cursor;

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use super::{ImageError, Limits, Pixels, colour};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
}

impl Format {
    /// By magic bytes, not by what the origin claims.
    pub fn sniff(data: &[u8]) -> Option<Format> {
        if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
            Some(Format::Gif)
        } else {
            None
        }
    }
}

/// The largest ICC profile used, as browsers cap them: real profiles are a few KiB to
/// a few hundred; a larger one (or one that inflates past this) is ignored unread.
pub const ICC_BYTES_MAX: usize = 4 << 20;

/// A GIF's logical screen may be larger than what its first frame draws (the rest is
/// transparent), but not by more than this factor once it is over `SPARSE_FLOOR` pixels:
/// a 40-byte GIF declaring a 7000x7000 screen is sent as it came, not painted.
const SPARSE_FACTOR: u64 = 4;
const SPARSE_FLOOR: u64 = 1 << 20;

/// The pixels decoding `data` will produce (from its header alone), or None when the
/// header cannot be read.
pub fn work_pixels(data: &[u8]) -> Option<u64> {
    let area = |w: u32, h: u32| u64::from(w) * u64::from(h);
    match Format::sniff(data)? {
        Format::Png => {
            // IHDR is the first chunk: width and height at bytes 16..24.
            let be = |r: std::ops::Range<usize>| {
                data.get(r)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
            };
            Some(area(be(16..20)?, be(20..24)?))
        }
        Format::Jpeg => {
            let mut dec = JpegDecoder::new(ZCursor::new(data));
            dec.decode_headers().ok()?;
            let info = dec.info()?;
            Some(area(u32::from(info.width), u32::from(info.height)))
        }
        Format::Gif => {
            // The canvas, or the first frame if larger: an interlaced frame may be read
            // whole to find the rows that fall on the screen.
            let mut dec = gif::DecodeOptions::new()
                .read_info(Cursor::new(data))
                .ok()?;
            let screen = area(u32::from(dec.width()), u32::from(dec.height()));
            let frame = dec
                .next_frame_info()
                .ok()
                .flatten()
                .map_or(0, |f| area(u32::from(f.width), u32::from(f.height)));
            Some(screen.max(frame))
        }
    }
}

/// A decoded still image with what the encoder must honour.
#[derive(Debug)]
pub struct Decoded {
    pub pixels: Pixels,
    /// EXIF orientation (1..=8), 1 when absent.
    pub orientation: u8,
    /// The ICC profile, when the image carries one that is not sRGB.
    pub icc: Option<Vec<u8>>,
    /// More than one frame (GIF); only the first was decoded.
    pub animated: bool,
    pub format: Format,
}

/// Width and height from the header, and refuses what the limits forbid.
pub(super) fn check_size(
    width: u32,
    height: u32,
    channels: u64,
    limits: &Limits,
) -> Result<(), ImageError> {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt("zero-sized image".into()));
    }
    if pixels > limits.pixels_max {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            max: limits.pixels_max,
        });
    }
    // Decoded buffer, resize destination and encoder output, generously.
    let memory = pixels * channels * 2 + limits.input_bytes_max;
    if memory > limits.memory_bytes_max {
        return Err(ImageError::TooMuchMemory {
            needed: memory,
            max: limits.memory_bytes_max,
        });
    }
    Ok(())
}

pub fn decode(data: &[u8], limits: &Limits) -> Result<Decoded, ImageError> {
    decode_for(data, limits, None)
}

/// Decodes, at a reduced size when the result will be downscaled to `target_edge` anyway
/// and the format can scale while decoding (JPEG: 1/2, 1/4 or 1/8 in the DCT domain).
/// With a target, a YCbCr or gray JPEG is decoded by libjpeg-turbo; without one (or when
/// libjpeg fails), by zune-jpeg.
pub fn decode_for(
    data: &[u8],
    limits: &Limits,
    target_edge: Option<u32>,
) -> Result<Decoded, ImageError> {
    match Format::sniff(data) {
        Some(Format::Jpeg) => jpeg(data, limits, target_edge),
        Some(Format::Png) => png(data, limits),
        Some(Format::Gif) => gif(data, limits),
        None => Err(ImageError::Unsupported),
    }
}

/// Start-of-scan markers in a JPEG stream (entropy-coded data stuffs every 0xFF with a
/// zero byte, so 0xFF 0xDA is always a marker).
fn count_scans(data: &[u8]) -> usize {
    data.windows(2)
        .filter(|w| w[0] == 0xFF && w[1] == 0xDA)
        .count()
}

/// The header is held against the limits before any pixel exists; then the cheapest
/// decode that serves: scaled, through a CMYK profile, or plain at full size.
fn jpeg(data: &[u8], limits: &Limits, target_edge: Option<u32>) -> Result<Decoded, ImageError> {
    let scans = check_scan_count(data, limits)?;
    let options = jpeg_options(limits);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), options);
    let header = JpegHeader::read(&mut dec)?;
    // A CMYK image is held as four channels before it becomes RGB.
    let buffer_channels = if header.four() {
        4
    } else {
        u64::from(header.channels())
    };
    check_size(
        u32::from(header.width),
        u32::from(header.height),
        buffer_channels,
        limits,
    )?;
    if let Some(t) = scale_target(&header, target_edge)
        && let Some(pixels) = jpeg_scaled_turbo(data, &header, limits, t)
    {
        return Ok(Decoded {
            pixels,
            orientation: dec.exif().map_or(1, |e| exif_orientation(e)),
            icc: dec.icc_profile().filter(|p| usable_icc(p)),
            animated: false,
            format: Format::Jpeg,
        });
    }
    check_zune_memory(&header, scans, buffer_channels, limits)?;
    if let Some(d) = jpeg_cmyk_if_profiled(data, options, &dec, &header)? {
        return Ok(d);
    }
    jpeg_full(data, options, &header)
}

/// Each scan is another pass over every coefficient, so a small progressive file with
/// thousands of scans would cost far more than its size suggests: refused unread.
fn check_scan_count(data: &[u8], limits: &Limits) -> Result<usize, ImageError> {
    let scans = count_scans(data);
    if scans > limits.jpeg_scans_max {
        return Err(ImageError::Corrupt(format!(
            "{scans} scans, more than the limit of {}",
            limits.jpeg_scans_max
        )));
    }
    Ok(scans)
}

/// zune-jpeg keeps every coefficient of a progressive or multi-scan file until its last
/// scan (2 bytes a sample, each component at most at full resolution, padded to whole
/// MCUs of up to 32 pixels), beside what `check_size` counts: refused when the two
/// together would pass `memory_bytes_max`.
fn check_zune_memory(
    header: &JpegHeader,
    scans: usize,
    channels: u64,
    limits: &Limits,
) -> Result<(), ImageError> {
    if !header.progressive && scans <= 1 {
        return Ok(());
    }
    let (w, h) = (u64::from(header.width), u64::from(header.height));
    let coefficients = (w + 32) * (h + 32) * 2 * u64::from(header.components.max(1));
    let needed = (w * h * channels * 2)
        .saturating_add(limits.input_bytes_max)
        .saturating_add(coefficients);
    if needed > limits.memory_bytes_max {
        return Err(ImageError::TooMuchMemory {
            needed,
            max: limits.memory_bytes_max,
        });
    }
    Ok(())
}

/// The limits again inside the decoder, so it stops on its own at a side or scan count
/// the header check did not see (a JPEG side is a u16 whatever `pixels_max` allows).
fn jpeg_options(limits: &Limits) -> DecoderOptions {
    let side = limits.pixels_max.min(u64::from(u16::MAX)) as usize;
    DecoderOptions::new_fast()
        .set_max_width(side)
        .set_max_height(side)
        .jpeg_set_max_scans(limits.jpeg_scans_max)
}

/// What a JPEG's header says: all that is known before any pixel buffer exists.
struct JpegHeader {
    width: u16,
    height: u16,
    space: Option<ColorSpace>,
    progressive: bool,
    components: u8,
}

impl JpegHeader {
    fn read(dec: &mut JpegDecoder<ZCursor<&[u8]>>) -> Result<JpegHeader, ImageError> {
        dec.decode_headers()
            .map_err(|e| ImageError::Corrupt(e.to_string()))?;
        let info = dec
            .info()
            .ok_or_else(|| ImageError::Corrupt("no JPEG header".into()))?;
        Ok(JpegHeader {
            width: info.width,
            height: info.height,
            space: dec.input_colorspace(),
            progressive: info.sof.is_progressive(),
            components: info.components,
        })
    }

    fn gray(&self) -> bool {
        matches!(self.space, Some(ColorSpace::Luma))
    }

    /// CMYK or YCCK: its colours mean something only through a profile or a formula.
    fn four(&self) -> bool {
        matches!(self.space, Some(ColorSpace::CMYK | ColorSpace::YCCK))
    }

    /// Channels of the decoded result: gray stays gray, everything else becomes RGB.
    fn channels(&self) -> u8 {
        if self.gray() { 1 } else { 3 }
    }
}

/// The edge to decode to with libjpeg-turbo, which takes YCbCr or gray only (CMYK and
/// YCCK go through zune-jpeg and their profile or formula).
fn scale_target(header: &JpegHeader, target_edge: Option<u32>) -> Option<u32> {
    let t = target_edge?;
    let ycc_or_gray = matches!(header.space, Some(ColorSpace::YCbCr | ColorSpace::Luma));
    (ycc_or_gray && t > 0).then_some(t)
}

/// A CMYK image carrying a CMYK profile qcms can use goes through that profile; None
/// leaves it to the decoder's plain formula.
fn jpeg_cmyk_if_profiled(
    data: &[u8],
    options: DecoderOptions,
    dec: &JpegDecoder<ZCursor<&[u8]>>,
    header: &JpegHeader,
) -> Result<Option<Decoded>, ImageError> {
    if header.four()
        && let Some(icc) = dec
            .icc_profile()
            .filter(|p| p.len() <= ICC_BYTES_MAX && colour::is_cmyk_profile(p))
        && let Some(space) = header.space
    {
        return jpeg_cmyk(data, options, space, &icc);
    }
    Ok(None)
}

/// The whole image at full size, as gray or RGB.
fn jpeg_full(
    data: &[u8],
    options: DecoderOptions,
    header: &JpegHeader,
) -> Result<Decoded, ImageError> {
    let channels = header.channels();
    let out = if header.gray() {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    let options = options.jpeg_set_out_colorspace(out);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), options);
    let pixels = dec
        .decode()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let orientation = dec.exif().map_or(1, |e| exif_orientation(e));
    // A CMYK image without a usable CMYK profile: the decoder's plain conversion, as
    // browsers show such images; its profile (if any) does not describe RGB pixels.
    let icc = dec
        .icc_profile()
        .filter(|p| !header.four() && usable_icc(p));
    let expected = usize::from(header.width) * usize::from(header.height) * usize::from(channels);
    if pixels.len() < expected {
        return Err(ImageError::Corrupt("short JPEG pixel data".into()));
    }
    Ok(Decoded {
        pixels: Pixels {
            width: u32::from(header.width),
            height: u32::from(header.height),
            channels,
            data: pixels,
        },
        orientation,
        icc,
        animated: false,
        format: Format::Jpeg,
    })
}

/// A CMYK or YCCK JPEG with a CMYK profile: decoded to its four channels, turned into
/// ink amounts and converted to sRGB through the profile at full size (such images are
/// rare; they skip the scaled decode). None when qcms cannot use the profile: the plain
/// formula then applies.
fn jpeg_cmyk(
    data: &[u8],
    options: DecoderOptions,
    space: ColorSpace,
    icc: &[u8],
) -> Result<Option<Decoded>, ImageError> {
    let mut dec =
        JpegDecoder::new_with_options(ZCursor::new(data), options.jpeg_set_out_colorspace(space));
    let mut raw = dec
        .decode()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let (width, height) = dec
        .dimensions()
        .map(|(w, h)| (w as u32, h as u32))
        .ok_or_else(|| ImageError::Corrupt("no JPEG header".into()))?;
    if raw.len() < width as usize * height as usize * 4 {
        return Err(ImageError::Corrupt("short JPEG pixel data".into()));
    }
    to_ink(&mut raw, space == ColorSpace::YCCK, adobe_marker(data));
    let Some(rgb) = colour::cmyk_to_srgb(&raw, icc) else {
        return Ok(None);
    };
    Ok(Some(Decoded {
        pixels: Pixels {
            width,
            height,
            channels: 3,
            data: rgb,
        },
        orientation: dec.exif().map_or(1, |e| exif_orientation(e)),
        icc: None,
        animated: false,
        format: Format::Jpeg,
    }))
}

/// Stored samples to ink amounts (0 = no ink). YCCK holds the complement of C, M and Y as
/// YCbCr (JFIF coefficients); Adobe's writers store every channel complemented.
pub(super) fn to_ink(px: &mut [u8], ycck: bool, adobe: bool) {
    for p in px.chunks_exact_mut(4) {
        if ycck {
            let (y, cb, cr) = (
                f32::from(p[0]),
                f32::from(p[1]) - 128.0,
                f32::from(p[2]) - 128.0,
            );
            let rgb = [
                y + 1.402 * cr,
                y - 0.344_136 * cb - 0.714_136 * cr,
                y + 1.772 * cb,
            ];
            for (c, v) in p.iter_mut().zip(rgb) {
                *c = 255 - v.round().clamp(0.0, 255.0) as u8;
            }
        }
        if adobe {
            for c in p.iter_mut() {
                *c = 255 - *c;
            }
        }
    }
}

/// Whether an APP14 "Adobe" segment comes before the first scan.
fn adobe_marker(data: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= data.len() && data[i] == 0xFF {
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xDA {
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        if marker == 0xEE && data.get(i + 4..i + 9) == Some(b"Adobe") {
            return true;
        }
        i += 2 + len;
    }
    false
}

/// Decodes at the smallest DCT scale (1/8, 1/4, 1/2, else whole) that still gives at
/// least `target` pixels on the long edge, with libjpeg-turbo: the scaled decode libvips
/// uses, with its SIMD when nasm was there at build time. Even at full size it is faster
/// than zune-jpeg on progressive files (`bench/run.sh distill-vs-vips`). A libjpeg error unwinds out of the C
/// code and is caught here (and logged at debug). None: decode with zune-jpeg instead.
fn jpeg_scaled_turbo(
    data: &[u8],
    header: &JpegHeader,
    limits: &Limits,
    target: u32,
) -> Option<Pixels> {
    match std::panic::catch_unwind(|| turbo_scaled(data, header, limits, target)) {
        Ok(pixels) => pixels,
        Err(e) => {
            let why = e
                .downcast_ref::<String>()
                .map_or("libjpeg failed", |s| s.as_str());
            tracing::debug!("libjpeg: {why}; decoding with zune-jpeg");
            None
        }
    }
}

fn turbo_scaled(data: &[u8], header: &JpegHeader, limits: &Limits, target: u32) -> Option<Pixels> {
    let mut dec = mozjpeg::Decompress::new_mem(data).ok()?;
    // The checks ran on zune-jpeg's reading of the header. A file that shows libjpeg
    // another frame (a marker one parser skips with its bytes and the other does not)
    // could hide a huge one from them: libjpeg must see the same frame, or it is not used.
    if !same_frame(&dec, header) {
        return None;
    }
    let (w, h) = dec.size();
    let long = w.max(h) as u64;
    let numerator = [1u8, 2, 4]
        .into_iter()
        .find(|&n| (long * u64::from(n)).div_ceil(8) >= u64::from(target))
        .unwrap_or(8);
    if turbo_memory(&dec, numerator).saturating_add(limits.input_bytes_max)
        > limits.memory_bytes_max
    {
        return None;
    }
    dec.scale(numerator);
    let gray = matches!(dec.color_space(), mozjpeg::ColorSpace::JCS_GRAYSCALE);
    let mut started = if gray { dec.grayscale() } else { dec.rgb() }.ok()?;
    let (width, height) = (started.width(), started.height());
    let data: Vec<u8> = started.read_scanlines::<u8>().ok()?;
    started.finish().ok()?;
    let channels: usize = if gray { 1 } else { 3 };
    (data.len() == width * height * channels).then_some(Pixels {
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
        channels: channels as u8,
        data,
    })
}

/// libjpeg reads the frame zune-jpeg read: its size and number of components.
fn same_frame<R>(dec: &mozjpeg::Decompress<R>, header: &JpegHeader) -> bool {
    dec.size() == (usize::from(header.width), usize::from(header.height))
        && dec.components().len() == usize::from(header.channels())
}

/// What libjpeg allocates for a decode at `numerator`/8, at most: every component's
/// coefficients for the whole image at its own sampling (a progressive or multi-scan
/// file keeps them all; 64 of 2 bytes a block, blocks padded to whole MCUs), and the
/// scaled output.
fn turbo_memory<R>(dec: &mozjpeg::Decompress<R>, numerator: u8) -> u64 {
    let (w, h) = dec.size();
    let (w, h) = (w as u64, h as u64);
    let factor = |f: i32| u64::try_from(f).unwrap_or(1).clamp(1, 4);
    let comps = dec.components();
    let max_h = comps
        .iter()
        .map(|c| factor(c.h_samp_factor))
        .max()
        .unwrap_or(1);
    let max_v = comps
        .iter()
        .map(|c| factor(c.v_samp_factor))
        .max()
        .unwrap_or(1);
    let coefficients: u64 = comps
        .iter()
        .map(|c| {
            let (hs, vs) = (factor(c.h_samp_factor), factor(c.v_samp_factor));
            let blocks_w = (w * hs).div_ceil(8 * max_h) + hs;
            let blocks_h = (h * vs).div_ceil(8 * max_v) + vs;
            blocks_w * blocks_h * 128
        })
        .sum();
    let n = u64::from(numerator);
    let output = (w * n).div_ceil(8) * (h * n).div_ceil(8) * dec.components().len() as u64;
    coefficients.saturating_add(output)
}

fn png(data: &[u8], limits: &Limits) -> Result<Decoded, ImageError> {
    let budget = png::Limits {
        bytes: limits.memory_bytes_max as usize,
    };
    let mut dec = png::Decoder::new_with_limits(Cursor::new(data), budget);
    // Metadata is never inflated by the decoder (it would inflate an iCCP chunk up to
    // the whole memory limit): text is not needed, the profile is read below, bounded.
    dec.set_ignore_text_chunk(true);
    dec.set_ignore_iccp_chunk(true);
    // Palette and tRNS expanded, 16-bit stripped: 8-bit gray, gray+alpha, RGB or RGBA.
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let header = dec.read_header_info().map_err(png_error)?;
    let (width, height) = (header.width, header.height);
    check_size(width, height, 4, limits)?;
    let animated = header.animation_control.is_some_and(|a| a.num_frames > 1);
    let mut reader = dec.read_info().map_err(png_error)?;
    let icc = png_icc(data).filter(|p| usable_icc(p));
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ImageError::Corrupt("PNG too large".into()))?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(png_error)?;
    let channels = frame.color_type.samples() as u8;
    buf.truncate(frame.buffer_size());
    Ok(Decoded {
        pixels: Pixels {
            width: frame.width,
            height: frame.height,
            channels,
            data: buf,
        },
        orientation: 1,
        icc,
        animated,
        format: Format::Png,
    })
}

/// The profile of a PNG's iCCP chunk, inflated to at most `ICC_BYTES_MAX` (None past
/// that, when absent, or when it does not inflate).
fn png_icc(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut at = 8;
    loop {
        let len = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        let kind = data.get(at + 4..at + 8)?;
        if kind == b"IDAT" {
            return None; // iCCP comes before the image data or not at all
        }
        let body = data.get(at + 8..(at + 8).checked_add(len)?)?;
        if kind == b"iCCP" {
            // Name (1-79 bytes), NUL, compression method 0, then a zlib stream.
            let nul = body.iter().take(80).position(|&b| b == 0)?;
            let stream = body
                .get(nul + 2..)
                .filter(|_| body.get(nul + 1) == Some(&0))?;
            let mut profile = Vec::new();
            flate2::read::ZlibDecoder::new(stream)
                .take(ICC_BYTES_MAX as u64 + 1)
                .read_to_end(&mut profile)
                .ok()?;
            return (profile.len() <= ICC_BYTES_MAX).then_some(profile);
        }
        at = at.checked_add(len)?.checked_add(12)?;
    }
}

fn png_error(e: png::DecodingError) -> ImageError {
    match e {
        png::DecodingError::LimitsExceeded => ImageError::TooMuchMemory { needed: 0, max: 0 },
        other => ImageError::Corrupt(other.to_string()),
    }
}

fn gif(data: &[u8], limits: &Limits) -> Result<Decoded, ImageError> {
    let mut dec = gif_reader(data, limits)?;
    let (width, height) = (u32::from(dec.width()), u32::from(dec.height()));
    check_size(width, height, 4, limits)?;
    let rect = first_frame(&mut dec, limits)?;
    let (vis_w, vis_h) = rect.visible(width, height);
    let (drawn, screen) = (vis_w * vis_h, u64::from(width) * u64::from(height));
    refuse_sparse(screen, drawn)?;
    // The canvas exists from the first row the frame really has: a frame that declares
    // the whole screen but carries no pixel data paints nothing, so it is no cover for
    // a sparse screen either.
    let size = width as usize * height as usize * 4;
    let mut canvas = Vec::new();
    let painted = if drawn > 0 {
        paint(&mut dec, &rect, width, vis_h, (&mut canvas, size))?
    } else {
        0
    };
    refuse_sparse(screen, painted * vis_w)?;
    if canvas.is_empty() {
        canvas = vec![0u8; size];
    }
    // Is there a second frame? Only its header is read.
    let animated = dec.next_frame_info().map_err(gif_error)?.is_some();
    Ok(Decoded {
        pixels: Pixels {
            width,
            height,
            channels: 4,
            data: canvas,
        },
        orientation: 1,
        icc: None,
        animated,
        format: Format::Gif,
    })
}

/// A GIF reader that expands every frame to RGBA and allocates no buffer past the
/// memory limit.
pub(super) fn gif_reader<'a>(
    data: &'a [u8],
    limits: &Limits,
) -> Result<gif::Decoder<Cursor<&'a [u8]>>, ImageError> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    options.set_memory_limit(gif::MemoryLimit::Bytes(
        std::num::NonZeroU64::new(limits.memory_bytes_max).unwrap_or(std::num::NonZeroU64::MIN),
    ));
    options.read_info(Cursor::new(data)).map_err(gif_error)
}

/// The first frame's header, before any pixel buffer: the screen is painted only if
/// that frame covers a fair part of it, and only the rows and columns of the frame
/// that fall on the screen are decoded (a frame may declare 65535x65535).
fn first_frame(dec: &mut gif::Decoder<Cursor<&[u8]>>, limits: &Limits) -> Result<Rect, ImageError> {
    let frame = dec
        .next_frame_info()
        .map_err(gif_error)?
        .ok_or_else(|| ImageError::Corrupt("GIF without a frame".into()))?;
    let rect = Rect {
        left: u32::from(frame.left),
        top: u32::from(frame.top),
        width: u32::from(frame.width),
        height: u32::from(frame.height),
        interlaced: frame.interlaced,
    };
    check_size(rect.width, rect.height, 4, limits)?;
    Ok(rect)
}

/// A large screen of which the frame draws little would cost its whole canvas for a
/// few pixels: sent as it came instead (see `SPARSE_FACTOR`).
fn refuse_sparse(screen: u64, drawn: u64) -> Result<(), ImageError> {
    if screen > SPARSE_FLOOR && screen > drawn.saturating_mul(SPARSE_FACTOR) {
        return Err(ImageError::MostlyEmpty { screen, drawn });
    }
    Ok(())
}

/// Where a GIF frame lies on the logical screen.
struct Rect {
    left: u32,
    top: u32,
    width: u32,
    height: u32,
    interlaced: bool,
}

impl Rect {
    /// Columns and rows of the frame that fall on a `width` x `height` screen.
    fn visible(&self, width: u32, height: u32) -> (u64, u64) {
        let w = self.width.min(width.saturating_sub(self.left));
        let h = self.height.min(height.saturating_sub(self.top));
        (u64::from(w), u64::from(h))
    }

    /// The frame rows in the order the file holds them (interlaced: four passes).
    fn row_order(&self) -> Box<dyn Iterator<Item = u32>> {
        let h = self.height;
        if !self.interlaced {
            return Box::new(0..h);
        }
        Box::new(
            (0..h)
                .step_by(8)
                .chain((4..h).step_by(8))
                .chain((2..h).step_by(4))
                .chain((1..h).step_by(2)),
        )
    }
}

/// Decodes the frame row by row onto the canvas (made `size` bytes at the first row),
/// stopping once its `visible_rows` rows on the screen are painted; parts outside the
/// screen are dropped unkept. Returns the rows painted.
fn paint(
    dec: &mut gif::Decoder<Cursor<&[u8]>>,
    rect: &Rect,
    width: u32,
    visible_rows: u64,
    (canvas, size): (&mut Vec<u8>, usize),
) -> Result<u64, ImageError> {
    let (fw, left, top) = (rect.width as usize, rect.left as usize, rect.top as usize);
    let width = width as usize;
    let n = fw.min(width.saturating_sub(left)) * 4;
    let mut row = vec![0u8; fw * 4];
    let mut painted = 0;
    for y in rect.row_order() {
        if painted >= visible_rows {
            break;
        }
        if !dec.fill_buffer(&mut row).map_err(gif_error)? {
            break; // the data ended early: what was painted stays
        }
        if canvas.is_empty() {
            *canvas = vec![0u8; size]; // zeroed pages: resident only where painted
        }
        let at = ((top + y as usize) * width + left) * 4;
        if let Some(dst) = canvas.get_mut(at..at + n) {
            dst.copy_from_slice(&row[..n]);
            painted += 1;
        }
    }
    Ok(painted)
}

pub(super) fn gif_error(e: gif::DecodingError) -> ImageError {
    ImageError::Corrupt(e.to_string())
}

/// EXIF orientation (tag 0x0112) from an APP1 payload, 1 when absent or unreadable.
fn exif_orientation(raw: &[u8]) -> u8 {
    let data = raw.strip_prefix(b"Exif\0\0").unwrap_or(raw).to_vec();
    let Ok(exif) = exif::Reader::new().read_raw(data) else {
        return 1;
    };
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .map_or(1, |o| o as u8)
}

/// A profile worth converting from: not oversized, and not sRGB already.
fn usable_icc(icc: &[u8]) -> bool {
    icc.len() <= ICC_BYTES_MAX && !is_srgb(icc)
}

/// An ICC profile that describes sRGB needs no conversion.
fn is_srgb(icc: &[u8]) -> bool {
    qcms::Profile::new_from_slice(icc, false).is_some_and(|p| p.is_sRGB())
}

#[cfg(test)]
mod tests;
