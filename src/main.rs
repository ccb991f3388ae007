//! The distilld daemon: command line, logging, start-up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

use distilld::appliance::admin;
use distilld::appliance::logging::Logging;
use distilld::appliance::signals::Signals;
use distilld::appliance::supervise::{Context, supervise};
use distilld::appliance::view::NodeView;
use distilld::config::Config;
use distilld::config::overrides::Source;

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
        /// Admin listener address (metrics, status, health), or "off"; overrides [admin].
        #[arg(long)]
        admin: Option<String>,
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
            admin,
        } => {
            let source = Source {
                path: config,
                listen,
                origin,
                workers,
                io,
                admin,
            };
            match source.load() {
                Ok(cfg) => run(cfg, source),
                Err(e) => {
                    eprintln!("distilld: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(cfg: Config, source: Source) -> ExitCode {
    // Before any thread starts, so that every thread inherits the mask and the signals
    // reach only the supervisor's sigtimedwait.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("distilld: cannot block signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    // What a binary upgrade handed over, read from the environment while this is the
    // only thread.
    let handed = match HandedOver::take() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("distilld: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Read now: a binary upgrade starts this path, which a package upgrade replaces.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let logging = Logging::init(&cfg);
    raise_fd_limit();
    if !cfg.transparent_huge_pages {
        refuse_huge_pages();
    }
    return_freed_memory_at_once();
    // An admin socket handed over to a process whose config turns admin off is closed.
    let admin_handed = handed.admin;
    let admin = match cfg
        .admin
        .map(|a| admin::listener(a, admin_handed))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            let addr = cfg.admin.map_or(String::new(), |a| a.to_string());
            tracing::error!("cannot listen on the admin address {addr}: {e}");
            eprintln!("distilld: cannot listen on the admin address {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_addr: Vec<_> = admin.iter().filter_map(|l| l.local_addr().ok()).collect();
    let running = match distilld::shard::start(Arc::new(cfg), handed.listeners, &admin_addr) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("distilld: {e}");
            return ExitCode::FAILURE;
        }
    };
    let swim = match running.control.config().cluster.as_ref() {
        Some(cluster) => match distilld::cluster::swim::start(cluster) {
            Ok(swim) => swim,
            Err(e) => {
                tracing::error!("cannot start cluster membership (gossip): {e}");
                eprintln!("distilld: cannot start cluster membership (gossip): {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let view = Arc::new(NodeView::new(
        running.control.clone(),
        running.stats.clone(),
        running.cache.clone(),
        running.held.clone(),
        running.driver.name(),
        logging.dropped_counter(),
    ));
    // Scripts and tests wait for this line to learn the bound address.
    say(&format!(
        "distilld listening on {} ({})",
        running.local_addr,
        running.driver.name()
    ));
    let mut admin_copy = None;
    if let Some(listener) = admin {
        let addr = listener
            .local_addr()
            .map_or(String::new(), |a| a.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let copy = listener.try_clone();
        if let Err(e) = copy.and_then(|c| {
            admin_copy = Some((c, stop.clone()));
            admin::spawn(listener, view.clone(), stop)
        }) {
            eprintln!("distilld: cannot start the admin listener: {e}");
            return ExitCode::FAILURE;
        }
        say(&format!("distilld admin on {addr}"));
    }
    let context = Context {
        source,
        logging,
        signals,
        exe,
        args,
        view,
        admin: admin_copy,
        ready_pipe: handed.ready_pipe,
        swim,
    };
    supervise(running, context)
}

/// What the process a binary upgrade replaces hands to this one.
struct HandedOver {
    listeners: Option<Vec<std::net::TcpListener>>,
    admin: Option<std::net::TcpListener>,
    ready_pipe: Option<std::fs::File>,
}

impl HandedOver {
    /// Call before any thread starts: it edits the environment.
    fn take() -> Result<HandedOver, String> {
        Ok(HandedOver {
            listeners: distilld::shard::listener::take_inherited().map_err(|e| e.to_string())?,
            admin: admin::take_inherited()
                .map_err(|e| format!("cannot take over the admin listener: {e}"))?,
            ready_pipe: distilld::appliance::upgrade::take_ready_pipe(),
        })
    }
}

/// A line on stdout, where nobody may be reading any more (the test or script that
/// started the process, or the old process after a binary upgrade): never fatal.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
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
