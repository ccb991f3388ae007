//! WebP through libwebp (built from source by `libwebp-sys`): a small safe wrapper that
//! encodes 8-bit pixels, lossy (with a lossless alpha plane when the image has one) or
//! lossless, single-threaded (a job runs on one core). Every libwebp object is owned by
//! a guard that frees it on every path.

use std::ffi::c_void;
use std::mem::MaybeUninit;

use libwebp_sys as sys;

use super::{ImageError, Pixels};

/// libwebp's limit on either side.
pub const DIMENSION_MAX: u32 = 16383;

/// How an image is encoded.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// 0–100: lossy quality; for lossless, how hard to compress.
    pub quality: f32,
    /// 0 (fast) – 6 (small).
    pub method: i32,
    pub lossless: bool,
}

/// Encodes `p` (1–4 channels) as WebP.
pub fn encode(p: &Pixels, s: Settings) -> Result<Vec<u8>, ImageError> {
    if p.width == 0 || p.height == 0 || p.width > DIMENSION_MAX || p.height > DIMENSION_MAX {
        return Err(ImageError::Encode(format!(
            "{}x{} is outside WebP's 1..={DIMENSION_MAX}",
            p.width, p.height
        )));
    }
    let expanded;
    let (data, channels) = match p.channels {
        1 | 2 => {
            expanded = gray_to_colour(p);
            (&expanded[..], p.channels + 2)
        }
        3 | 4 => (&p.data[..], p.channels),
        _ => return Err(ImageError::Unsupported),
    };
    let needed = p.width as usize * p.height as usize * channels as usize;
    if data.len() < needed {
        return Err(ImageError::Encode(
            "pixel buffer shorter than its size".into(),
        ));
    }
    let config = config(s)?;
    let mut picture = Picture::new(p.width, p.height, s.lossless)?;
    picture.import(data, channels)?;
    let mut writer = Writer::new();
    picture.encode(&config, &mut writer)?;
    Ok(writer.bytes().to_vec())
}

/// Decodes a WebP still image to RGBA: width, height, pixels. For tests and the
/// benchmark's quality checks.
pub fn decode_rgba(bytes: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let (mut w, mut h) = (0i32, 0i32);
    // SAFETY: libwebp reads `bytes` (length given) and writes the two ints; it returns
    // a buffer of w*h*4 bytes it allocated, or null. The buffer is copied, then freed
    // with libwebp's own free.
    unsafe {
        let out = sys::WebPDecodeRGBA(bytes.as_ptr(), bytes.len(), &mut w, &mut h);
        if out.is_null() {
            return None;
        }
        let len = (w.max(0) as usize) * (h.max(0) as usize) * 4;
        let pixels = std::slice::from_raw_parts(out, len).to_vec();
        sys::WebPFree(out.cast::<c_void>());
        Some((w as u32, h as u32, pixels))
    }
}

fn config(s: Settings) -> Result<sys::WebPConfig, ImageError> {
    let failed = || ImageError::Encode("libwebp refused the configuration".into());
    let mut c = MaybeUninit::<sys::WebPConfig>::uninit();
    // SAFETY: WebPConfigInitInternal fills the whole struct (it returns 0 when the ABI
    // versions differ, and the struct is then not read).
    let mut c = unsafe {
        let ok = sys::WebPConfigInitInternal(
            c.as_mut_ptr(),
            sys::WebPPreset::WEBP_PRESET_DEFAULT,
            s.quality,
            sys::WEBP_ENCODER_ABI_VERSION as i32,
        );
        if ok == 0 {
            return Err(failed());
        }
        c.assume_init()
    };
    c.method = s.method.clamp(0, 6);
    c.thread_level = 0;
    if s.lossless {
        // SAFETY: `c` is an initialised config.
        if unsafe { sys::WebPConfigLosslessPreset(&mut c, s.method.clamp(0, 9)) } == 0 {
            return Err(failed());
        }
    }
    c.alpha_quality = 100;
    // SAFETY: `c` is an initialised config.
    if unsafe { sys::WebPValidateConfig(&c) } == 0 {
        return Err(failed());
    }
    Ok(c)
}

/// A WebPPicture, freed on drop.
struct Picture(sys::WebPPicture);

impl Picture {
    fn new(width: u32, height: u32, lossless: bool) -> Result<Picture, ImageError> {
        let mut p = MaybeUninit::<sys::WebPPicture>::uninit();
        // SAFETY: WebPPictureInitInternal zeroes and fills the struct, or returns 0.
        let mut p = unsafe {
            if sys::WebPPictureInitInternal(p.as_mut_ptr(), sys::WEBP_ENCODER_ABI_VERSION as i32)
                == 0
            {
                return Err(ImageError::Encode("libwebp version mismatch".into()));
            }
            p.assume_init()
        };
        p.width = width as i32;
        p.height = height as i32;
        p.use_argb = i32::from(lossless);
        Ok(Picture(p))
    }

    /// Copies `data` (rows of `width` pixels, `channels` 3 or 4) into the picture.
    fn import(&mut self, data: &[u8], channels: u8) -> Result<(), ImageError> {
        let stride = self.0.width * i32::from(channels);
        // SAFETY: `data` holds at least width*height*channels bytes (checked by the
        // caller); libwebp copies them into memory the picture owns.
        let ok = unsafe {
            if channels == 4 {
                sys::WebPPictureImportRGBA(&mut self.0, data.as_ptr(), stride)
            } else {
                sys::WebPPictureImportRGB(&mut self.0, data.as_ptr(), stride)
            }
        };
        if ok == 0 {
            return Err(ImageError::TooMuchMemory {
                needed: data.len() as u64 * 2,
                max: 0,
            });
        }
        Ok(())
    }

    fn encode(&mut self, config: &sys::WebPConfig, writer: &mut Writer) -> Result<(), ImageError> {
        self.0.writer = Some(sys::WebPMemoryWrite);
        self.0.custom_ptr = (&mut writer.0 as *mut sys::WebPMemoryWriter).cast::<c_void>();
        // SAFETY: the picture holds imported pixels; the writer lives for this call and
        // its memory is freed by its guard.
        let ok = unsafe { sys::WebPEncode(config, &mut self.0) };
        self.0.custom_ptr = std::ptr::null_mut();
        if ok == 0 {
            return Err(ImageError::Encode(format!(
                "libwebp error {:?}",
                self.0.error_code
            )));
        }
        Ok(())
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: frees what the picture allocated (nothing if no import happened).
        unsafe { sys::WebPPictureFree(&mut self.0) };
    }
}

/// Where the encoder writes, freed on drop.
struct Writer(sys::WebPMemoryWriter);

impl Writer {
    fn new() -> Writer {
        let mut w = MaybeUninit::<sys::WebPMemoryWriter>::uninit();
        // SAFETY: WebPMemoryWriterInit sets every field.
        unsafe {
            sys::WebPMemoryWriterInit(w.as_mut_ptr());
            Writer(w.assume_init())
        }
    }

    fn bytes(&self) -> &[u8] {
        if self.0.mem.is_null() {
            return &[];
        }
        // SAFETY: libwebp wrote `size` bytes at `mem`, which lives until drop.
        unsafe { std::slice::from_raw_parts(self.0.mem, self.0.size) }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: frees the memory the encoder wrote into.
        unsafe { sys::WebPMemoryWriterClear(&mut self.0) };
    }
}

/// Gray (and gray+alpha) as RGB (RGBA): libwebp imports colour only.
fn gray_to_colour(p: &Pixels) -> Vec<u8> {
    match p.channels {
        1 => p.data.iter().flat_map(|&g| [g, g, g]).collect(),
        _ => p
            .data
            .chunks_exact(2)
            .flat_map(|px| [px[0], px[0], px[0], px[1]])
            .collect(),
    }
}
