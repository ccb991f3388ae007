//! Distills every image of the shared corpus with a profile and prints, per image, the
//! input and output sizes and the time taken (used while tuning; the benchmark against
//! libvips is bench/run.sh distill-vs-vips).

use std::time::{Duration, Instant};

use distilld::distill::image::{Limits, transcode};
use distilld::distill::profile::builtin;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "medium".into());
    let Some(profile) = builtin().into_iter().find(|p| p.name == name) else {
        eprintln!("no profile {name}");
        std::process::exit(2);
    };
    let limits = Limits {
        input_bytes_max: 64 << 20,
        pixels_max: 50_000_000,
        memory_bytes_max: 512 << 20,
        jpeg_scans_max: 256,
        time_max: Duration::from_secs(60),
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let e = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            matches!(e, "jpg" | "png" | "gif")
        })
        .collect();
    names.sort();
    for path in names {
        let data = std::fs::read(&path).unwrap_or_default();
        let t = Instant::now();
        let r = transcode(&data, &profile, &limits);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match r {
            Ok(o) => println!(
                "{file:45} {:>9} -> {:>8} ({:>5.1}%) {}x{} {} {ms:.1} ms",
                data.len(),
                o.bytes.len(),
                100.0 * o.bytes.len() as f64 / data.len() as f64,
                o.width,
                o.height,
                o.content_type
            ),
            Err(e) => println!("{file:45} {:>9} -> original ({e}) {ms:.1} ms", data.len()),
        }
    }
}
