//! distill-load: the bundled load generator, in the manner of wrk (closed loop) and wrk2
//! (open loop at a constant rate, latency from each request's intended send time),
//! proxy-aware, with HdrHistogram percentiles and a JSON report for scripts.

mod plan;
mod report;
mod worker;
// Shared with the cache-policy simulation (examples/), which draws its trace from it.
#[path = "../zipf.rs"]
mod zipf;

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use plan::{RequestShape, Targets};
use report::{RunInfo, Tally};
use worker::{End, Live, LoopKind, Plan, Worker};

/// The response field a distilling proxy uses to say how big the original was
/// (`original-bytes=N; ...`); distill-load reports the bytes saved from it.
pub const DISTILL_HEADER: &str = "x-distill";

#[derive(Parser, Debug)]
#[command(
    name = "distill-load",
    version,
    about = "HTTP load generator: closed and open loop, proxy-aware"
)]
struct Options {
    /// Connections in all (split over threads).
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    /// Threads, each with its own event loop.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Run for this many seconds (after the warm-up).
    #[arg(short = 'd', long, conflicts_with = "requests")]
    duration: Option<f64>,
    /// Stop after this many requests instead.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Open loop: this many requests per second in all, on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Send absolute-form requests to this forward proxy.
    #[arg(long)]
    proxy: Option<SocketAddr>,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request method.
    #[arg(short = 'm', long, default_value = "GET")]
    method: String,
    /// Request body (sent with Content-Length).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body read from a file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Requests in flight per connection (pipelining depth).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// A new connection for every request.
    #[arg(long)]
    no_keepalive: bool,
    /// File of URLs, one a line (added to those on the command line).
    #[arg(long)]
    urls: Option<PathBuf>,
    /// Pick URLs by Zipf(s) over the list (rank = line order) instead of round robin.
    #[arg(long)]
    zipf: Option<f64>,
    /// Seed for the URL choice, so runs repeat.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds before an unanswered request counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Pin load threads to these cores (e.g. 0 or 0,1); default: no pinning.
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Target URLs (http://host[:port]/path).
    url: Vec<String>,
}

fn main() -> ExitCode {
    let opts = Options::parse();
    match run(opts) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("distill-load: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Options) -> Result<ExitCode, String> {
    let targets = Arc::new(load_targets(&opts)?);
    check_reachable(targets.connect_to)?;
    let threads = opts.threads.max(1);
    let end = check_options(&opts, threads)?;
    // Every thread begins at one instant, a little after now, so that spawning them is
    // not part of the run.
    let start = Instant::now() + Duration::from_millis(20);
    let live: Arc<Vec<Live>> = Arc::new((0..threads).map(|_| Live::default()).collect());
    let handles = spawn_workers(&opts, &targets, end, start, &live)?;
    let measure_from = start + Duration::from_secs_f64(opts.warmup.max(0.0));
    show_progress(&handles, &live, measure_from);
    let total = join_workers(handles)?;
    let elapsed = match end {
        // nothing that completes after the window is counted
        End::After(d) => d,
        End::Count(_) => Instant::now().saturating_duration_since(measure_from),
    };
    write_report(&opts, &total, &run_info(&opts, threads, elapsed))?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses settings that would make a run meaningless before any thread starts, and
/// says when the run ends (ten seconds unless told otherwise).
fn check_options(opts: &Options, threads: usize) -> Result<End, String> {
    if opts.connections < threads {
        return Err(format!(
            "{} connections cannot feed {threads} threads",
            opts.connections
        ));
    }
    if opts.pipeline == 0 || opts.timeout <= 0.0 {
        return Err("--pipeline and --timeout must be positive".into());
    }
    let end = match (opts.duration, opts.requests) {
        (_, Some(n)) => End::Count(n),
        (Some(d), None) if d > 0.0 => End::After(Duration::from_secs_f64(d)),
        (None, None) => End::After(Duration::from_secs(10)),
        (Some(_), None) => return Err("--duration must be positive".into()),
    };
    if let Some(r) = opts.rate
        && !(r > 0.0 && r.is_finite())
    {
        return Err("--rate must be a positive number".into());
    }
    Ok(end)
}

type WorkerHandle = std::thread::JoinHandle<std::io::Result<Tally>>;

/// One load thread per `--threads`, each with its share of the connections.
fn spawn_workers(
    opts: &Options,
    targets: &Arc<Targets>,
    end: End,
    start: Instant,
    live: &Arc<Vec<Live>>,
) -> Result<Vec<WorkerHandle>, String> {
    let threads = live.len();
    let mut handles = Vec::new();
    for t in 0..threads {
        let plan = worker_plan(opts, targets, threads, t, end, start);
        let core = (!opts.cores.is_empty()).then(|| opts.cores[t % opts.cores.len()]);
        let live = live.clone();
        let handle = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                Worker::new(plan).map(|w| w.run(&live[t]))
            })
            .map_err(|e| format!("cannot start thread: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Thread `t`'s part of the run: its share of the connections, of the rate and of a
/// request count, and a seed of its own so the threads do not walk the URLs in step.
fn worker_plan(
    opts: &Options,
    targets: &Arc<Targets>,
    threads: usize,
    t: usize,
    end: End,
    start: Instant,
) -> Plan {
    Plan {
        targets: targets.clone(),
        connections: share(opts.connections, threads, t),
        depth: opts.pipeline,
        keep_alive: !opts.no_keepalive,
        kind: match opts.rate {
            Some(r) => LoopKind::Open {
                interval: Duration::from_secs_f64(threads as f64 / r),
            },
            None => LoopKind::Closed,
        },
        start,
        warmup: Duration::from_secs_f64(opts.warmup.max(0.0)),
        end: match end {
            End::Count(n) => End::Count(share(n as usize, threads, t) as u64),
            e => e,
        },
        timeout: Duration::from_secs_f64(opts.timeout),
        zipf: opts.zipf,
        seed: opts.seed.wrapping_add(t as u64 * 0x9E37),
    }
}

/// Every thread's tally merged; a failed thread fails the run, as its share is missing.
fn join_workers(handles: Vec<WorkerHandle>) -> Result<Tally, String> {
    let mut total = Tally::default();
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => total.merge(&t),
            Ok(Err(e)) => return Err(format!("load thread failed: {e}")),
            Err(_) => return Err("a load thread panicked".into()),
        }
    }
    Ok(total)
}

fn run_info(opts: &Options, threads: usize, elapsed: Duration) -> RunInfo {
    RunInfo {
        elapsed,
        threads,
        connections: opts.connections,
        mode: match opts.rate {
            Some(r) => format!("open loop at {r}/s"),
            None => format!("closed loop, pipeline {}", opts.pipeline),
        },
        target_rate: opts.rate,
    }
}

/// The text report always, and the JSON one too when `--json` names a file.
fn write_report(opts: &Options, total: &Tally, info: &RunInfo) -> Result<(), String> {
    let summary = report::summarize(total, info);
    report::print_text(total, info, &summary);
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&report::to_json(total, info, &summary))
            .map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Part `t` of `n` split over `parts` as evenly as possible.
fn share(n: usize, parts: usize, t: usize) -> usize {
    n / parts + usize::from(t < n % parts)
}

fn load_targets(opts: &Options) -> Result<Targets, String> {
    let mut urls = opts.url.clone();
    if let Some(path) = &opts.urls {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        urls.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    let body = match (&opts.body, &opts.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(p)) => {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
        (None, None) => Vec::new(),
    };
    let shape = RequestShape {
        method: opts.method.clone(),
        headers: opts.headers.clone(),
        body,
        keep_alive: !opts.no_keepalive,
        proxy: opts.proxy,
    };
    plan::build(&urls, &shape).map_err(|e| e.to_string())
}

fn check_reachable(addr: SocketAddr) -> Result<(), String> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map(drop)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// A live line on a terminal: requests/sec, errors, p99 so far.
fn show_progress<T>(handles: &[std::thread::JoinHandle<T>], live: &[Live], measure_from: Instant) {
    let tty = std::io::stderr().is_terminal();
    let mut last = 0u64;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(if tty { 1000 } else { 50 }));
        if !tty || Instant::now() < measure_from {
            continue;
        }
        let done: u64 = live
            .iter()
            .map(|l| l.completed.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let errors: u64 = live
            .iter()
            .map(|l| l.errors.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let p99 = live
            .iter()
            .map(|l| l.p99_us.load(std::sync::atomic::Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        eprint!(
            "\r  {:>10} req/s  {:>6} errors  p99 {:>8.3} ms   ",
            done - last,
            errors,
            p99 as f64 / 1000.0
        );
        last = done;
    }
    if tty {
        eprintln!();
    }
}
