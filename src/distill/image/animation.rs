//! Animated GIF to animated WebP: every frame composed onto the screen as a browser
//! shows it (transparency, disposal), scaled to the profile's long edge, and handed to
//! libwebp's animation encoder, which may store each frame lossy or lossless. Bounded by
//! the frames' total pixels (`distill.animation_pixels_max`) and the job's time.

use std::time::Instant;

use gif::DisposalMethod;

use super::decode::{check_size, gif_error, gif_reader};
use super::{Distilled, ImageError, Limits, Pixels, WEBP_METHOD, fit, in_time, webp};
use crate::distill::profile::Profile;

/// Frames of one animation at most (a 1x1 screen would otherwise allow millions).
const FRAMES_MAX: u64 = 4096;

/// A frame delay of 10 ms or less is shown for 100 ms by browsers (GIFs of the 1990s
/// rely on it), so the WebP keeps that timing.
const SHORTEST_DELAY_MS: i32 = 20;
const BROWSER_DELAY_MS: i32 = 100;

/// `started`: when the job began (its time limit counts from there).
pub fn gif_to_webp(
    data: &[u8],
    profile: &Profile,
    limits: &Limits,
    started: Instant,
) -> Result<Distilled, ImageError> {
    let (width, height) = {
        let dec = gif_reader(data, limits)?;
        (u32::from(dec.width()), u32::from(dec.height()))
    };
    check_size(width, height, 4, limits)?;
    let screen = u64::from(width) * u64::from(height);
    let (out_w, out_h) = fitted(width, height, profile.max_edge);
    // The canvas, its copy for disposal and the frame shown, the frame's own buffer
    // (at most the screen: larger frames are refused), and what libwebp keeps per
    // frame at the output size (candidates, previous frames: about six).
    let needed = screen * 4 * 4 + u64::from(out_w) * u64::from(out_h) * 4 * 6;
    if needed > limits.memory_bytes_max {
        return Err(ImageError::TooMuchMemory {
            needed,
            max: limits.memory_bytes_max,
        });
    }
    // No frame buffer larger than the screen is ever allocated.
    let frame_limits = Limits {
        memory_bytes_max: screen * 4 + 4096,
        ..*limits
    };
    let mut dec = gif_reader(data, &frame_limits)?;
    let loop_count = browsers_loop_count(dec.repeat());
    let settings = webp::Settings {
        quality: f32::from(profile.webp_quality),
        method: WEBP_METHOD,
        lossless: false,
        // Measured larger on the corpus's animation (37.3% smaller than the GIF
        // against 42.4% with the plain conversion).
        sharp_yuv: false,
    };
    let mut enc = webp::AnimEncoder::new(out_w, out_h, loop_count, settings)?;
    let mut canvas = vec![0u8; screen as usize * 4];
    let (mut at_ms, mut frames) = (0i32, 0u64);
    let mut pixels = Vec::new();
    while let Some(info) = dec.next_frame_info().map_err(gif_error)? {
        let frame = FrameHead::of(info);
        // Checked on the header, before the frame is decoded.
        if frame.area() > screen {
            return Err(ImageError::Corrupt(format!(
                "a {}x{} frame on a {width}x{height} screen",
                frame.width, frame.height
            )));
        }
        frames += 1;
        if frames > FRAMES_MAX || frames.saturating_mul(screen) > limits.animation_pixels_max {
            return Err(ImageError::TooManyPixels {
                width,
                height,
                max: limits.animation_pixels_max,
            });
        }
        in_time(started, limits)?;
        pixels.clear();
        pixels.resize(frame.area() as usize * 4, 0);
        dec.read_into_buffer(&mut pixels).map_err(gif_error)?;
        let before = (frame.dispose == DisposalMethod::Previous).then(|| canvas.clone());
        let rect = Area::of(&frame, width, height);
        draw(&mut canvas, width, &pixels, &frame, &rect);
        let mut shown = fit(
            Pixels {
                width,
                height,
                channels: 4,
                data: canvas.clone(),
            },
            profile.max_edge,
        )?;
        if profile.grayscale {
            gray_in_place(&mut shown.data);
        }
        enc.add(&shown.data, at_ms)?;
        at_ms = at_ms.saturating_add(delay_ms(frame.delay));
        match (frame.dispose, before) {
            (DisposalMethod::Background, _) => clear(&mut canvas, width, &rect),
            (DisposalMethod::Previous, Some(b)) => canvas = b,
            _ => {}
        }
    }
    if frames < 2 {
        return Err(ImageError::Unsupported);
    }
    in_time(started, limits)?;
    let bytes = enc.finish(at_ms)?;
    Ok(Distilled {
        bytes,
        content_type: "image/webp",
        width: out_w,
        height: out_h,
    })
}

/// The WebP loop count for a GIF's: browsers play a GIF without a loop extension once,
/// and one whose extension says n, n + 1 times (WebP counts plays; 0 is forever).
fn browsers_loop_count(repeat: gif::Repeat) -> u16 {
    match repeat {
        gif::Repeat::Infinite => 0,
        gif::Repeat::Finite(0) => 1,
        gif::Repeat::Finite(n) => n.saturating_add(1),
    }
}

/// How long a frame is shown, as a browser shows it.
fn delay_ms(delay: u16) -> i32 {
    let ms = i32::from(delay) * 10;
    if ms < SHORTEST_DELAY_MS {
        BROWSER_DELAY_MS
    } else {
        ms
    }
}

/// The size `fit` gives a `width` x `height` image for `max_edge`.
fn fitted(width: u32, height: u32, max_edge: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_edge || max_edge == 0 {
        return (width, height);
    }
    let scale = f64::from(max_edge) / f64::from(long);
    let w = ((f64::from(width) * scale).round() as u32).max(1);
    let h = ((f64::from(height) * scale).round() as u32).max(1);
    (w, h)
}

/// What a frame's header says.
struct FrameHead {
    left: u16,
    top: u16,
    width: u16,
    height: u16,
    delay: u16,
    dispose: DisposalMethod,
}

impl FrameHead {
    fn of(f: &gif::Frame<'_>) -> FrameHead {
        FrameHead {
            left: f.left,
            top: f.top,
            width: f.width,
            height: f.height,
            delay: f.delay,
            dispose: f.dispose,
        }
    }

    fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// The part of a frame that falls on the screen.
struct Area {
    left: usize,
    top: usize,
    width: usize,
    height: usize,
}

impl Area {
    fn of(frame: &FrameHead, width: u32, height: u32) -> Area {
        let (left, top) = (usize::from(frame.left), usize::from(frame.top));
        Area {
            left,
            top,
            width: usize::from(frame.width).min((width as usize).saturating_sub(left)),
            height: usize::from(frame.height).min((height as usize).saturating_sub(top)),
        }
    }
}

/// Paints the frame's opaque pixels (a GIF pixel is opaque or transparent) onto the
/// screen.
fn draw(canvas: &mut [u8], width: u32, pixels: &[u8], frame: &FrameHead, a: &Area) {
    let frame_w = usize::from(frame.width);
    for y in 0..a.height {
        let src_row = (y * frame_w) * 4;
        let dst_row = ((a.top + y) * width as usize + a.left) * 4;
        for x in 0..a.width {
            let (s, d) = (src_row + x * 4, dst_row + x * 4);
            let (Some(px), Some(dst)) = (pixels.get(s..s + 4), canvas.get_mut(d..d + 4)) else {
                return;
            };
            if px[3] != 0 {
                dst.copy_from_slice(px);
            }
        }
    }
}

/// Disposal to background: browsers clear the frame's area to transparent.
fn clear(canvas: &mut [u8], width: u32, a: &Area) {
    for y in 0..a.height {
        let start = ((a.top + y) * width as usize + a.left) * 4;
        if let Some(row) = canvas.get_mut(start..start + a.width * 4) {
            row.fill(0);
        }
    }
}

fn gray_in_place(rgba: &mut [u8]) {
    for px in rgba.chunks_exact_mut(4) {
        let l = (u32::from(px[0]) * 299 + u32::from(px[1]) * 587 + u32::from(px[2]) * 114) / 1000;
        px[..3].fill(l as u8);
    }
}
