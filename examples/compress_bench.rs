//! distilld's text compression on files, for bench/run.sh text-compression: for each
//! coding and level, the total input and output bytes and the best-of-N compression
//! speed over all files, as JSON lines.

use std::time::Instant;

use distilld::distill::text::compress_at;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut iters = 3;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        if a == "--iters" {
            iters = args.next().and_then(|v| v.parse().ok()).unwrap_or(iters);
        } else {
            files.push(std::fs::read(&a).unwrap_or_default());
        }
    }
    let plan: [(&'static str, &[i32]); 3] = [
        ("zstd", &[1, 3, 6, 9, 12, 19]),
        ("br", &[1, 3, 5, 7, 9, 11]),
        ("gzip", &[1, 3, 6, 9]),
    ];
    let input: usize = files.iter().map(Vec::len).sum();
    for (coding, levels) in plan {
        for &level in levels {
            let mut best = f64::MAX;
            let mut output = 0;
            for _ in 0..iters {
                let t = Instant::now();
                output = files
                    .iter()
                    .map(|f| compress_at(f, coding, level).map_or(f.len(), |c| c.len()))
                    .sum::<usize>();
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{{\"coding\":\"{coding}\",\"level\":{level},\"input\":{input},\"output\":{output},\"seconds\":{best}}}"
            );
        }
    }
}
