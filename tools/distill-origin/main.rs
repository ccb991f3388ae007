//! distill-origin: the bundled origin simulator. Serves a directory with realistic
//! headers (Content-Type, Content-Length, ETag, Last-Modified, Cache-Control,
//! conditional 304s) and synthetic endpoints for tests and benchmarks. A thread per
//! connection keeps it simple and obviously correct; it is a test peer, not the product.

mod endpoints;
mod exchange;
mod files;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "distill-origin",
    version,
    about = "Origin server simulator for distilld tests and benchmarks"
)]
pub struct Options {
    /// Listen address (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory whose files are served (e.g. ../shared/corpus).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Cache-Control sent with files and /bytes.
    #[arg(long, default_value = "public, max-age=60")]
    pub cache_control: String,
    /// Latency added before every response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Bandwidth cap per response body, in kilobytes per second (0 = none).
    #[arg(long, default_value_t = 0)]
    pub rate_kbps: u64,
    /// Keep-alive connections silent this long are closed, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
    /// Connections served at once; further ones are closed at once.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Largest request body read into memory (/echo), in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub echo_bytes_max: usize,
}

/// Counters reported at /stats.
#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub open: AtomicUsize,
}

fn main() -> ExitCode {
    let opts = Arc::new(Options::parse());
    let listener = match TcpListener::bind(opts.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("distill-origin: cannot listen on {}: {e}", opts.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Some(root) = &opts.root
        && !root.is_dir()
    {
        eprintln!(
            "distill-origin: --root {} is not a directory",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    let addr = listener.local_addr().unwrap_or(opts.listen);
    println!("distill-origin listening on {addr}");
    let counters = Arc::new(Counters::default());
    for stream in listener.incoming() {
        match stream {
            Ok(s) => spawn_connection(s, &opts, &counters),
            Err(e) => {
                eprintln!("distill-origin: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    ExitCode::SUCCESS
}

fn spawn_connection(stream: TcpStream, opts: &Arc<Options>, counters: &Arc<Counters>) {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    if counters.open.load(Ordering::Relaxed) >= opts.max_connections {
        return; // dropped: closed at once
    }
    counters.open.fetch_add(1, Ordering::Relaxed);
    let (opts, counters) = (opts.clone(), counters.clone());
    let spawned = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            exchange::serve(stream, &opts, &counters);
            counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        eprintln!("distill-origin: cannot start connection thread: {e}");
    }
}
