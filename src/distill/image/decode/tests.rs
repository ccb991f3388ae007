//! Hostile headers and metadata: refused or ignored before the work they would cause.

use flate2::{Compress, Compression, FlushCompress};

use super::*;

fn limits() -> Limits {
    Limits {
        input_bytes_max: 16 << 20,
        pixels_max: 50_000_000,
        memory_bytes_max: 512 << 20,
        jpeg_scans_max: 256,
        animation_pixels_max: 100_000_000,
        time_max: std::time::Duration::from_secs(10),
    }
}

/// A zlib stream of `mib` MiB of zeros, built from one compressed MiB repeated (a block
/// of zeros that follows zeros decodes the same wherever it stands), so a bomb of
/// hundreds of MiB is made in milliseconds.
fn zeros_zlib(mib: u32) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), true);
    let mut first = Vec::with_capacity(1 << 16);
    let mut next = Vec::with_capacity(1 << 16);
    let _ = c.compress_vec(&zeros, &mut first, FlushCompress::Sync);
    let _ = c.compress_vec(&zeros, &mut next, FlushCompress::Sync);
    let mut out = first;
    for _ in 1..mib {
        out.extend_from_slice(&next);
    }
    // A final empty stored block, then the Adler-32 of that many zeros.
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0xFF, 0xFF]);
    let b = (u64::from(mib) << 20) % 65521;
    out.extend_from_slice(&((b as u32) << 16 | 1).to_be_bytes());
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A valid 1x1 RGB PNG with an iCCP chunk whose profile is `profile_zlib`.
fn png_with_iccp(profile_zlib: &[u8]) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend_from_slice(profile_zlib);
    chunk(&mut png, b"iCCP", &iccp);
    let mut idat = Vec::new();
    let mut c = Compress::new(Compression::fast(), true);
    let _ = c.compress_vec(&[0, 200, 100, 50], &mut idat, FlushCompress::Finish);
    let mut z = Vec::with_capacity(64);
    let _ = Compress::new(Compression::fast(), true).compress_vec(
        &[0, 200, 100, 50],
        &mut z,
        FlushCompress::Finish,
    );
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn the_zlib_bomb_is_what_it_claims() {
    use std::io::Read;
    let z = zeros_zlib(8);
    let mut n = 0u64;
    let mut d = flate2::read::ZlibDecoder::new(&z[..]);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match d.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, 8 << 20);
}

#[test]
fn an_icc_bomb_is_never_inflated_past_the_cap() {
    // 512 MiB of profile in a few hundred KiB of PNG.
    let png = png_with_iccp(&zeros_zlib(512));
    assert!(png.len() < 1 << 20, "{}", png.len());
    assert!(png_icc(&png).is_none());
    // Under a 64 MiB job limit: the decoder must not inflate the chunk itself either.
    let mut tight = limits();
    tight.memory_bytes_max = 64 << 20;
    let (decoded, peak) = crate::peak_alloc::peak_bytes(|| decode(&png, &tight));
    assert!(peak < 16 << 20, "decoding held {peak} bytes at its peak");
    let Ok(d) = decoded else {
        panic!("the image itself is fine: {decoded:?}")
    };
    assert!(d.icc.is_none());
    assert_eq!((d.pixels.width, d.pixels.height), (1, 1));
}

#[test]
fn a_profile_within_the_cap_is_read() {
    let profile: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let mut z = Vec::with_capacity(8000);
    let _ = Compress::new(Compression::fast(), true).compress_vec(
        &profile,
        &mut z,
        FlushCompress::Finish,
    );
    assert_eq!(png_icc(&png_with_iccp(&z)), Some(profile));
    let len = |mib| png_icc(&png_with_iccp(&zeros_zlib(mib))).map(|p| p.len());
    assert_eq!(len(4), Some(ICC_BYTES_MAX), "at the cap");
    assert_eq!(len(5), None, "over it");
}

/// A GIF with a `sw` x `sh` logical screen and one `fw` x `fh` frame at (0, 0) whose
/// LZW data is a clear code and an end code (the rest of the frame stays transparent).
fn gif(sw: u16, sh: u16, fw: u16, fh: u16) -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&sw.to_le_bytes());
    g.extend_from_slice(&sh.to_le_bytes());
    g.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    g.extend_from_slice(b",\0\0\0\0");
    g.extend_from_slice(&fw.to_le_bytes());
    g.extend_from_slice(&fh.to_le_bytes());
    g.extend_from_slice(b"\0\x02\x02\x44\x01\0;");
    g
}

#[test]
fn a_gif_screen_far_larger_than_its_frame_is_not_painted() {
    let tiny = gif(7000, 7000, 1, 1);
    assert!(tiny.len() < 64);
    let (r, peak) = crate::peak_alloc::peak_bytes(|| decode(&tiny, &limits()));
    assert!(peak < 1 << 20, "{peak} bytes for a 1-pixel frame");
    assert!(matches!(r, Err(ImageError::MostlyEmpty { .. })), "{r:?}");
    assert_eq!(work_pixels(&tiny), Some(49_000_000), "goes to the pool");
    // Below the floor a sparse screen is painted as browsers show it.
    let small = decode(&gif(300, 300, 10, 10), &limits());
    let Ok(small) = small else {
        panic!("{small:?}")
    };
    assert_eq!(small.pixels.data.len(), 300 * 300 * 4);
}

#[test]
fn a_gif_frame_larger_than_its_screen_is_decoded_only_where_it_shows() {
    let g = gif(2, 2, 7000, 7000);
    assert_eq!(work_pixels(&g), Some(49_000_000), "goes to the pool");
    let (d, peak) = crate::peak_alloc::peak_bytes(|| decode(&g, &limits()));
    assert!(peak < 1 << 20, "{peak} bytes for a 2x2 screen");
    let Ok(d) = d else { panic!("{d:?}") };
    assert_eq!((d.pixels.width, d.pixels.height), (2, 2));
}

#[test]
fn interlaced_rows_are_placed_in_pass_order() {
    let rect = Rect {
        left: 0,
        top: 0,
        width: 1,
        height: 10,
        interlaced: true,
    };
    let order: Vec<u32> = rect.row_order().collect();
    assert_eq!(order, vec![0, 8, 4, 2, 6, 1, 3, 5, 7, 9]);
}

#[test]
fn a_full_screen_frame_without_pixel_data_is_not_painted() {
    // 5400 x 5400 (29 MP, under pixels_max), the frame declares all of it, its data is
    // a clear code and an end code.
    let g = gif(5400, 5400, 5400, 5400);
    let (r, peak) = crate::peak_alloc::peak_bytes(|| decode(&g, &limits()));
    assert!(matches!(r, Err(ImageError::MostlyEmpty { .. })), "{r:?}");
    assert!(peak < 1 << 20, "{peak} bytes for a frame with no pixels");
}

/// The first frame as the gif crate composes it, placed on a screen-sized canvas.
fn reference(data: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut dec = options.read_info(Cursor::new(data)).ok()?;
    let (w, h) = (usize::from(dec.width()), usize::from(dec.height()));
    let mut canvas = vec![0u8; w * h * 4];
    let f = dec.read_next_frame().ok()??;
    let (fl, ft, fw, fh) = (
        usize::from(f.left),
        usize::from(f.top),
        usize::from(f.width),
        usize::from(f.height),
    );
    for y in 0..fh {
        for x in 0..fw {
            let (cx, cy) = (fl + x, ft + y);
            if cx < w && cy < h {
                let src = (y * fw + x) * 4;
                let dst = (cy * w + cx) * 4;
                canvas[dst..dst + 4].copy_from_slice(&f.buffer[src..src + 4]);
            }
        }
    }
    Some((w as u32, h as u32, canvas))
}

#[test]
fn gif_frames_land_where_the_gif_crate_puts_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).expect("test corpus").flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "gif") {
            continue;
        }
        let data = std::fs::read(&path).expect("fixture");
        let Some((w, h, want)) = reference(&data) else {
            continue;
        };
        let Ok(d) = decode(&data, &limits()) else {
            panic!("{}: does not decode", path.display())
        };
        assert_eq!(
            (d.pixels.width, d.pixels.height),
            (w, h),
            "{}",
            path.display()
        );
        assert!(d.pixels.data == want, "{}: pixels differ", path.display());
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} GIFs checked");
}

/// An interlaced frame, offset and partly off the screen, with a pattern in every pixel.
fn interlaced_offset_gif() -> Vec<u8> {
    let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, 40, 30, &palette).expect("encoder");
        let (w, h) = (25u16, 22u16);
        let indices: Vec<u8> = (0..u32::from(w) * u32::from(h))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let frame = gif::Frame {
            left: 27,
            top: 11,
            width: w,
            height: h,
            interlaced: true,
            buffer: std::borrow::Cow::Owned(indices),
            ..gif::Frame::default()
        };
        enc.write_frame(&frame).expect("frame");
    }
    out
}

#[test]
fn an_interlaced_offset_frame_lands_where_the_gif_crate_puts_it() {
    let data = interlaced_offset_gif();
    let Some((w, h, want)) = reference(&data) else {
        panic!("the gif crate reads its own file")
    };
    let Ok(d) = decode(&data, &limits()) else {
        panic!("does not decode")
    };
    assert_eq!((d.pixels.width, d.pixels.height), (w, h));
    assert!(d.pixels.data == want, "pixels differ");
    assert!(want.iter().any(|&b| b != 0), "the frame shows");
}

fn jpegs_under(root: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            jpegs_under(&path, out);
        } else if let Ok(d) = std::fs::read(&path)
            && d.starts_with(&[0xFF, 0xD8])
        {
            out.push(d);
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::read(root.join("tests/data").join(name)).unwrap_or_default()
}

/// The header as the checks read it (zune-jpeg), for a direct call of the scaled path.
fn zune_header(data: &[u8]) -> Option<JpegHeader> {
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), jpeg_options(&limits()));
    JpegHeader::read(&mut dec).ok()
}

/// Every hostile JPEG, and every cut of a real one, through the decode at each target:
/// an error is an Err or a full decode (libjpeg's unwinds out of the C code and is
/// caught), never a panic, and a result is a whole buffer.
#[test]
fn the_scaled_decode_survives_hostile_and_cut_jpegs() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    jpegs_under(&root.join("tests/data/image-attacks"), &mut inputs);
    assert!(inputs.len() >= 12, "only {} hostile JPEGs", inputs.len());
    // The whole public set when it is beside the repository (a clean clone has not).
    jpegs_under(&root.join("../shared/image-attacks-public"), &mut inputs);
    for photo in [
        fixture("corpus/LadyBird.jpg"),
        fixture("corpus/GreenMeadow.jpg"),
    ] {
        assert!(photo.len() > 10_000);
        for cut in [
            2,
            100,
            600,
            photo.len() / 3,
            photo.len() / 2,
            photo.len() - 2,
        ] {
            inputs.push(photo[..cut].to_vec());
        }
    }
    for data in &inputs {
        for target in [1, 8, 64, 300, 700] {
            if let Ok(d) = decode_for(data, &limits(), Some(target)) {
                let p = &d.pixels;
                let n = p.width as usize * p.height as usize * usize::from(p.channels);
                assert_eq!(p.data.len(), n);
            }
        }
    }
}

/// Mean level of each channel.
fn means(p: &Pixels) -> Vec<f64> {
    let c = usize::from(p.channels);
    (0..c)
        .map(|k| {
            let sum: u64 = p
                .data
                .iter()
                .skip(k)
                .step_by(c)
                .map(|&v| u64::from(v))
                .sum();
            sum as f64 / (p.data.len() / c) as f64
        })
        .collect()
}

/// Progressive colour at 1/2 and whole, baseline at 1/4, gray at 1/8: the size libjpeg says,
/// the channels asked for, and the same picture as the full decode (mean levels within
/// one step).
#[test]
fn the_scaled_decode_is_the_full_picture_smaller() {
    let gray = {
        let (w, h) = (1600u16, 1000u16);
        let px: Vec<u8> = (0..u32::from(w) * u32::from(h))
            .map(|i| ((i % u32::from(w)) * 255 / u32::from(w)) as u8)
            .collect();
        let mut out = Vec::new();
        let enc = jpeg_encoder::Encoder::new(&mut out, 90);
        assert!(enc.encode(&px, w, h, jpeg_encoder::ColorType::Luma).is_ok());
        out
    };
    let progressive = fixture("corpus/GreenMeadow.jpg"); // 1280x1024, 10 scans
    let baseline = fixture("corpus/LadyBird.jpg"); // 2560x1600
    for (data, target, want) in [
        (&progressive, 640, (640, 512, 3)),
        (&baseline, 600, (640, 400, 3)),
        (&gray, 150, (200, 125, 1)),
        (&progressive, 1500, (1280, 1024, 3)),
    ] {
        let Some(header) = zune_header(data) else {
            panic!("no header")
        };
        let scaled = jpeg_scaled_turbo(data, &header, &limits(), target);
        let Some(scaled) = scaled else {
            panic!("no scaled decode for {want:?}")
        };
        assert_eq!((scaled.width, scaled.height, scaled.channels), want);
        let Ok(full) = decode(data, &limits()) else {
            panic!("no full decode")
        };
        for (a, b) in means(&scaled).iter().zip(means(&full.pixels)) {
            assert!((a - b).abs() < 1.0, "mean level {a} against {b}");
        }
        if (scaled.width, scaled.height) == (full.pixels.width, full.pixels.height) {
            let error = crate::distill::image::tests::mean_error(&scaled.data, &full.pixels.data);
            assert!(
                error < 1.5,
                "libjpeg and zune-jpeg differ by {error} levels"
            );
        }
    }
}

/// With a target, every YCbCr JPEG is decoded by libjpeg, scaled or not: the result is
/// libjpeg's, byte for byte.
#[test]
fn a_jpeg_with_a_target_is_decoded_by_libjpeg() {
    for (name, target) in [
        ("corpus/GreenMeadow.jpg", 1000), // progressive, under twice the target
        ("corpus/GreenMeadow.jpg", 4000), // larger than the image
        ("corpus/LadyBird.jpg", 1000),    // baseline, 1/2
    ] {
        let data = fixture(name);
        let Some(header) = zune_header(&data) else {
            panic!("no header")
        };
        let Some(turbo) = jpeg_scaled_turbo(&data, &header, &limits(), target) else {
            panic!("{name}: no libjpeg decode")
        };
        let Ok(decoded) = decode_for(&data, &limits(), Some(target)) else {
            panic!("{name}: no decode")
        };
        assert_eq!(
            (decoded.pixels.width, decoded.pixels.height),
            (turbo.width, turbo.height),
            "{name} at {target}"
        );
        assert!(decoded.pixels.data == turbo.data, "{name} at {target}");
    }
}

/// zune-jpeg keeps a progressive file's coefficients: a full decode that fits the pixel
/// buffers but not them is refused; a baseline file with the same room is decoded.
#[test]
fn a_progressive_full_decode_counts_its_coefficients() {
    let progressive = fixture("corpus/GreenMeadow.jpg"); // 1280x1024, 3 components
    let pixel_buffers = 1280 * 1024 * 3 * 2;
    let mut tight = limits();
    tight.input_bytes_max = 0;
    tight.memory_bytes_max = pixel_buffers + 1_000_000;
    assert!(matches!(
        decode(&progressive, &tight),
        Err(ImageError::TooMuchMemory { .. })
    ));
    tight.memory_bytes_max = pixel_buffers + 9_000_000;
    assert!(decode(&progressive, &tight).is_ok());
    let baseline = fixture("corpus/LadyBird.jpg"); // 2560x1600
    tight.memory_bytes_max = 2560 * 1600 * 3 * 2 + 1_000_000;
    assert!(decode(&baseline, &tight).is_ok());
}

/// A file that shows libjpeg a frame zune-jpeg skips: an RST marker (no length for
/// libjpeg) whose "length" hides another frame, with its tables and scan header, from
/// zune. The checks passed on the small frame; libjpeg's is never decoded, whether it
/// would fit the limits or not.
fn with_hidden_frame(photo: &[u8], (w, h): (u16, u16)) -> Vec<u8> {
    let mut hidden = Vec::new();
    let mut at = 2;
    while at + 4 <= photo.len() && photo[at] == 0xFF {
        let marker = photo[at + 1];
        let len = usize::from(u16::from_be_bytes([photo[at + 2], photo[at + 3]]));
        let mut segment = photo[at..at + 2 + len].to_vec();
        if marker == 0xC0 {
            segment[5..7].copy_from_slice(&h.to_be_bytes());
            segment[7..9].copy_from_slice(&w.to_be_bytes());
        }
        if matches!(marker, 0xC0 | 0xC4 | 0xDB | 0xDA) {
            hidden.extend_from_slice(&segment);
        }
        if marker == 0xDA {
            break;
        }
        at += 2 + len;
    }
    hidden.extend_from_slice(&[0u8; 64]); // a little entropy-coded data
    let mut crafted = vec![0xFF, 0xD8, 0xFF, 0xD0];
    crafted.extend_from_slice(&u16::try_from(hidden.len() + 2).unwrap_or(0).to_be_bytes());
    crafted.extend_from_slice(&hidden);
    crafted.extend_from_slice(&photo[2..]);
    crafted
}

#[test]
fn a_frame_only_libjpeg_sees_is_never_decoded() {
    let photo = fixture("corpus/LadyBird.jpg");
    let plain = std::panic::catch_unwind(|| {
        let header = zune_header(&photo)?;
        let dec = mozjpeg::Decompress::new_mem(&photo).ok()?;
        Some(same_frame(&dec, &header))
    });
    assert!(
        matches!(plain, Ok(Some(true))),
        "an ordinary file is one frame to both"
    );
    for size in [(4000, 2500), (65_000, 65_000)] {
        let crafted = with_hidden_frame(&photo, size);
        let Some(header) = zune_header(&crafted) else {
            panic!("zune reads the small frame")
        };
        assert_eq!((header.width, header.height), (2560, 1600));
        let libjpeg_sees = std::panic::catch_unwind(|| {
            mozjpeg::Decompress::new_mem(&crafted).map(|d| (d.size(), same_frame(&d, &header)))
        });
        let hidden = (usize::from(size.0), usize::from(size.1));
        assert!(
            matches!(libjpeg_sees, Ok(Ok((seen, false))) if seen == hidden),
            "libjpeg reads the hidden frame, and it is told apart"
        );
        assert!(
            jpeg_scaled_turbo(&crafted, &header, &limits(), 600).is_none(),
            "{size:?}"
        );
        // Through the whole decode: the small picture, or an error.
        if let Ok(d) = decode_for(&crafted, &limits(), Some(600)) {
            assert!(
                d.pixels.width <= 2560 && d.pixels.height <= 1600,
                "{size:?}"
            );
        }
    }
}

/// A frame within the limits as read, whose coefficients (kept whole for a progressive
/// or multi-scan file) and output would not be: not decoded by libjpeg.
#[test]
fn the_scaled_decode_keeps_to_the_memory_limit() {
    let photo = fixture("corpus/GreenMeadow.jpg");
    let Some(header) = zune_header(&photo) else {
        panic!("no header")
    };
    let mut tight = limits();
    tight.input_bytes_max = 0;
    // 1280x1024, 4:2:0: about 3.9 MB of coefficients and 1.3 MB of output at 1/2.
    tight.memory_bytes_max = 4_000_000;
    assert!(jpeg_scaled_turbo(&photo, &header, &tight, 640).is_none());
    tight.memory_bytes_max = 8_000_000;
    assert!(jpeg_scaled_turbo(&photo, &header, &tight, 640).is_some());
    // At full size: the same 4.04 MB of coefficients and 3.93 MB of output.
    tight.memory_bytes_max = 7_900_000;
    assert!(jpeg_scaled_turbo(&photo, &header, &tight, 2000).is_none());
    tight.memory_bytes_max = 8_100_000;
    assert!(jpeg_scaled_turbo(&photo, &header, &tight, 2000).is_some());
}
