//! The distilld daemon: command line, logging, start-up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use distilld::config::routes::{OriginUrl, Route};
use distilld::config::{Config, ConfigError, IoChoice};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "distilld",
    version,
    about = "HTTP proxy appliance: caches, distills, clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (on the embedded default config unless --config is given).
    Run {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overriding server.listen (port 0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
        /// Reverse-proxy every origin-form request to this origin (http://host:port).
        #[arg(long)]
        origin: Option<String>,
        /// Number of shards (threads), overriding server.workers.
        #[arg(long)]
        workers: Option<usize>,
        /// Network driver: auto, uring or epoll, overriding server.io.
        #[arg(long)]
        io: Option<String>,
    },
    /// Validate a config file, print every error, exit 1 if any.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::from_file(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            listen,
            origin,
            workers,
            io,
        } => match load(config, listen, origin, workers, io) {
            Ok(cfg) => run(cfg),
            Err(e) => {
                eprintln!("distilld: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn load(
    path: Option<PathBuf>,
    listen: Option<String>,
    origin: Option<String>,
    workers: Option<usize>,
    io: Option<String>,
) -> Result<Config, String> {
    let mut cfg = match &path {
        Some(p) => Config::from_file(p),
        None => Config::embedded_default(),
    }
    .map_err(|e: ConfigError| e.to_string())?;
    if let Some(l) = listen {
        cfg.listen = l
            .parse()
            .map_err(|e| format!("--listen {l:?} is not an IP:port address ({e})"))?;
    }
    if let Some(o) = origin {
        let origin = OriginUrl::parse(&o).map_err(|e| format!("--origin: {e}"))?;
        cfg.routes.push(Route {
            host: None,
            path_prefix: "/".into(),
            origin,
            preserve_host: false,
        });
    }
    if let Some(io) = io {
        cfg.io = IoChoice::parse(&io)
            .ok_or_else(|| format!("--io {io:?} is not one of auto, uring, epoll"))?;
    }
    if let Some(w) = workers {
        if w == 0 || w > 1024 {
            return Err(format!("--workers {w} is outside 1..=1024"));
        }
        cfg.workers = w;
    }
    Ok(cfg)
}

fn run(cfg: Config) -> ExitCode {
    let _guard = init_logging(&cfg);
    raise_fd_limit();
    if !cfg.transparent_huge_pages {
        refuse_huge_pages();
    }
    return_freed_memory_at_once();
    let running = match distilld::shard::start(Arc::new(cfg)) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("distilld: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests wait for this line to learn the bound address.
    println!(
        "distilld listening on {} ({})",
        running.local_addr,
        running.driver.name()
    );
    running.join();
    ExitCode::SUCCESS
}

/// Logs go to stderr through a writer thread, so a slow terminal or journal never
/// blocks a shard.
fn init_logging(cfg: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stderr());
    let mut filter = tracing_subscriber::EnvFilter::new(&cfg.log_level);
    if !cfg.access_log
        && let Ok(d) = "access=off".parse()
    {
        filter = filter.add_directive(d);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_target(true)
        .init();
    guard
}

/// The allocator asks for transparent huge pages; then a 2 MiB page stays resident
/// while any byte of it is used, and the node's memory no longer follows its limits.
fn refuse_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::warn!(
            "could not turn transparent huge pages off: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// mimalloc returns freed pages to the system a second after they empty, and only when
/// the thread that owns them allocates again: an idle shard keeps what a burst freed.
/// Purging at once keeps the node's resident memory at what it uses (measured: 200
/// stalled clients, 225 vs 138 MiB). MIMALLOC_PURGE_DELAY, when set, still decides.
fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // The option's number in mimalloc 3's `mi_option_e` (the crate names no constant).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one allocator option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
}

/// Each connection is a descriptor (two when proxied): lift the soft limit to the hard.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open-files limit");
            }
        }
    }
}
