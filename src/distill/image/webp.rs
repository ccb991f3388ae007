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
    /// libwebp's sharp RGB->YUV conversion for lossy output (ignored for lossless).
    pub sharp_yuv: bool,
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
    // Gray stays gray whichever conversion: the sharp one would cost for nothing.
    let s = Settings {
        sharp_yuv: s.sharp_yuv && p.channels >= 3,
        ..s
    };
    let config = config(s)?;
    let mut picture = Picture::new(p.width, p.height, s.lossless || s.sharp_yuv)?;
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
    let mut c = MaybeUninit::<sys::WebPConfig>::zeroed();
    // SAFETY: the struct starts zeroed (every field a valid integer or null), then
    // WebPConfigInitInternal sets its fields (0 when the ABI versions differ: the struct
    // is then not read).
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
    // The iterative RGB to YUV 4:2:0 conversion keeps chroma edges sharp, which
    // SSIMULACRA2 sees. It applies only to pictures held as ARGB (see Picture::new).
    c.use_sharp_yuv = i32::from(s.sharp_yuv && !s.lossless);
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
    /// `argb`: held as ARGB (lossless needs it; for lossy, libwebp then converts to YUV
    /// inside WebPEncode, where the config's sharp conversion applies); else imported
    /// straight to YUV with the plain conversion, the cheaper way.
    fn new(width: u32, height: u32, argb: bool) -> Result<Picture, ImageError> {
        let mut p = MaybeUninit::<sys::WebPPicture>::zeroed();
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
        p.use_argb = i32::from(argb);
        Ok(Picture(p))
    }

    /// Copies `data` (rows of `width` pixels, `channels` 3 or 4) into the picture.
    fn import(&mut self, data: &[u8], channels: u8) -> Result<(), ImageError> {
        let needed = self.0.width as usize * self.0.height as usize * usize::from(channels);
        if !(3..=4).contains(&channels) || data.len() < needed {
            return Err(ImageError::Encode("pixels do not match the picture".into()));
        }
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
            return Err(ImageError::Encode(format!(
                "libwebp could not take the pixels (error {:?})",
                self.0.error_code
            )));
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
        let mut w = MaybeUninit::<sys::WebPMemoryWriter>::zeroed();
        // SAFETY: zeroed, then WebPMemoryWriterInit sets the fields it uses.
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

/// An animated WebP being made, frame by frame; freed on drop.
pub struct AnimEncoder {
    enc: *mut sys::WebPAnimEncoder,
    config: sys::WebPConfig,
    width: u32,
    height: u32,
}

impl AnimEncoder {
    /// An animation of `width` x `height` RGBA frames, looping `loop_count` times (0:
    /// forever), each frame lossy or lossless, whichever is smaller.
    pub fn new(
        width: u32,
        height: u32,
        loop_count: u16,
        s: Settings,
    ) -> Result<AnimEncoder, ImageError> {
        if width == 0 || height == 0 || width > DIMENSION_MAX || height > DIMENSION_MAX {
            return Err(ImageError::Encode(format!(
                "{width}x{height} is outside WebP's limits"
            )));
        }
        let config = config(s)?;
        let mut o = MaybeUninit::<sys::WebPAnimEncoderOptions>::zeroed();
        // SAFETY: zeroed, then the init sets the options (0 on an ABI mismatch: then
        // not read); the encoder copies them.
        let enc = unsafe {
            if sys::WebPAnimEncoderOptionsInitInternal(
                o.as_mut_ptr(),
                sys::WEBP_MUX_ABI_VERSION as i32,
            ) == 0
            {
                return Err(ImageError::Encode("libwebp mux version mismatch".into()));
            }
            let mut o = o.assume_init();
            o.anim_params.loop_count = i32::from(loop_count);
            o.anim_params.bgcolor = 0; // transparent, as browsers show a GIF's background
            o.allow_mixed = 1;
            sys::WebPAnimEncoderNewInternal(
                width as i32,
                height as i32,
                &o,
                sys::WEBP_MUX_ABI_VERSION as i32,
            )
        };
        if enc.is_null() {
            return Err(ImageError::Encode(
                "libwebp could not start an animation".into(),
            ));
        }
        Ok(AnimEncoder {
            enc,
            config,
            width,
            height,
        })
    }

    /// Adds a frame (`rgba`: width*height*4 bytes) shown from `timestamp_ms`.
    pub fn add(&mut self, rgba: &[u8], timestamp_ms: i32) -> Result<(), ImageError> {
        if rgba.len() < self.width as usize * self.height as usize * 4 {
            return Err(ImageError::Encode("frame shorter than the canvas".into()));
        }
        // libwebp's animation encoder takes ARGB frames only.
        let mut picture = Picture::new(self.width, self.height, true)?;
        picture.import(rgba, 4)?;
        // SAFETY: the encoder is live; it reads the picture during the call.
        let ok = unsafe {
            sys::WebPAnimEncoderAdd(self.enc, &mut picture.0, timestamp_ms, &self.config)
        };
        if ok == 0 {
            return Err(ImageError::Encode(
                "libwebp refused an animation frame".into(),
            ));
        }
        Ok(())
    }

    /// The animation, the last frame shown until `end_ms`.
    pub fn finish(self, end_ms: i32) -> Result<Vec<u8>, ImageError> {
        let mut data = sys::WebPData {
            bytes: std::ptr::null(),
            size: 0,
        };
        // SAFETY: a null frame ends the animation; Assemble writes a buffer libwebp
        // allocated into `data`, which is copied and freed with libwebp's free.
        unsafe {
            let ok =
                sys::WebPAnimEncoderAdd(self.enc, std::ptr::null_mut(), end_ms, std::ptr::null())
                    != 0
                    && sys::WebPAnimEncoderAssemble(self.enc, &mut data) != 0;
            // Assemble may fill `data` and still fail: freed either way.
            let bytes = (ok && !data.bytes.is_null())
                .then(|| std::slice::from_raw_parts(data.bytes, data.size).to_vec());
            if !data.bytes.is_null() {
                sys::WebPFree(data.bytes as *mut c_void);
            }
            bytes.ok_or_else(|| {
                ImageError::Encode("libwebp could not assemble the animation".into())
            })
        }
    }
}

impl Drop for AnimEncoder {
    fn drop(&mut self) {
        // SAFETY: the encoder was made by WebPAnimEncoderNewInternal and is freed once.
        unsafe { sys::WebPAnimEncoderDelete(self.enc) };
    }
}

/// An animated WebP as libwebp's demuxer reads it back: canvas size, loop count and
/// each frame's end time (ms). For tests and the benchmark.
pub struct AnimationInfo {
    pub width: u32,
    pub height: u32,
    pub loop_count: u32,
    pub frame_ends_ms: Vec<i32>,
}

pub fn animation_info(bytes: &[u8]) -> Option<AnimationInfo> {
    let data = sys::WebPData {
        bytes: bytes.as_ptr(),
        size: bytes.len(),
    };
    let mut o = MaybeUninit::<sys::WebPAnimDecoderOptions>::zeroed();
    // SAFETY: the decoder reads `bytes` (alive for this call); every frame buffer it
    // returns is its own; it is deleted on every path.
    unsafe {
        if sys::WebPAnimDecoderOptionsInitInternal(
            o.as_mut_ptr(),
            sys::WEBP_DEMUX_ABI_VERSION as i32,
        ) == 0
        {
            return None;
        }
        let mut o = o.assume_init();
        o.color_mode = sys::WEBP_CSP_MODE::MODE_RGBA;
        o.use_threads = 0;
        let dec = sys::WebPAnimDecoderNewInternal(&data, &o, sys::WEBP_DEMUX_ABI_VERSION as i32);
        if dec.is_null() {
            return None;
        }
        let mut info = MaybeUninit::<sys::WebPAnimInfo>::zeroed().assume_init();
        let mut ends = Vec::new();
        if sys::WebPAnimDecoderGetInfo(dec, &mut info) != 0 {
            while sys::WebPAnimDecoderHasMoreFrames(dec) != 0 {
                let (mut buf, mut ts) = (std::ptr::null_mut(), 0);
                if sys::WebPAnimDecoderGetNext(dec, &mut buf, &mut ts) == 0 {
                    break;
                }
                ends.push(ts);
            }
        }
        sys::WebPAnimDecoderDelete(dec);
        Some(AnimationInfo {
            width: info.canvas_width,
            height: info.canvas_height,
            loop_count: info.loop_count,
            frame_ends_ms: ends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A photo with coloured edges encoded as a plain YUV import would encode it, and
    /// through `encode` with `sharp_yuv`: the bytes differ, so the sharp conversion is what
    /// `encode` uses; without `sharp_yuv`, `encode` makes the plain bytes.
    #[test]
    fn lossy_encoding_takes_the_sharp_yuv_conversion() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(root.join("tests/data/corpus/rocket.jpg")).unwrap_or_default();
        let Ok(decoded) =
            crate::distill::image::decode::decode(&data, &crate::distill::image::tests::limits())
        else {
            panic!("rocket.jpg does not decode")
        };
        let p = decoded.pixels;
        let s = Settings {
            quality: 75.0,
            method: 4,
            lossless: false,
            sharp_yuv: true,
        };
        let Ok(sharp) = encode(&p, s) else {
            panic!("no WebP")
        };
        let Ok(mut plain_config) = config(s) else {
            panic!("no config")
        };
        assert_eq!(plain_config.use_sharp_yuv, 1);
        plain_config.use_sharp_yuv = 0;
        let Ok(mut picture) = Picture::new(p.width, p.height, false) else {
            panic!("no picture")
        };
        assert!(picture.import(&p.data, p.channels).is_ok());
        let mut writer = Writer::new();
        assert!(picture.encode(&plain_config, &mut writer).is_ok());
        let plain = writer.bytes().to_vec();
        assert!(!plain.is_empty());
        assert_ne!(sharp, plain, "encode made what a plain YUV import makes");
        let Ok(unsharp) = encode(
            &p,
            Settings {
                sharp_yuv: false,
                ..s
            },
        ) else {
            panic!("no WebP")
        };
        assert_eq!(unsharp, plain);
    }
}
