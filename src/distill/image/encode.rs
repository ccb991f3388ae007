//! Encoding: JPEG (jpeg-encoder, SIMD) for opaque images, PNG for images whose
//! transparency must survive.

use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, QuantizationTableType};

use super::{ImageError, Pixels};

/// Baseline with optimised Huffman tables. Progressive is smaller "where it is
/// smaller", and with this encoder that was almost nowhere: on the corpus photos its
/// progressive output was 5-12% larger than its baseline output
/// (bench/run.sh distill-vs-vips, both tried per image), so only baseline is made.
pub fn jpeg(p: &Pixels, quality: u8) -> Result<Vec<u8>, ImageError> {
    jpeg_with(p, quality, JpegVariant::default())
}

/// A way to encode JPEG, for measuring one against another (bench/run.sh jpeg-variants).
/// The default is what distilld ships: baseline, MS-SSIM-tuned tables (at equal
/// SSIMULACRA2 0.955 of the standard tables' bytes, larger on 1 of 29 images, at the
/// same speed; progressive was larger on 28 of 29).
#[derive(Debug, Clone, Copy, Default)]
pub struct JpegVariant {
    pub progressive: bool,
    /// The quantisation tables: `Default` is the standard's (Annex K).
    pub tables: Tables,
}

/// The quantisation tables jpeg-encoder offers that are worth measuring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tables {
    AnnexK,
    /// N. Robidoux's (ImageMagick's).
    Robidoux,
    /// Tuned for MS-SSIM.
    #[default]
    MsSsim,
    /// Tuned for PSNR-HVS.
    PsnrHvs,
}

pub fn jpeg_with(p: &Pixels, quality: u8, v: JpegVariant) -> Result<Vec<u8>, ImageError> {
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
    enc.set_progressive(v.progressive);
    enc.set_quantization_tables(table(v.tables), table(v.tables));
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

/// Lossless indexed PNG when the image has at most 256 distinct colours (alpha
/// included): often far smaller than RGB(A) for graphics and icons. None when it has more.
pub fn png_indexed(p: &Pixels) -> Result<Option<Vec<u8>>, ImageError> {
    let c = p.channels as usize;
    let rgba = |px: &[u8]| -> [u8; 4] {
        match c {
            1 => [px[0], px[0], px[0], 255],
            2 => [px[0], px[0], px[0], px[1]],
            3 => [px[0], px[1], px[2], 255],
            _ => [px[0], px[1], px[2], px[3]],
        }
    };
    let mut palette: Vec<[u8; 4]> = Vec::new();
    let mut index: std::collections::HashMap<[u8; 4], u8> = std::collections::HashMap::new();
    let mut indices = Vec::with_capacity(p.width as usize * p.height as usize);
    for px in p.data.chunks_exact(c) {
        let color = rgba(px);
        let i = match index.get(&color) {
            Some(&i) => i,
            None => {
                if palette.len() == 256 {
                    return Ok(None);
                }
                let i = palette.len() as u8;
                palette.push(color);
                index.insert(color, i);
                i
            }
        };
        indices.push(i);
    }
    let depth = match palette.len() {
        0..=2 => 1u8,
        3..=4 => 2,
        5..=16 => 4,
        _ => 8,
    };
    let packed = pack_rows(&indices, p.width as usize, depth);
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, p.width, p.height);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(match depth {
        1 => png::BitDepth::One,
        2 => png::BitDepth::Two,
        4 => png::BitDepth::Four,
        _ => png::BitDepth::Eight,
    });
    enc.set_palette(
        palette
            .iter()
            .flat_map(|c| [c[0], c[1], c[2]])
            .collect::<Vec<u8>>(),
    );
    let alphas: Vec<u8> = palette.iter().map(|c| c[3]).collect();
    if let Some(last) = alphas.iter().rposition(|&a| a != 255) {
        enc.set_trns(alphas[..=last].to_vec());
    }
    enc.set_compression(png::Compression::High);
    let encode_err = |e: png::EncodingError| ImageError::Encode(e.to_string());
    let mut writer = enc.write_header().map_err(encode_err)?;
    writer.write_image_data(&packed).map_err(encode_err)?;
    writer.finish().map_err(encode_err)?;
    Ok(Some(out))
}

/// Rows of palette indices packed at `depth` bits, each row starting on a byte.
fn pack_rows(indices: &[u8], width: usize, depth: u8) -> Vec<u8> {
    if depth == 8 {
        return indices.to_vec();
    }
    let per_byte = 8 / depth as usize;
    let row_bytes = width.div_ceil(per_byte);
    let mut out = Vec::with_capacity(row_bytes * indices.len() / width.max(1));
    for row in indices.chunks(width.max(1)) {
        for group in row.chunks(per_byte) {
            let mut b = 0u8;
            for (k, &i) in group.iter().enumerate() {
                b |= i << (8 - depth as usize * (k + 1));
            }
            out.push(b);
        }
    }
    out
}

fn dimension(v: u32) -> Result<u16, ImageError> {
    u16::try_from(v).map_err(|_| ImageError::Encode(format!("{v} pixels is too wide for JPEG")))
}

fn table(t: Tables) -> QuantizationTableType {
    match t {
        Tables::AnnexK => QuantizationTableType::Default,
        Tables::Robidoux => QuantizationTableType::ImageMagick,
        Tables::MsSsim => QuantizationTableType::CustomMsSsim,
        Tables::PsnrHvs => QuantizationTableType::CustomPsnrHvs,
    }
}
