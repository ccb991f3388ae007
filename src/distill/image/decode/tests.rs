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

fn jpegs_under(root: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            jpegs_under(&path, out);
        } else if std::fs::read(&path).is_ok_and(|d| d.starts_with(&[0xFF, 0xD8])) {
            out.push(path);
        }
    }
}

/// Every hostile JPEG, and every cut of a real one, through libjpeg's scaled decode at
/// each scale: an error comes back as None (it unwinds out of the C code and is caught),
/// a result is a whole buffer of the size libjpeg says.
#[test]
fn the_scaled_decode_survives_hostile_and_cut_jpegs() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    jpegs_under(&root.join("tests/data/image-attacks"), &mut files);
    jpegs_under(&root.join("../shared/image-attacks-public"), &mut files);
    assert!(files.len() >= 20, "only {} hostile JPEGs", files.len());
    let mut inputs: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let photo = std::fs::read(root.join("tests/data/corpus/LadyBird.jpg")).unwrap_or_default();
    assert!(photo.len() > 10_000);
    for cut in [2, 100, 600, photo.len() / 3, photo.len() / 2, photo.len() - 2] {
        inputs.push(photo[..cut].to_vec());
    }
    let mut decoded = 0;
    for data in &inputs {
        for target in [1, 8, 64, 300] {
            if let Some(p) = jpeg_scaled_turbo(data, target) {
                let expected = p.width as usize * p.height as usize * usize::from(p.channels);
                assert_eq!(p.data.len(), expected);
                decoded += 1;
            }
        }
    }
    assert!(decoded > 0, "some decode at all");
    // The real photo at a quarter: 2560x1600 -> 640x400.
    let p = jpeg_scaled_turbo(&photo, 600).map(|p| (p.width, p.height, p.channels));
    assert_eq!(p, Some((640, 400, 3)));
}
