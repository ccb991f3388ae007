//! Hit ratio of the cache's admission/eviction policy (S3-FIFO) against plain LRU on a
//! Zipf trace — the cache issue's policy benchmark. Run through `bench/run.sh cache-policy`.
//!
//! usage: cache_policy [REQUESTS] [OBJECTS] [ZIPF_S] [BUDGET_PERCENT] [SEEDS]

#[path = "../tools/zipf.rs"]
mod zipf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: f64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (requests, objects, s, budget, seeds) = (
        arg(0, 1_000_000.0) as usize,
        arg(1, 100_000.0) as usize,
        arg(2, 0.9),
        arg(3, 10.0) as u64,
        arg(4, 3.0) as u64,
    );
    println!("{requests} requests, {objects} objects, Zipf({s}), budget {budget}% of the objects");
    println!(
        "{:>6} {:>10} {:>10} {:>10}",
        "seed", "s3fifo", "lru", "gain pp"
    );
    let mut gains = Vec::new();
    for seed in 1..=seeds {
        let object_bytes = 10 * 1024;
        let zipf = zipf::Zipf::new(objects, s);
        let mut rng = zipf::Rng::new(seed);
        // Rank order shuffled by a multiplicative hash so popularity is not key order.
        let trace = (0..requests)
            .map(|_| (zipf.sample(&mut rng) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let capacity = objects as u64 * object_bytes * budget / 100;
        let (s3, lru) = distilld::cache::s3fifo::simulate(trace, capacity, object_bytes);
        let gain = 100.0 * (s3 - lru);
        gains.push(gain);
        println!(
            "{seed:>6} {:>9.2}% {:>9.2}% {gain:>10.2}",
            100.0 * s3,
            100.0 * lru
        );
    }
    let min = gains.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = gains.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    println!("gain over LRU: {min:.2} to {max:.2} percentage points");
}
