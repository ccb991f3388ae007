//! The cache's budget bounds the node's memory once images are distilled: every corpus
//! image under every profile, several times over, through a cache smaller than all
//! the variants (so they are stored, evicted and made again), with resident memory
//! read from /proc during and after.

mod common;

use std::time::Duration;

use common::{Mode, Setup, corpus_dir, rss};

on_both_drivers!(distilling_the_corpus_stays_within_the_cache_budget);

const MIB: u64 = 1 << 20;
const CACHE: u64 = 16 * MIB;
/// What the node holds besides the cache: code, shard buffers, the allocator's own,
/// one distillation job at a time per pool thread and shard.
const OVERHEAD: u64 = 48 * MIB;

fn distilling_the_corpus_stays_within_the_cache_budget() {
    let config = format!("[cache]\nmemory_bytes = {CACHE}\n");
    let s = Setup::with(Mode::Forward, &config, &[]);
    let pid = s.proxy.pid();
    let mut images: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("test corpus")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| [".jpg", ".png", ".gif"].iter().any(|x| n.ends_with(x)))
        .collect();
    images.sort();
    assert!(images.len() >= 20, "{} images", images.len());
    let profiles = [
        "Save-Data: on",                  // medium
        "ECT: 2g",                        // aggressive
        "Cookie: distilld_profile=light", // light
    ];
    let (start, _) = rss(pid);
    assert!(start > 0, "distilld is not running");
    let (mut peak, mut distilled) = (0, 0);
    for _ in 0..3 {
        for name in &images {
            for hint in profiles {
                let mut c = s.client();
                c.send(s.head("GET", &format!("/{name}"), &[hint]).as_bytes());
                let r = c.response(false);
                assert_eq!(r.status, 200, "{name} {hint}");
                distilled += usize::from(r.has("x-distill"));
                peak = peak.max(rss(pid).1); // VmHWM: the peak between samples too
            }
        }
    }
    assert!(
        distilled > images.len(),
        "only {distilled} responses were distilled"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (after, _) = rss(pid);
    let bound = start + CACHE + OVERHEAD;
    assert!(
        peak < bound && after < bound,
        "resident {} MiB at the peak, {} MiB after; started at {} MiB, bound {} MiB",
        peak / MIB,
        after / MIB,
        start / MIB,
        bound / MIB
    );
}
