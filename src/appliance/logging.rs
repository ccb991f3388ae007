//! Logs go to stderr (the journal, under systemd) through a writer thread, so a slow
//! terminal or journal never blocks a shard: one line per event with its level, colour
//! only on a terminal. When the writer falls behind, lines are dropped and counted
//! (`distilld_log_lines_dropped_total`), never waited for. The level can be replaced by
//! a reload. (The access log has its own batched path: `access_log.rs`.)

use std::io::IsTerminal;

use tracing_appender::non_blocking::{ErrorCounter, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::Config;

pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    dropped: ErrorCounter,
    _writer: WorkerGuard,
}

impl Logging {
    pub fn init(cfg: &Config) -> Logging {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .finish(std::io::stderr());
        let dropped = writer.error_counter();
        let (filter, handle) = reload::Layer::new(filter_for(cfg));
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(true);
        tracing_subscriber::registry().with(filter).with(fmt).init();
        Logging {
            filter: handle,
            dropped,
            _writer: guard,
        }
    }

    /// Puts a reloaded config's level in force.
    pub fn apply(&self, cfg: &Config) {
        if let Err(e) = self.filter.reload(filter_for(cfg)) {
            tracing::warn!("could not change the log filter: {e}");
        }
    }

    /// Counts lines dropped because the writer fell behind.
    pub fn dropped_counter(&self) -> ErrorCounter {
        self.dropped.clone()
    }
}

fn filter_for(cfg: &Config) -> EnvFilter {
    EnvFilter::new(&cfg.log_level)
}
