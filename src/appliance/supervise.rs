//! The supervisor: the main thread's loop once the shards run. It takes the signals,
//! keeps systemd informed (READY, STATUS, WATCHDOG, RELOADING, STOPPING), reloads the
//! config, starts a binary upgrade, drains on a stop, and ends the process when a shard
//! fails: a node is never left half alive.
//!
//! A shard that panics or whose loop fails ends the process with status 70 and a line
//! naming the shard and the cause; systemd's `Restart=on-failure` starts it again. It
//! is not restarted in place: its connections, flights and jobs are in an unknown
//! state, and a clean start is the one state known to be right.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::config::overrides::Source;
use crate::shard::Running;
use crate::shard::control::Drain;

use super::logging::Logging;
use super::notify::{Notifier, monotonic_usec, watchdog_interval};
use super::signals::{Signal, Signals};
use super::upgrade::{Progress, Upgrade};
use super::view::NodeView;

/// Exit status when a shard failed (EX_SOFTWARE).
const SHARD_FAILED: u8 = 70;
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// What the supervisor needs besides the running shards.
pub struct Context {
    pub source: Source,
    pub logging: Logging,
    pub signals: Signals,
    /// The binary and arguments a binary upgrade starts (the path, not this process's
    /// image: after a package upgrade the path names the new binary).
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    pub view: Arc<NodeView>,
    /// A copy of the admin listener, for an upgrade to hand over, and the switch that
    /// stops this process's admin thread once it has.
    pub admin: Option<(std::net::TcpListener, Arc<AtomicBool>)>,
    /// In a process a binary upgrade started: the pipe to the old one.
    pub ready_pipe: Option<std::fs::File>,
    /// Cluster membership, when this node gossips.
    pub swim: Option<crate::cluster::swim::Swim>,
}

struct Supervisor {
    running: Running,
    ctx: Context,
    notifier: Option<Notifier>,
    watchdog: Option<Duration>,
    last_ping: Instant,
    last_status: Instant,
    last_sample: Instant,
    /// Set once the node drains: when it must be over.
    deadline: Option<Instant>,
    upgrade: Option<Upgrade>,
    /// A new process is the service's main process now: this one says nothing more
    /// to systemd.
    handed_over: bool,
    /// A stop signal came (a second one exits at once).
    stopping: bool,
    drained: usize,
}

/// Runs until the node has drained (exit 0), a second stop signal (exit 0), or a shard
/// failed (exit 70).
pub fn supervise(running: Running, ctx: Context) -> ExitCode {
    let now = Instant::now();
    let mut s = Supervisor {
        notifier: Notifier::from_env(),
        watchdog: watchdog_interval(),
        last_ping: now,
        last_status: now,
        last_sample: now,
        deadline: None,
        upgrade: None,
        handed_over: false,
        stopping: false,
        drained: 0,
        running,
        ctx,
    };
    s.ready();
    loop {
        if let Some(signal) = s.ctx.signals.wait(Duration::from_millis(100)) {
            match signal {
                Signal::Stop if s.stopping => {
                    tracing::warn!("second stop signal: exiting now");
                    return ExitCode::SUCCESS;
                }
                Signal::Stop => s.stop(),
                Signal::Reload => s.reload(),
                Signal::Upgrade => s.start_upgrade(),
            }
        }
        if let Some(code) = s.shard_exits() {
            return code;
        }
        if s.drain_over() {
            // The access log's last lines: every shard ended, so its writer ends once
            // they are written. (A shard still running at the deadline keeps its lines.)
            if s.drained >= s.running.control.shards.len() {
                s.running.finish_access_log(Duration::from_secs(2));
            }
            return ExitCode::SUCCESS;
        }
        s.follow_upgrade();
        s.periodic();
    }
}

impl Supervisor {
    fn notify(&self, message: &str) {
        if self.handed_over {
            return;
        }
        if let Some(n) = &self.notifier {
            n.send(message);
        }
    }

    /// Every shard listens: tell systemd (and, after an upgrade, the old process).
    fn ready(&mut self) {
        match self.ctx.ready_pipe.take() {
            Some(pipe) => {
                super::upgrade::signal_ready(pipe);
                // The old process's PID was the service's; this one takes over, and
                // keeps the watchdog fed from now on.
                self.notify(&format!(
                    "MAINPID={}\nREADY=1\nWATCHDOG=1",
                    std::process::id()
                ));
            }
            None => self.notify("READY=1"),
        }
        self.notify(&format!("STATUS={}", self.status_line()));
    }

    fn stop(&mut self) {
        tracing::info!(
            "stop signal: no new connections; in-flight requests get {} ms",
            self.config().drain_timeout.as_millis()
        );
        self.stopping = true;
        self.notify("STOPPING=1");
        if let Some(u) = self.upgrade.take() {
            tracing::warn!("stop signal during a binary upgrade: the new process is stopped");
            u.abandon();
        }
        self.begin_drain(Drain::Stop);
        // The copies kept for a hand-over would keep the sockets open (new clients
        // would wait in a backlog nobody takes): the shards close theirs this tick.
        self.running.listeners.clear();
        self.ctx.admin = None;
    }

    fn begin_drain(&mut self, how: Drain) {
        self.running.control.start_drain(how);
        let limit = self.config().drain_timeout;
        let deadline = Instant::now() + limit;
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
    }

    fn config(&self) -> Arc<Config> {
        self.running.control.config()
    }

    /// A shard's loop ended: drained (counted), or failed (the process ends).
    fn shard_exits(&mut self) -> Option<ExitCode> {
        while let Ok(exit) = self.running.exits.try_recv() {
            match exit.failure {
                None => self.drained += 1,
                Some(cause) => {
                    tracing::error!(
                        shard = exit.shard,
                        "shard {} stopped: {cause}; exiting so the service restarts",
                        exit.shard
                    );
                    self.notify(&format!("STATUS=shard {} failed: {cause}", exit.shard));
                    return Some(ExitCode::from(SHARD_FAILED));
                }
            }
        }
        None
    }

    fn drain_over(&self) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        if self.drained >= self.running.control.shards.len() {
            tracing::info!("drained: every in-flight request answered");
            return true;
        }
        if Instant::now() >= deadline {
            let open: u64 = (0..self.running.control.shards.len())
                .map(|i| self.ctx.view.shard_clients(i))
                .sum();
            tracing::warn!(
                open,
                "drain deadline passed: exiting with connections still open"
            );
            return true;
        }
        false
    }

    /// SIGHUP: read the file again; apply it, or keep the running config.
    fn reload(&mut self) {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        match self.ctx.source.load() {
            Ok(new) => self.apply(new),
            Err(e) => {
                tracing::error!("reload refused, the running config stays: {e}");
                self.notify("STATUS=reload refused: the running config stays (see the log)");
            }
        }
        self.notify("READY=1");
    }

    fn apply(&mut self, mut new: Config) {
        let old = self.config();
        // The same node list keeps its membership view and its peers' health; another
        // one gets a new membership thread once it is in force.
        let membership_changes = match (&old.cluster, &mut new.cluster) {
            (Some(o), Some(n)) if o.digest == n.digest && o.secret == n.secret => {
                n.health = o.health.clone();
                // Nothing moved: no new warm-up (nor a second store of near copies).
                n.warm_until = o.warm_until;
                if let (Some(on), Some(nn)) = (&o.near, &n.near)
                    && on.same_settings(nn)
                {
                    n.near = Some(on.clone());
                }
                false
            }
            (None, None) => false,
            _ => true,
        };
        for key in restart_only_changes(&old, &new) {
            // A binary upgrade keeps the sockets and sizes of the process it replaces.
            tracing::warn!("{key} changed: it takes effect at the next restart");
        }
        // What cannot change live stays as it runs, so everything reads one truth.
        new.listen = old.listen;
        new.workers = old.workers;
        new.io = old.io;
        new.uring = old.uring;
        new.admin = old.admin;
        new.pin_workers = old.pin_workers;
        new.transparent_huge_pages = old.transparent_huge_pages;
        // The store's limit is fixed at start; connections must not hold more.
        new.cache.object_bytes_max = old.cache.object_bytes_max;
        new.upstream.dns_threads = old.upstream.dns_threads;
        new.upstream.dns_lookups_per_client_max = old.upstream.dns_lookups_per_client_max;
        new.distill.pool_threads = old.distill.pool_threads;
        new.distill.pool_queue_max = old.distill.pool_queue_max;
        if (old.cache.memory_bytes == 0) != (new.cache.memory_bytes == 0) {
            new.cache.memory_bytes = old.cache.memory_bytes;
        }
        if let Some(store) = &self.running.cache {
            store.set_budget(new.store_budget());
        }
        self.running.held.set_max(new.limits.held_bytes_max);
        self.ctx.logging.apply(&new);
        let generation = self.running.control.publish(Arc::new(new));
        // READY=1 (the reload is done) once every shard reads the new config.
        let until = Instant::now() + Duration::from_secs(2);
        while !self.running.control.applied_everywhere(generation) {
            if Instant::now() >= until {
                tracing::warn!("a shard has not taken the reloaded config within 2 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if membership_changes {
            self.restart_membership();
        }
        tracing::info!("config reloaded");
    }

    /// SIGUSR2: start the binary on disk with the listeners.
    fn start_upgrade(&mut self) {
        if self.upgrade.is_some() || self.deadline.is_some() {
            tracing::warn!(
                "binary upgrade asked for while one is under way or the node drains: ignored"
            );
            return;
        }
        let fds: Vec<i32> = self
            .running
            .listeners
            .iter()
            .map(|l| l.as_raw_fd())
            .collect();
        let admin = self.ctx.admin.as_ref().map(|(l, _)| l.as_raw_fd());
        // The new process binds the gossip port: this one's membership stops first (its
        // peers see a newer identity from the new process within a probe period).
        if let Some(swim) = self.ctx.swim.take() {
            swim.stop();
        }
        match Upgrade::start(&self.ctx.exe, &self.ctx.args, &fds, admin) {
            Ok(u) => {
                tracing::info!(exe = %self.ctx.exe.display(), "binary upgrade: started the new process");
                self.upgrade = Some(u);
            }
            Err(e) => {
                tracing::error!(exe = %self.ctx.exe.display(), "binary upgrade: cannot start the new process: {e}");
                self.restart_membership();
            }
        }
    }

    /// Membership for the cluster config in force (after a failed upgrade, or a reload
    /// that changed the node list).
    fn restart_membership(&mut self) {
        if let Some(swim) = self.ctx.swim.take() {
            swim.stop();
        }
        let cfg = self.config();
        let Some(cluster) = cfg.cluster.as_ref() else {
            return;
        };
        match crate::cluster::swim::start(cluster) {
            Ok(swim) => self.ctx.swim = swim,
            Err(e) => tracing::error!("cannot restart cluster membership: {e}"),
        }
    }

    fn follow_upgrade(&mut self) {
        let Some(u) = self.upgrade.as_mut() else {
            return;
        };
        match u.progress() {
            Progress::Waiting => {}
            Progress::Ready(pid) => {
                tracing::info!(
                    new_pid = pid,
                    "binary upgrade: the new process listens; draining this one"
                );
                self.upgrade = None;
                self.handed_over = true;
                if let Some((_, stop)) = &self.ctx.admin {
                    stop.store(true, Ordering::Relaxed);
                }
                self.begin_drain(Drain::Handover);
            }
            Progress::Failed(why) => {
                tracing::error!("binary upgrade failed, this process keeps serving: {why}");
                self.upgrade = None;
                self.restart_membership();
            }
        }
    }

    /// The watchdog, the status line and the rates, each on its own period.
    fn periodic(&mut self) {
        let now = Instant::now();
        if now.saturating_duration_since(self.last_sample) >= Duration::from_secs(1) {
            self.last_sample = now;
            self.ctx.view.sample(now);
        }
        if let Some(every) = self.watchdog
            && now.saturating_duration_since(self.last_ping) >= every
        {
            // A stuck shard stops the pings, so systemd restarts the service.
            let within = every.max(Duration::from_millis(500));
            if self.running.control.all_turning(within) {
                self.last_ping = now;
                self.notify("WATCHDOG=1");
            }
        }
        if now.saturating_duration_since(self.last_status) >= STATUS_EVERY {
            self.last_status = now;
            self.notify(&format!("STATUS={}", self.status_line()));
        }
    }

    fn status_line(&self) -> String {
        let v = &self.ctx.view;
        let r = v.rates();
        let open: u64 = (0..v.control.shards.len())
            .map(|i| v.shard_clients(i))
            .sum();
        let state = if self.deadline.is_some() {
            "draining; "
        } else {
            ""
        };
        format!(
            "{state}{:.0} req/s, hit ratio {:.0}%, {open} connections, {} shards ({}), {} requests",
            r.requests_per_s,
            100.0 * r.hit_ratio,
            v.control.shards.len(),
            v.driver,
            v.total(|s| &s.requests),
        )
    }
}

/// Keys a reload cannot change while the node runs: the sockets, the threads and the
/// rings are made once at start. Everything else a request reads applies to the next
/// request (`[upstream]` pool and name-cache settings at each shard's next tick).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.upstream, &new.upstream);
    let checks = [
        ("server.listen", old.listen != new.listen),
        ("server.workers", old.workers != new.workers),
        ("server.io", old.io != new.io),
        ("server.pin_workers", old.pin_workers != new.pin_workers),
        (
            "server.transparent_huge_pages",
            old.transparent_huge_pages != new.transparent_huge_pages,
        ),
        (
            "cache.object_bytes_max",
            old.cache.object_bytes_max != new.cache.object_bytes_max,
        ),
        (
            "[uring]",
            format!("{:?}", old.uring) != format!("{:?}", new.uring),
        ),
        ("[admin]", old.admin != new.admin),
        ("upstream.dns_threads", o.dns_threads != n.dns_threads),
        (
            "upstream.dns_lookups_per_client_max",
            o.dns_lookups_per_client_max != n.dns_lookups_per_client_max,
        ),
        (
            "distill.pool_threads",
            old.distill.pool_threads != new.distill.pool_threads,
        ),
        (
            "distill.pool_queue_max",
            old.distill.pool_queue_max != new.distill.pool_queue_max,
        ),
        (
            "cache.memory_bytes (turning the cache on or off)",
            (old.cache.memory_bytes == 0) != (new.cache.memory_bytes == 0),
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
}
