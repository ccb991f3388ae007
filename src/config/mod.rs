//! Typed configuration: `config.toml -> FileConfig -> Config`.
//!
//! Every default is a named constant with its unit in the name, so an operator reading
//! the code or the README sees the same number. Unknown keys are errors (serde's
//! `deny_unknown_fields`), reported with the key's name and line, because a misspelt
//! limit that is silently ignored is a limit that is silently not applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

pub mod routes;

use routes::{OriginUrl, Route};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
pub const DEFAULT_WORKERS: usize = 0; // 0 = one per core
pub const DEFAULT_HEALTHZ_PATH: &str = "/healthz";
pub const DEFAULT_VIA_NAME: &str = "distilld";
pub const DEFAULT_HEADER_BYTES_MAX: usize = 32 * 1024;
pub const DEFAULT_HEADERS_COUNT_MAX: usize = 100;
pub const DEFAULT_REQUEST_BODY_BYTES_MAX: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_CONNECTIONS_PER_SHARD_MAX: usize = 10_000;
pub const DEFAULT_IO_BUFFER_BYTES: usize = 64 * 1024;
pub const DEFAULT_REQUEST_HEAD_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_CLIENT_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_POOL_IDLE_PER_ORIGIN_MAX: usize = 64;
pub const DEFAULT_POOL_IDLE_TOTAL_MAX: usize = 1024;
pub const DEFAULT_POOL_IDLE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_DNS_CACHE_TTL_MS: u64 = 60_000;
// Blocking getaddrinfo calls at once: a name that never answers holds one for as long
// as the system resolver tries, so there must be enough that others still get one.
pub const DEFAULT_DNS_THREADS: usize = 32;
pub const DEFAULT_DNS_TIMEOUT_MS: u64 = 3_000;
pub const DEFAULT_DNS_NEGATIVE_TTL_MS: u64 = 5_000;
// A browser opening a page with many new hosts resolves several at once; a client asking
// for names that never answer holds at most this many of the threads.
pub const DEFAULT_DNS_LOOKUPS_PER_CLIENT_MAX: usize = 8;
pub const DEFAULT_URING_ENTRIES: u32 = 4096;
pub const DEFAULT_URING_WAIT_BATCH: u32 = 32;
pub const DEFAULT_URING_MIN_WAIT_US: u32 = 100;
pub const DEFAULT_URING_BUFFERS: u16 = 128;
// 32 KiB: 16 KiB buffers cost 30% more CPU per proxied 1 MiB body (more, smaller
// completions and sends); 64 KiB ones (64 of them) gained no more and were 5% slower
// with 1,000 connections (bench README, uring-vs-epoll). 4 MiB per shard either way.
pub const DEFAULT_URING_BUFFER_BYTES: usize = 32 * 1024;
pub const DEFAULT_URING_FIXED_FILES: u32 = 4096;
// Response bodies held in memory at once across the node (for distillation jobs and
// cache capture); per connection they are bounded by distill.input_bytes_max and
// cache.object_bytes_max.
pub const DEFAULT_HELD_BYTES_MAX: u64 = 256 * 1024 * 1024;
pub const DEFAULT_CACHE_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_CACHE_OBJECT_BYTES_MAX: u64 = 8 * 1024 * 1024;
pub const DEFAULT_CACHE_COLLAPSE_WAIT_MS: u64 = 10_000;
pub const DEFAULT_CACHE_HEURISTIC_PERCENT: u64 = 10;
pub const DEFAULT_CACHE_HEURISTIC_MAX_S: u64 = 24 * 3600;
pub const DEFAULT_CACHE_PURGE_FROM: [&str; 2] = ["127.0.0.1", "::1"];
pub const DEFAULT_DISTILL_PROFILE: &str = "off";
pub const DEFAULT_DISTILL_SAVE_DATA_PROFILE: &str = "medium";
pub const DEFAULT_DISTILL_SLOW_LINK_PROFILE: &str = "aggressive";
pub const DEFAULT_DISTILL_MEDIUM_LINK_PROFILE: &str = "medium";
pub const DEFAULT_DISTILL_INPUT_BYTES_MAX: u64 = 16 * 1024 * 1024;
// Together: a 40 MP RGB image's decode, resize and encode fit the job's memory, and
// the node's peak while distilling stays under 512 MiB (see default.toml).
pub const DEFAULT_DISTILL_PIXELS_MAX: u64 = 40_000_000;
pub const DEFAULT_DISTILL_MEMORY_BYTES_MAX: u64 = 256 * 1024 * 1024;
pub const DEFAULT_DISTILL_JPEG_SCANS_MAX: usize = 256;
pub const DEFAULT_DISTILL_JOB_TIME_MS: u64 = 5_000;
pub const DEFAULT_DISTILL_INLINE_BYTES_MAX: u64 = 16 * 1024;
// 512 x 512: decoded, resized and encoded in a few milliseconds, short enough to run
// on a shard between other requests.
pub const DEFAULT_DISTILL_INLINE_PIXELS_MAX: u64 = 512 * 512;
pub const DEFAULT_DISTILL_POOL_THREADS: usize = 1;
pub const DEFAULT_DISTILL_POOL_QUEUE_MAX: usize = 256;
pub const DEFAULT_DISTILL_TEXT_BYTES_MIN: u64 = 512;

/// The configuration compiled into the binary: what `distilld run` uses with no file.
pub const EMBEDDED_DEFAULT_TOML: &str = include_str!("../default.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: invalid configuration:\n{}", .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        errors: Vec<InvalidKey>,
    },
}

/// One invalid value, named by its dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey {
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    #[serde(default)]
    pub upstream: FileUpstream,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub uring: FileUring,
    #[serde(default)]
    pub cache: FileCache,
    #[serde(default)]
    pub distill: FileDistill,
    #[serde(default, rename = "route")]
    pub routes: Vec<FileRoute>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub listen: Option<String>,
    pub workers: Option<usize>,
    pub pin_workers: Option<bool>,
    pub transparent_huge_pages: Option<bool>,
    pub forward_proxy: Option<bool>,
    pub healthz_path: Option<String>,
    pub via_name: Option<String>,
    pub x_forwarded_for: Option<bool>,
    pub io: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileUring {
    pub wait_batch: Option<u32>,
    pub min_wait_us: Option<u32>,
    pub entries: Option<u32>,
    pub buffers: Option<u16>,
    pub buffer_bytes: Option<usize>,
    pub fixed_files: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileDistill {
    pub default_profile: Option<String>,
    pub save_data_profile: Option<String>,
    pub slow_link_profile: Option<String>,
    pub medium_link_profile: Option<String>,
    pub input_bytes_max: Option<u64>,
    pub pixels_max: Option<u64>,
    pub memory_bytes_max: Option<u64>,
    pub jpeg_scans_max: Option<usize>,
    pub job_time_ms: Option<u64>,
    pub inline_bytes_max: Option<u64>,
    pub inline_pixels_max: Option<u64>,
    pub pool_threads: Option<usize>,
    pub pool_queue_max: Option<usize>,
    pub text_bytes_min: Option<u64>,
    #[serde(default, rename = "profile")]
    pub profiles: Vec<FileProfile>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<FileRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProfile {
    pub name: String,
    pub max_edge: Option<u32>,
    pub quality: Option<u8>,
    pub grayscale: Option<bool>,
    pub flatten_animation: Option<bool>,
    pub compress_text: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    pub client: Option<String>,
    pub user_agent: Option<String>,
    pub profile: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    pub memory_bytes: Option<u64>,
    pub object_bytes_max: Option<u64>,
    pub collapse_wait_ms: Option<u64>,
    pub heuristic_percent: Option<u64>,
    pub heuristic_max_s: Option<u64>,
    pub purge_from: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub header_bytes_max: Option<usize>,
    pub headers_count_max: Option<usize>,
    pub request_body_bytes_max: Option<u64>,
    pub connections_per_shard_max: Option<usize>,
    pub io_buffer_bytes: Option<usize>,
    pub held_bytes_max: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    pub request_head_ms: Option<u64>,
    pub client_idle_ms: Option<u64>,
    pub upstream_connect_ms: Option<u64>,
    pub upstream_response_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub pool_idle_per_origin_max: Option<usize>,
    pub pool_idle_total_max: Option<usize>,
    pub pool_idle_timeout_ms: Option<u64>,
    pub dns_cache_ttl_ms: Option<u64>,
    pub dns_threads: Option<usize>,
    pub dns_timeout_ms: Option<u64>,
    pub dns_negative_ttl_ms: Option<u64>,
    pub dns_lookups_per_client_max: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub access_log: Option<bool>,
    pub stats_interval_ms: Option<u64>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub origin: String,
    pub preserve_host: Option<bool>,
}

/// The validated configuration every shard reads (shared, immutable).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub workers: usize,
    pub pin_workers: bool,
    /// Let the heap be backed by transparent huge pages (off: resident memory follows
    /// what is in use).
    pub transparent_huge_pages: bool,
    pub forward_proxy: bool,
    pub healthz_path: Option<String>,
    pub via_name: String,
    pub x_forwarded_for: bool,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub upstream: UpstreamConfig,
    pub access_log: bool,
    /// Each shard logs its counters this often; `None` = never.
    pub stats_interval: Option<Duration>,
    pub log_level: String,
    pub routes: Vec<Route>,
    pub io: IoChoice,
    pub uring: UringConfig,
    pub cache: CacheConfig,
    pub distill: DistillConfig,
}

/// Distillation: profiles, how one is chosen, and the limits of a job.
#[derive(Debug, Clone)]
pub struct DistillConfig {
    pub choice: crate::distill::profile::Choice,
    pub limits: crate::distill::image::Limits,
    /// Inputs up to this size are distilled inline on the shard; larger ones on the pool.
    pub inline_bytes_max: u64,
    /// ... and images only when they declare at most this many pixels.
    pub inline_pixels_max: u64,
    pub pool_threads: usize,
    pub pool_queue_max: usize,
    /// Text smaller than this is not worth compressing.
    pub text_bytes_min: u64,
}

/// The shared response cache; `memory_bytes = 0` turns it off.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub memory_bytes: u64,
    /// Larger responses are streamed through, never stored.
    pub object_bytes_max: u64,
    /// How long a request waits for another's fetch of the same object before fetching
    /// it itself.
    pub collapse_wait: Duration,
    pub heuristic_percent: u64,
    pub heuristic_max_s: u64,
    /// Client addresses allowed to send PURGE.
    pub purge_from: Vec<std::net::IpAddr>,
}

impl CacheConfig {
    pub fn enabled(&self) -> bool {
        self.memory_bytes > 0
    }
}

/// Which network driver the shards run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring when the kernel allows it, else epoll (logged).
    Auto,
    Uring,
    Epoll,
}

impl IoChoice {
    pub fn parse(s: &str) -> Option<IoChoice> {
        match s {
            "auto" => Some(IoChoice::Auto),
            "uring" => Some(IoChoice::Uring),
            "epoll" => Some(IoChoice::Epoll),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct UringConfig {
    /// Most completions a shard waits for before waking (no more than its last wake
    /// brought, so a quiet shard wakes for each); once `min_wait_us` has passed it wakes
    /// for one (interrupt coalescing for the ring); 1 = wake for each.
    pub wait_batch: u32,
    pub min_wait_us: u32,
    /// Submission queue entries per shard ring.
    pub entries: u32,
    /// Provided receive buffers per shard (a power of two).
    pub buffers: u16,
    pub buffer_bytes: usize,
    /// Registered-file slots per shard ring (sockets beyond them use descriptors).
    pub fixed_files: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_bytes_max: usize,
    pub headers_count_max: usize,
    pub request_body_bytes_max: u64,
    pub connections_per_shard_max: usize,
    pub io_buffer_bytes: usize,
    /// Response bodies held in memory, all connections together.
    pub held_bytes_max: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub request_head: Duration,
    pub client_idle: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct UpstreamConfig {
    pub pool_idle_per_origin_max: usize,
    pub pool_idle_total_max: usize,
    pub pool_idle_timeout: Duration,
    pub dns_cache_ttl: Duration,
    pub dns_threads: usize,
    /// A lookup unanswered this long fails its requests with 502.
    pub dns_timeout: Duration,
    /// How long a failed lookup's answer is reused.
    pub dns_negative_ttl: Duration,
    /// Lookups one client (an IPv4 address, an IPv6 /64) may have on the resolver
    /// threads at once, node-wide.
    pub dns_lookups_per_client_max: usize,
}

impl Config {
    /// The embedded default configuration (forward proxy on 127.0.0.1:3128).
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_toml_str(EMBEDDED_DEFAULT_TOML, "<embedded default>")
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        file.validate().map_err(|errors| ConfigError::Invalid {
            path: origin.to_string(),
            errors,
        })
    }

    /// Shard count after resolving `workers = 0` to the core count.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

impl FileConfig {
    /// Checks every value and collects every problem, so one run of `check-config`
    /// shows the operator all of them.
    pub fn validate(self) -> Result<Config, Vec<InvalidKey>> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, problem: String| {
            errors.push(InvalidKey {
                key: key.to_string(),
                problem,
            })
        };
        let s = &self.server;
        let listen_text = s.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(e) => {
                bad(
                    "server.listen",
                    format!("{listen_text:?} is not an IP:port address ({e})"),
                );
                SocketAddr::from(([127, 0, 0, 1], 3128))
            }
        };
        let healthz_path = match s.healthz_path.as_deref() {
            None => Some(DEFAULT_HEALTHZ_PATH.to_string()),
            Some("") => None,
            Some(p) if p.starts_with('/') => Some(p.to_string()),
            Some(p) => {
                bad(
                    "server.healthz_path",
                    format!("{p:?} must start with '/' (or be \"\" to turn it off)"),
                );
                None
            }
        };
        let via_name = s
            .via_name
            .clone()
            .unwrap_or_else(|| DEFAULT_VIA_NAME.to_string());
        if via_name.is_empty() || !via_name.bytes().all(|b| b.is_ascii_graphic()) {
            bad(
                "server.via_name",
                "must be a non-empty token without spaces".into(),
            );
        }
        let l = &self.limits;
        let limits = Limits {
            header_bytes_max: l.header_bytes_max.unwrap_or(DEFAULT_HEADER_BYTES_MAX),
            headers_count_max: l.headers_count_max.unwrap_or(DEFAULT_HEADERS_COUNT_MAX),
            request_body_bytes_max: l
                .request_body_bytes_max
                .unwrap_or(DEFAULT_REQUEST_BODY_BYTES_MAX),
            connections_per_shard_max: l
                .connections_per_shard_max
                .unwrap_or(DEFAULT_CONNECTIONS_PER_SHARD_MAX),
            io_buffer_bytes: l.io_buffer_bytes.unwrap_or(DEFAULT_IO_BUFFER_BYTES),
            held_bytes_max: l.held_bytes_max.unwrap_or(DEFAULT_HELD_BYTES_MAX),
        };
        check_range(
            &mut bad,
            "limits.header_bytes_max",
            limits.header_bytes_max,
            256,
            1 << 20,
        );
        check_range(
            &mut bad,
            "limits.headers_count_max",
            limits.headers_count_max,
            8,
            1000,
        );
        check_range(
            &mut bad,
            "limits.connections_per_shard_max",
            limits.connections_per_shard_max,
            1,
            1_000_000,
        );
        check_range(
            &mut bad,
            "limits.io_buffer_bytes",
            limits.io_buffer_bytes,
            1024,
            16 << 20,
        );
        let t = &self.timeouts;
        let timeouts = Timeouts {
            request_head: ms(
                &mut bad,
                "timeouts.request_head_ms",
                t.request_head_ms,
                DEFAULT_REQUEST_HEAD_TIMEOUT_MS,
            ),
            client_idle: ms(
                &mut bad,
                "timeouts.client_idle_ms",
                t.client_idle_ms,
                DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
            ),
            upstream_connect: ms(
                &mut bad,
                "timeouts.upstream_connect_ms",
                t.upstream_connect_ms,
                DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS,
            ),
            upstream_response: ms(
                &mut bad,
                "timeouts.upstream_response_ms",
                t.upstream_response_ms,
                DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS,
            ),
        };
        let u = &self.upstream;
        let upstream = UpstreamConfig {
            pool_idle_per_origin_max: u
                .pool_idle_per_origin_max
                .unwrap_or(DEFAULT_POOL_IDLE_PER_ORIGIN_MAX),
            pool_idle_total_max: u.pool_idle_total_max.unwrap_or(DEFAULT_POOL_IDLE_TOTAL_MAX),
            pool_idle_timeout: ms(
                &mut bad,
                "upstream.pool_idle_timeout_ms",
                u.pool_idle_timeout_ms,
                DEFAULT_POOL_IDLE_TIMEOUT_MS,
            ),
            dns_cache_ttl: ms(
                &mut bad,
                "upstream.dns_cache_ttl_ms",
                u.dns_cache_ttl_ms,
                DEFAULT_DNS_CACHE_TTL_MS,
            ),
            dns_threads: u.dns_threads.unwrap_or(DEFAULT_DNS_THREADS),
            dns_timeout: ms(
                &mut bad,
                "upstream.dns_timeout_ms",
                u.dns_timeout_ms,
                DEFAULT_DNS_TIMEOUT_MS,
            ),
            dns_negative_ttl: ms(
                &mut bad,
                "upstream.dns_negative_ttl_ms",
                u.dns_negative_ttl_ms,
                DEFAULT_DNS_NEGATIVE_TTL_MS,
            ),
            dns_lookups_per_client_max: u
                .dns_lookups_per_client_max
                .unwrap_or(DEFAULT_DNS_LOOKUPS_PER_CLIENT_MAX),
        };
        check_range(
            &mut bad,
            "upstream.dns_lookups_per_client_max",
            upstream.dns_lookups_per_client_max,
            1,
            1024,
        );
        check_range(
            &mut bad,
            "upstream.dns_threads",
            upstream.dns_threads,
            1,
            256,
        );
        let log_level = self.log.level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            bad(
                "log.level",
                format!("{log_level:?} is not one of error, warn, info, debug, trace"),
            );
        }
        let io_text = s.io.as_deref().unwrap_or("auto");
        let io = IoChoice::parse(io_text).unwrap_or_else(|| {
            bad(
                "server.io",
                format!("{io_text:?} is not one of auto, uring, epoll"),
            );
            IoChoice::Auto
        });
        let ur = &self.uring;
        let uring = UringConfig {
            wait_batch: ur.wait_batch.unwrap_or(DEFAULT_URING_WAIT_BATCH),
            min_wait_us: ur.min_wait_us.unwrap_or(DEFAULT_URING_MIN_WAIT_US),
            entries: ur.entries.unwrap_or(DEFAULT_URING_ENTRIES),
            buffers: ur.buffers.unwrap_or(DEFAULT_URING_BUFFERS),
            buffer_bytes: ur.buffer_bytes.unwrap_or(DEFAULT_URING_BUFFER_BYTES),
            fixed_files: ur.fixed_files.unwrap_or(DEFAULT_URING_FIXED_FILES),
        };
        if !(64..=32768).contains(&uring.entries) || !uring.entries.is_power_of_two() {
            bad(
                "uring.entries",
                format!("{} is not a power of two in 64..=32768", uring.entries),
            );
        }
        if !(16..=32768).contains(&uring.buffers) || !uring.buffers.is_power_of_two() {
            bad(
                "uring.buffers",
                format!("{} is not a power of two in 16..=32768", uring.buffers),
            );
        }
        check_range(
            &mut bad,
            "uring.buffer_bytes",
            uring.buffer_bytes,
            1024,
            1 << 20,
        );
        check_range(
            &mut bad,
            "uring.fixed_files",
            uring.fixed_files as usize,
            0,
            65536,
        );
        let cache = self.cache.validate(&mut bad);
        let distill = self.distill.validate(&mut bad);
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            match OriginUrl::parse(&r.origin) {
                Ok(origin) => routes.push(Route {
                    host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    path_prefix: r.path_prefix.clone().unwrap_or_else(|| "/".into()),
                    origin,
                    preserve_host: r.preserve_host.unwrap_or(false),
                }),
                Err(e) => bad(&format!("route[{i}].origin"), e.to_string()),
            }
            if let Some(p) = &r.path_prefix
                && !p.starts_with('/')
            {
                bad(
                    &format!("route[{i}].path_prefix"),
                    "must start with '/'".into(),
                );
            }
        }
        let config = Config {
            listen,
            workers: s.workers.unwrap_or(DEFAULT_WORKERS),
            pin_workers: s.pin_workers.unwrap_or(true),
            transparent_huge_pages: s.transparent_huge_pages.unwrap_or(false),
            forward_proxy: s.forward_proxy.unwrap_or(true),
            healthz_path,
            via_name,
            x_forwarded_for: s.x_forwarded_for.unwrap_or(true),
            limits,
            timeouts,
            upstream,
            access_log: self.log.access_log.unwrap_or(true),
            stats_interval: self
                .log
                .stats_interval_ms
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis),
            log_level,
            routes,
            io,
            uring,
            cache,
            distill,
        };
        if config.workers > 1024 {
            errors.push(InvalidKey {
                key: "server.workers".into(),
                problem: format!("{} is more than 1024", config.workers),
            });
        }
        if !config.forward_proxy && config.routes.is_empty() {
            errors.push(InvalidKey {
                key: "server.forward_proxy".into(),
                problem: "false with no [[route]]: nothing could be proxied".into(),
            });
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

impl FileDistill {
    fn validate(&self, bad: &mut impl FnMut(&str, String)) -> DistillConfig {
        use crate::distill::profile::{Choice, Profile, Rule, builtin, parse_prefix};
        let mut profiles = builtin();
        for (i, p) in self.profiles.iter().enumerate() {
            let base = profiles.iter().find(|b| b.name == p.name).cloned();
            let base = base.unwrap_or_else(|| Profile {
                name: p.name.clone(),
                ..builtin()[2].clone()
            });
            let q = p.quality.unwrap_or(base.quality);
            if !(1..=100).contains(&q) {
                bad(
                    &format!("distill.profile[{i}].quality"),
                    format!("{q} is outside 1..=100"),
                );
            }
            let merged = Profile {
                max_edge: p.max_edge.unwrap_or(base.max_edge),
                quality: q.clamp(1, 100),
                grayscale: p.grayscale.unwrap_or(base.grayscale),
                flatten_animation: p.flatten_animation.unwrap_or(base.flatten_animation),
                compress_text: p.compress_text.unwrap_or(base.compress_text),
                ..base
            };
            match profiles.iter_mut().find(|b| b.name == merged.name) {
                Some(slot) => *slot = merged,
                None => profiles.push(merged),
            }
        }
        let mut name = |key: &str, v: &Option<String>, default: &str| {
            let n = v.clone().unwrap_or_else(|| default.to_string());
            if !profiles.iter().any(|p| p.name == n) {
                bad(key, format!("{n:?} is not a profile"));
            }
            n
        };
        let default = name(
            "distill.default_profile",
            &self.default_profile,
            DEFAULT_DISTILL_PROFILE,
        );
        let save_data = name(
            "distill.save_data_profile",
            &self.save_data_profile,
            DEFAULT_DISTILL_SAVE_DATA_PROFILE,
        );
        let slow_link = name(
            "distill.slow_link_profile",
            &self.slow_link_profile,
            DEFAULT_DISTILL_SLOW_LINK_PROFILE,
        );
        let medium_link = name(
            "distill.medium_link_profile",
            &self.medium_link_profile,
            DEFAULT_DISTILL_MEDIUM_LINK_PROFILE,
        );
        let mut rules = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let client = match r.client.as_deref().map(|c| (c, parse_prefix(c))) {
                None => None,
                Some((_, Some(p))) => Some(p),
                Some((c, None)) => {
                    bad(
                        &format!("distill.rule[{i}].client"),
                        format!("{c:?} is not an address or prefix"),
                    );
                    None
                }
            };
            if !profiles.iter().any(|p| p.name == r.profile) {
                bad(
                    &format!("distill.rule[{i}].profile"),
                    format!("{:?} is not a profile", r.profile),
                );
            }
            rules.push(Rule {
                client,
                user_agent: r.user_agent.clone(),
                profile: r.profile.clone(),
            });
        }
        let limits = crate::distill::image::Limits {
            input_bytes_max: self
                .input_bytes_max
                .unwrap_or(DEFAULT_DISTILL_INPUT_BYTES_MAX),
            pixels_max: self.pixels_max.unwrap_or(DEFAULT_DISTILL_PIXELS_MAX),
            memory_bytes_max: self
                .memory_bytes_max
                .unwrap_or(DEFAULT_DISTILL_MEMORY_BYTES_MAX),
            jpeg_scans_max: self
                .jpeg_scans_max
                .unwrap_or(DEFAULT_DISTILL_JPEG_SCANS_MAX),
            time_max: ms(
                bad,
                "distill.job_time_ms",
                self.job_time_ms,
                DEFAULT_DISTILL_JOB_TIME_MS,
            ),
        };
        let pool_threads = self.pool_threads.unwrap_or(DEFAULT_DISTILL_POOL_THREADS);
        check_range(bad, "distill.pool_threads", pool_threads, 1, 256);
        DistillConfig {
            choice: Choice {
                profiles,
                rules,
                default,
                save_data,
                slow_link,
                medium_link,
            },
            limits,
            inline_bytes_max: self
                .inline_bytes_max
                .unwrap_or(DEFAULT_DISTILL_INLINE_BYTES_MAX),
            inline_pixels_max: self
                .inline_pixels_max
                .unwrap_or(DEFAULT_DISTILL_INLINE_PIXELS_MAX),
            pool_threads,
            pool_queue_max: self
                .pool_queue_max
                .unwrap_or(DEFAULT_DISTILL_POOL_QUEUE_MAX),
            text_bytes_min: self
                .text_bytes_min
                .unwrap_or(DEFAULT_DISTILL_TEXT_BYTES_MIN),
        }
    }
}

impl FileCache {
    fn validate(&self, bad: &mut impl FnMut(&str, String)) -> CacheConfig {
        let purge_from = match &self.purge_from {
            None => DEFAULT_CACHE_PURGE_FROM
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            Some(list) => list
                .iter()
                .filter_map(|a| match a.parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        bad("cache.purge_from", format!("{a:?} is not an IP address"));
                        None
                    }
                })
                .collect(),
        };
        let cfg = CacheConfig {
            memory_bytes: self.memory_bytes.unwrap_or(DEFAULT_CACHE_MEMORY_BYTES),
            object_bytes_max: self
                .object_bytes_max
                .unwrap_or(DEFAULT_CACHE_OBJECT_BYTES_MAX),
            collapse_wait: ms(
                bad,
                "cache.collapse_wait_ms",
                self.collapse_wait_ms,
                DEFAULT_CACHE_COLLAPSE_WAIT_MS,
            ),
            heuristic_percent: self
                .heuristic_percent
                .unwrap_or(DEFAULT_CACHE_HEURISTIC_PERCENT),
            heuristic_max_s: self
                .heuristic_max_s
                .unwrap_or(DEFAULT_CACHE_HEURISTIC_MAX_S),
            purge_from,
        };
        if cfg.heuristic_percent > 100 {
            bad(
                "cache.heuristic_percent",
                format!("{} is more than 100", cfg.heuristic_percent),
            );
        }
        if cfg.enabled() && cfg.object_bytes_max > cfg.memory_bytes {
            bad(
                "cache.object_bytes_max",
                format!(
                    "{} is more than cache.memory_bytes ({})",
                    cfg.object_bytes_max, cfg.memory_bytes
                ),
            );
        }
        cfg
    }
}

fn check_range(bad: &mut impl FnMut(&str, String), key: &str, v: usize, lo: usize, hi: usize) {
    if v < lo || v > hi {
        bad(key, format!("{v} is outside {lo}..={hi}"));
    }
}

fn ms(bad: &mut impl FnMut(&str, String), key: &str, v: Option<u64>, default: u64) -> Duration {
    let v = v.unwrap_or(default);
    if v == 0 || v > 24 * 3600 * 1000 {
        bad(key, format!("{v} ms is outside 1..=86400000"));
    }
    Duration::from_millis(v.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_forward_proxy() {
        let c = Config::embedded_default().expect("embedded default must validate");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.forward_proxy);
        assert!(c.routes.is_empty());
        assert_eq!(c.healthz_path.as_deref(), Some(DEFAULT_HEALTHZ_PATH));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str("[limits]\nheader_byte_max = 5\n", "t.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("header_byte_max"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn every_bad_value_is_reported() {
        let toml = "[server]\nlisten = \"nope\"\nhealthz_path = \"x\"\n[timeouts]\nclient_idle_ms = 0\n[[route]]\norigin = \"ftp://x\"\n";
        let Err(ConfigError::Invalid { errors, .. }) = Config::from_toml_str(toml, "t") else {
            panic!("expected invalid");
        };
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.healthz_path",
                "timeouts.client_idle_ms",
                "route[0].origin"
            ]
        );
    }

    #[test]
    fn empty_healthz_path_turns_it_off() {
        let c = Config::from_toml_str("[server]\nhealthz_path = \"\"\n", "t").unwrap();
        assert_eq!(c.healthz_path, None);
    }
}
