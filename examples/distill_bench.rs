//! distilld's image path on files, for bench/run.sh distill-vs-vips: for each file,
//! distils it `--iters` times with the given long edge and JPEG quality and prints one
//! JSON line (input pixels, best and median time, output bytes and size); with `--out
//! DIR` the output is written there for the quality comparison; `--webp` makes what a
//! client that accepts WebP gets (`--webp-sharp-yuv`: with the sharp conversion); `--reference DIR` writes the unencoded pixels each is
//! made from as `NAME.ref.png`, for scoring; `--jpeg-variant TABLES[+progressive]` times
//! only the JPEG encoding of those pixels with other quantisation tables or progressive.

use std::time::{Duration, Instant};

use distilld::distill::image::decode::decode;
use distilld::distill::image::encode::{JpegVariant, Tables, jpeg_with};
use distilld::distill::image::{Limits, Output, Pixels, reference, transcode_to};
use distilld::distill::profile::builtin;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut max_edge, mut quality, mut iters, mut out) = (1024u32, 65u8, 5usize, None);
    let mut sharp_yuv = false;
    let mut files = Vec::new();
    let mut output = Output::Classic;
    let mut references = None;
    let mut variant = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-edge" => max_edge = args.next().and_then(|v| v.parse().ok()).unwrap_or(max_edge),
            "--quality" => quality = args.next().and_then(|v| v.parse().ok()).unwrap_or(quality),
            "--iters" => iters = args.next().and_then(|v| v.parse().ok()).unwrap_or(iters),
            "--out" => out = args.next(),
            "--webp" => output = Output::Webp,
            "--reference" => references = args.next(),
            "--jpeg-variant" => variant = args.next().and_then(|v| jpeg_variant(&v)),
            "--webp-sharp-yuv" => sharp_yuv = true,
            _ => files.push(a),
        }
    }
    let mut profile = builtin()[2].clone();
    profile.max_edge = max_edge;
    profile.quality = quality;
    profile.webp_quality = quality;
    profile.webp_sharp_yuv = sharp_yuv;
    let limits = Limits {
        input_bytes_max: 256 << 20,
        pixels_max: 100_000_000,
        memory_bytes_max: 2 << 30,
        jpeg_scans_max: 1000,
        animation_pixels_max: 100_000_000,
        time_max: Duration::from_secs(120),
    };
    for path in files {
        let data = std::fs::read(&path).unwrap_or_default();
        let name = std::path::Path::new(&path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let input_pixels = decode(&data, &limits)
            .map(|d| u64::from(d.pixels.width) * u64::from(d.pixels.height))
            .unwrap_or(0);
        if let Some(dir) = &references
            && let Ok(p) = reference(&data, &profile, &limits)
        {
            write_png(&p, &format!("{dir}/{name}.ref.png"));
        }
        if let Some(v) = variant {
            encode_only(&data, &name, &profile, &limits, v, iters, out.as_deref());
            continue;
        }
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..iters.max(1) {
            let t = Instant::now();
            let r = transcode_to(&data, &profile, &limits, output);
            times.push(t.elapsed().as_secs_f64());
            last = Some(r);
        }
        times.sort_by(f64::total_cmp);
        match last {
            Some(Ok(o)) => {
                if let Some(dir) = &out {
                    let ext = match o.content_type {
                        "image/png" => "png",
                        "image/webp" => "webp",
                        _ => "jpg",
                    };
                    let _ = std::fs::write(format!("{dir}/{name}.distilld.{ext}"), &o.bytes);
                }
                println!(
                    "{{\"file\":\"{name}\",\"input_bytes\":{},\"input_pixels\":{input_pixels},\"best_s\":{},\"median_s\":{},\"output_bytes\":{},\"width\":{},\"height\":{},\"type\":\"{}\"}}",
                    data.len(),
                    times[0],
                    times[times.len() / 2],
                    o.bytes.len(),
                    o.width,
                    o.height,
                    o.content_type
                );
            }
            Some(Err(e)) => println!("{{\"file\":\"{name}\",\"error\":\"{e}\"}}"),
            None => {}
        }
    }
}

/// The reference pixels as a lossless PNG (for the perceptual scorer).
fn write_png(p: &Pixels, path: &str) {
    let color = match p.channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        _ => png::ColorType::Rgba,
    };
    let Ok(file) = std::fs::File::create(path) else {
        return;
    };
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), p.width, p.height);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    if let Ok(mut w) = enc.write_header() {
        let _ = w.write_image_data(&p.data);
    }
}

/// `annexk`, `robidoux`, `msssim` or `psnrhvs`, with `+progressive` for progressive.
fn jpeg_variant(v: &str) -> Option<JpegVariant> {
    let (name, progressive) = match v.strip_suffix("+progressive") {
        Some(n) => (n, true),
        None => (v, false),
    };
    let tables = match name {
        "annexk" => Tables::AnnexK,
        "robidoux" => Tables::Robidoux,
        "msssim" => Tables::MsSsim,
        "psnrhvs" => Tables::PsnrHvs,
        _ => return None,
    };
    Some(JpegVariant {
        progressive,
        tables,
    })
}

/// Only the JPEG encoding of an opaque image's prepared pixels, `iters` times: one
/// JSON line with the encode time (output megapixels) and bytes.
fn encode_only(
    data: &[u8],
    name: &str,
    profile: &distilld::distill::Profile,
    limits: &Limits,
    v: JpegVariant,
    iters: usize,
    out: Option<&str>,
) {
    let Ok(p) = reference(data, profile, limits) else {
        return;
    };
    if p.channels == 2 || p.channels == 4 {
        return; // transparent: never JPEG
    }
    let mut times = Vec::new();
    let mut made = Vec::new();
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        made = jpeg_with(&p, profile.quality, v).unwrap_or_default();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    if let Some(dir) = out {
        let _ = std::fs::write(format!("{dir}/{name}.distilld.jpg"), &made);
    }
    println!(
        "{{\"file\":\"{name}\",\"input_bytes\":{},\"input_pixels\":{},\"best_s\":{},\"median_s\":{},\"output_bytes\":{},\"width\":{},\"height\":{},\"type\":\"image/jpeg\"}}",
        data.len(),
        u64::from(p.width) * u64::from(p.height),
        times[0],
        times[times.len() / 2],
        made.len(),
        p.width,
        p.height
    );
}
