//! What a run measured: per-thread tallies merged at the end, printed as text and JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

/// Latencies are recorded in microseconds, up to an hour, three significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Errors {
    pub connect: u64,
    pub timeout: u64,
    pub read: u64,
    pub parse: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.read + self.parse
    }
}

#[derive(Debug, Clone)]
pub struct Tally {
    pub latency_us: Histogram<u64>,
    pub statuses: Vec<u64>,
    pub errors: Errors,
    pub completed: u64,
    pub bytes: u64,
    pub cache_lookups: u64,
    pub cache_hits: u64,
    pub distilled: u64,
    pub original_bytes: u64,
    pub distilled_bytes: u64,
    /// Open loop: requests due but never sent (no free connection by the end).
    pub unsent: u64,
    pub connects: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency_us: new_histogram(),
            statuses: vec![0; 1000],
            errors: Errors::default(),
            completed: 0,
            bytes: 0,
            cache_lookups: 0,
            cache_hits: 0,
            distilled: 0,
            original_bytes: 0,
            distilled_bytes: 0,
            unsent: 0,
            connects: 0,
        }
    }
}

impl Tally {
    pub fn merge(&mut self, o: &Tally) {
        let _ = self.latency_us.add(&o.latency_us);
        for (a, b) in self.statuses.iter_mut().zip(&o.statuses) {
            *a += b;
        }
        self.errors.connect += o.errors.connect;
        self.errors.timeout += o.errors.timeout;
        self.errors.read += o.errors.read;
        self.errors.parse += o.errors.parse;
        self.completed += o.completed;
        self.bytes += o.bytes;
        self.cache_lookups += o.cache_lookups;
        self.cache_hits += o.cache_hits;
        self.distilled += o.distilled;
        self.original_bytes += o.original_bytes;
        self.distilled_bytes += o.distilled_bytes;
        self.unsent += o.unsent;
        self.connects += o.connects;
    }
}

/// The run's description, for the report.
pub struct RunInfo {
    pub elapsed: Duration,
    pub threads: usize,
    pub connections: usize,
    pub mode: String,
    pub target_rate: Option<f64>,
}

pub struct Summary {
    pub rps: f64,
    pub shortfall: Option<String>,
}

pub fn summarize(t: &Tally, info: &RunInfo) -> Summary {
    let secs = info.elapsed.as_secs_f64().max(1e-9);
    let rps = t.completed as f64 / secs;
    let shortfall = info.target_rate.and_then(|rate| {
        (rps < rate * 0.95 || t.unsent > 0).then(|| {
            format!(
                "target rate {rate:.0}/s not reached: {rps:.0}/s achieved, {} requests due but never sent \
                 (more connections, or a faster server, are needed)",
                t.unsent
            )
        })
    });
    Summary { rps, shortfall }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn print_text(t: &Tally, info: &RunInfo, s: &Summary) {
    let secs = info.elapsed.as_secs_f64().max(1e-9);
    let h = &t.latency_us;
    println!(
        "distill-load: {:.2} s, {} threads, {} connections, {}",
        secs, info.threads, info.connections, info.mode
    );
    println!(
        "  requests    {} ({:.1}/s), {} errors",
        t.completed,
        s.rps,
        t.errors.total()
    );
    println!(
        "  throughput  {:.2} MB/s ({} bytes received)",
        t.bytes as f64 / secs / 1e6,
        t.bytes
    );
    println!(
        "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
    let statuses: Vec<String> = t
        .statuses
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    println!("  status      {}", statuses.join(", "));
    let e = t.errors;
    println!(
        "  errors      connect {}, timeout {}, read {}, parse {}",
        e.connect, e.timeout, e.read, e.parse
    );
    if t.cache_lookups > 0 {
        println!(
            "  cache       hit ratio {:.1}% ({} of {} with Cache-Status)",
            100.0 * t.cache_hits as f64 / t.cache_lookups as f64,
            t.cache_hits,
            t.cache_lookups
        );
    }
    if t.distilled > 0 {
        println!(
            "  distill     {} responses, {} bytes saved of {}",
            t.distilled,
            t.original_bytes.saturating_sub(t.distilled_bytes),
            t.original_bytes
        );
    }
    if let Some(msg) = &s.shortfall {
        eprintln!("distill-load: warning: {msg}");
    }
}

pub fn to_json(t: &Tally, info: &RunInfo, s: &Summary) -> serde_json::Value {
    let h = &t.latency_us;
    let statuses: serde_json::Map<String, serde_json::Value> = t
        .statuses
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    json!({
        "seconds": info.elapsed.as_secs_f64(),
        "threads": info.threads,
        "connections": info.connections,
        "mode": info.mode,
        "target_rate": info.target_rate,
        "requests": t.completed,
        "requests_per_sec": s.rps,
        "bytes": t.bytes,
        "latency_ms": {
            "p50": ms(h.value_at_quantile(0.5)),
            "p90": ms(h.value_at_quantile(0.9)),
            "p99": ms(h.value_at_quantile(0.99)),
            "p99_9": ms(h.value_at_quantile(0.999)),
            "max": ms(h.max()),
            "mean": h.mean() / 1000.0,
        },
        "status": statuses,
        "errors": {
            "connect": t.errors.connect, "timeout": t.errors.timeout,
            "read": t.errors.read, "parse": t.errors.parse,
        },
        "connects": t.connects,
        "cache": { "lookups": t.cache_lookups, "hits": t.cache_hits },
        "distill": {
            "responses": t.distilled,
            "original_bytes": t.original_bytes,
            "sent_bytes": t.distilled_bytes,
            "saved_bytes": t.original_bytes.saturating_sub(t.distilled_bytes),
        },
        "unsent": t.unsent,
        "shortfall": s.shortfall,
    })
}
