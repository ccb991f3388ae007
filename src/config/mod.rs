//! Typed configuration: `config.toml -> FileConfig -> Config`.
//!
//! Every default is a named constant with its unit in the name, so an operator reading
//! the code or the README sees the same number. Unknown keys are errors (serde's
//! `deny_unknown_fields`), reported with the key's name and line, because a misspelt
//! limit that is silently ignored is a limit that is silently not applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

pub mod cluster;
mod file;
pub mod overrides;
pub mod routes;
mod validate;

pub use file::*;

use routes::Route;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9180";
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;
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
pub const DEFAULT_CACHE_RANGE_PARTS_MAX: usize = 16;
pub const DEFAULT_CACHE_TARGETED_FIELDS: [&str; 2] =
    ["Distilld-Cache-Control", "CDN-Cache-Control"];
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
/// Frames x screen pixels of an animation made into WebP (job_time_ms bounds it too).
pub const DEFAULT_DISTILL_ANIMATION_PIXELS_MAX: u64 = 25_000_000;
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
    pub access_log_format: crate::appliance::access_log::Format,
    /// Each shard logs its counters this often; `None` = never.
    pub stats_interval: Option<Duration>,
    pub log_level: String,
    pub routes: Vec<Route>,
    pub io: IoChoice,
    pub uring: UringConfig,
    pub cache: CacheConfig,
    pub distill: DistillConfig,
    /// Where `/metrics`, `/status` and `/healthz` are served; None = off.
    pub admin: Option<SocketAddr>,
    /// How long a stopping or upgraded process lets in-flight requests finish.
    pub drain_timeout: Duration,
    /// The cluster this node belongs to; None = it runs alone.
    pub cluster: Option<cluster::ClusterConfig>,
    pub forward: ForwardConfig,
}

/// `[forward]`: who may use the forward proxy (absolute-form requests), and where it
/// may connect.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub clients_allowed: crate::access::clients::ClientList,
    /// When each refused client was last logged (a line per address a minute).
    pub refusals: std::sync::Arc<crate::access::clients::RefusalLog>,
    pub destinations: crate::access::destinations::DestinationRules,
    /// When each client refused a destination was last logged.
    pub destination_refusals: std::sync::Arc<crate::access::clients::RefusalLog>,
    /// The ports a CONNECT tunnel may go to.
    pub connect_ports: Vec<u16>,
    /// A tunnel silent both ways this long is closed.
    pub connect_idle: Duration,
    /// Each client's token bucket of requests (None: no limit). A reload starts full ones.
    pub request_rate: Option<std::sync::Arc<crate::access::limits::RequestRate>>,
    /// Concurrent connections per client address, node-wide (0: no cap).
    pub client_connections_max: u32,
    /// Basic authentication of the forward proxy's clients (None: none asked).
    pub auth: Option<std::sync::Arc<crate::access::auth::ProxyAuth>>,
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
    /// A Range with more range-specs than this is answered with the whole response.
    pub range_parts_max: usize,
    /// RFC 9213 targeted cache-control fields, lower-cased, in precedence order: the
    /// first one present and valid replaces Cache-Control for this cache's decisions.
    pub targeted_fields: Vec<String>,
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

/// A config file, or a file it names, larger than this is refused (a path to a device
/// such as /dev/zero must not fill memory).
pub const CONFIG_FILE_BYTES_MAX: u64 = 16 << 20;

/// The first `max` bytes of `path`, or an error if it is longer.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// `read_bounded`, as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

impl Config {
    /// The node's store budget: `cache.memory_bytes` less the near-cache's share of
    /// it (a cluster node's cache memory is the two together).
    pub fn store_budget(&self) -> u64 {
        let near = self
            .cluster
            .as_ref()
            .and_then(|c| c.near.as_ref())
            .map_or(0, |n| n.store.budget());
        self.cache.memory_bytes.saturating_sub(near).max(1)
    }

    /// The embedded default configuration (forward proxy on 127.0.0.1:3128).
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_toml_str(EMBEDDED_DEFAULT_TOML, "<embedded default>")
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = read_text(path, CONFIG_FILE_BYTES_MAX).map_err(|source| ConfigError::Read {
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
    fn a_profile_can_turn_on_the_sharp_webp_conversion() {
        let on = |c: &Config, name: &str| {
            c.distill
                .choice
                .profiles
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.webp_sharp_yuv)
        };
        let c = Config::from_toml_str(
            "[[distill.profile]]\nname = \"aggressive\"\nwebp_sharp_yuv = true\n",
            "t",
        )
        .unwrap();
        assert_eq!(on(&c, "aggressive"), Some(true));
        assert_eq!(on(&c, "medium"), Some(false));
        // A redefinition without the key keeps the built-in's (off), and a new profile
        // takes medium's.
        let c = Config::from_toml_str(
            "[[distill.profile]]\nname = \"medium\"\nquality = 50\n[[distill.profile]]\nname = \"mine\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(on(&c, "medium"), Some(false));
        assert_eq!(on(&c, "mine"), Some(false));
        let c = Config::embedded_default().expect("embedded default must validate");
        assert_eq!(on(&c, "aggressive"), Some(false));
    }

    #[test]
    fn empty_healthz_path_turns_it_off() {
        let c = Config::from_toml_str("[server]\nhealthz_path = \"\"\n", "t").unwrap();
        assert_eq!(c.healthz_path, None);
    }
}
