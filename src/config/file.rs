//! The config file's schema as serde reads it: every key optional (a default fills it
//! in at validation), unknown keys refused with their line.

use serde::Deserialize;

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
    #[serde(default)]
    pub admin: FileAdmin,
    #[serde(default)]
    pub cluster: super::cluster::FileCluster,
    #[serde(default)]
    pub forward: FileForward,
    #[serde(default, rename = "route")]
    pub routes: Vec<FileRoute>,
}

/// `[forward]`: who may use the forward proxy, and where it may connect.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileForward {
    pub clients_allowed: Option<Vec<String>>,
    pub destinations_denied: Option<Vec<String>>,
    pub destinations_allowed: Option<Vec<String>>,
    pub ports_allowed: Option<Vec<String>>,
    pub connect_ports: Option<Vec<u16>>,
    pub connect_idle_ms: Option<u64>,
    pub client_requests_per_s: Option<u32>,
    pub client_requests_burst: Option<u32>,
    pub client_connections_max: Option<u32>,
    pub auth_file: Option<String>,
    pub auth_realm: Option<String>,
    pub auth_failures_per_min: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub listen: Option<String>,
    pub enabled: Option<bool>,
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
    pub drain_timeout_ms: Option<u64>,
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
    pub animation_pixels_max: Option<u64>,
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
    pub webp_quality: Option<u8>,
    pub webp_sharp_yuv: Option<bool>,
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
    pub range_parts_max: Option<usize>,
    pub targeted_fields: Option<Vec<String>>,
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
    pub access_log_format: Option<String>,
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
    pub clients_allowed: Option<Vec<String>>,
}
