//! `distill-quality REF DISTORTED [REF DISTORTED ...]`: one line per pair, the
//! SSIMULACRA2 score of DISTORTED against REF (100 = identical; about 90 "visually
//! lossless", 70 "high", 50 "medium" quality). Both are decoded (PNG, JPEG, WebP) and
//! an image with transparency is composited over mid-gray first, the same for both, as
//! the metric scores colour only. A pair that cannot be scored prints `error`.

use ssimulacra2::{ColorPrimaries, Rgb, TransferCharacteristic, compute_frame_ssimulacra2};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [reference, distorted] = pair else {
            eprintln!("an odd number of files");
            std::process::exit(2);
        };
        match score(reference, distorted) {
            Ok(s) => println!("{distorted}\t{s:.3}"),
            Err(e) => println!("{distorted}\terror: {e}"),
        }
    }
}

fn score(reference: &str, distorted: &str) -> Result<f64, String> {
    let a = load(reference)?;
    let b = load(distorted)?;
    if (a.width, a.height) != (b.width, b.height) {
        return Err(format!(
            "sizes differ: {}x{} and {}x{}",
            a.width, a.height, b.width, b.height
        ));
    }
    compute_frame_ssimulacra2(a.rgb, b.rgb).map_err(|e| format!("{e:?}"))
}

struct Loaded {
    width: u32,
    height: u32,
    rgb: Rgb,
}

fn load(path: &str) -> Result<Loaded, String> {
    let img = image::open(path).map_err(|e| format!("{path}: {e}"))?.into_rgba8();
    let (width, height) = img.dimensions();
    let data: Vec<[f32; 3]> = img
        .pixels()
        .map(|p| {
            let a = f32::from(p[3]) / 255.0;
            let c = |v: u8| (f32::from(v) / 255.0) * a + 0.5 * (1.0 - a);
            [c(p[0]), c(p[1]), c(p[2])]
        })
        .collect();
    let rgb = Rgb::new(
        data,
        width as usize,
        height as usize,
        TransferCharacteristic::SRGB,
        ColorPrimaries::BT709,
    )
    .map_err(|e| format!("{path}: {e:?}"))?;
    Ok(Loaded { width, height, rgb })
}
