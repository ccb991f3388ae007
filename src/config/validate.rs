//! Validation: every value of a `FileConfig` checked, every problem collected (so one
//! run of `check-config` shows them all), defaults filled in: a `Config`.

use std::net::SocketAddr;
use std::time::Duration;

use super::routes::{OriginUrl, Route};
use super::*;
use crate::distill::profile::{Choice, Profile, Rule, builtin, parse_prefix};

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
        let listen = s.listen(&mut bad);
        let healthz_path = s.healthz_path(&mut bad);
        let via_name = s.via_name(&mut bad);
        // In the order the problems were always reported.
        let limits = self.limits.validate(&mut bad);
        let timeouts = self.timeouts.validate(&mut bad);
        let upstream = self.upstream.validate(&mut bad);
        let log_level = self.log.level(&mut bad);
        let access_log_format = self.log.access_log_format(&mut bad);
        let io = s.io(&mut bad);
        let uring = self.uring.validate(&mut bad);
        let cache = self.cache.validate(&mut bad);
        let distill = self.distill.validate(&mut bad);
        let routes = routes(&self.routes, &mut bad);
        let admin = self.admin.listen(&mut bad);
        let drain_timeout = s.drain_timeout(&mut bad);
        let cluster = self.cluster.validate(&cache, &mut bad);
        let forward = forward(&self.forward, &mut bad);
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
            access_log_format,
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
            admin,
            drain_timeout,
            cluster,
            forward,
        };
        if config.workers > 1024 {
            errors.push(InvalidKey {
                key: "server.workers".into(),
                problem: format!("{} is more than 1024", config.workers),
            });
        }
        if config.forward.auth.is_some()
            && config.cluster.as_ref().is_some_and(|c| c.secret.is_none())
        {
            // A peer's hop skips the check: without a secret anything that can reach a
            // node from a peer's address could claim to be one.
            errors.push(InvalidKey {
                key: "forward.auth_file".into(),
                problem: "needs cluster.secret_file in a cluster (peers' requests skip the check)"
                    .into(),
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

impl FileServer {
    fn listen(&self, bad: &mut impl FnMut(&str, String)) -> SocketAddr {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        match listen_text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(e) => {
                bad(
                    "server.listen",
                    format!("{listen_text:?} is not an IP:port address ({e})"),
                );
                SocketAddr::from(([127, 0, 0, 1], 3128))
            }
        }
    }

    fn healthz_path(&self, bad: &mut impl FnMut(&str, String)) -> Option<String> {
        match self.healthz_path.as_deref() {
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
        }
    }

    fn via_name(&self, bad: &mut impl FnMut(&str, String)) -> String {
        let via_name = self
            .via_name
            .clone()
            .unwrap_or_else(|| DEFAULT_VIA_NAME.to_string());
        if via_name.is_empty() || !via_name.bytes().all(|b| b.is_ascii_graphic()) {
            bad(
                "server.via_name",
                "must be a non-empty token without spaces".into(),
            );
        }
        via_name
    }

    fn drain_timeout(&self, bad: &mut impl FnMut(&str, String)) -> Duration {
        let ms = self.drain_timeout_ms.unwrap_or(DEFAULT_DRAIN_TIMEOUT_MS);
        if ms > 3_600_000 {
            bad(
                "server.drain_timeout_ms",
                format!("{ms} is more than an hour"),
            );
        }
        Duration::from_millis(ms.min(3_600_000))
    }

    fn io(&self, bad: &mut impl FnMut(&str, String)) -> IoChoice {
        let io_text = self.io.as_deref().unwrap_or("auto");
        IoChoice::parse(io_text).unwrap_or_else(|| {
            bad(
                "server.io",
                format!("{io_text:?} is not one of auto, uring, epoll"),
            );
            IoChoice::Auto
        })
    }
}

impl FileAdmin {
    /// The admin listener's address, or None when it is off.
    fn listen(&self, bad: &mut impl FnMut(&str, String)) -> Option<SocketAddr> {
        if !self.enabled.unwrap_or(true) {
            return None;
        }
        let text = self.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                bad(
                    "admin.listen",
                    format!("{text:?} is not an IP:port address ({e})"),
                );
                None
            }
        }
    }
}

impl FileLimits {
    fn validate(&self, bad: &mut impl FnMut(&str, String)) -> Limits {
        let l = self;
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
            bad,
            "limits.header_bytes_max",
            limits.header_bytes_max,
            256,
            1 << 20,
        );
        check_range(
            bad,
            "limits.headers_count_max",
            limits.headers_count_max,
            8,
            1000,
        );
        check_range(
            bad,
            "limits.connections_per_shard_max",
            limits.connections_per_shard_max,
            1,
            1_000_000,
        );
        check_range(
            bad,
            "limits.io_buffer_bytes",
            limits.io_buffer_bytes,
            1024,
            16 << 20,
        );
        limits
    }
}

impl FileTimeouts {
    fn validate(&self, bad: &mut impl FnMut(&str, String)) -> Timeouts {
        let t = self;
        Timeouts {
            request_head: ms(
                bad,
                "timeouts.request_head_ms",
                t.request_head_ms,
                DEFAULT_REQUEST_HEAD_TIMEOUT_MS,
            ),
            client_idle: ms(
                bad,
                "timeouts.client_idle_ms",
                t.client_idle_ms,
                DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
            ),
            upstream_connect: ms(
                bad,
                "timeouts.upstream_connect_ms",
                t.upstream_connect_ms,
                DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS,
            ),
            upstream_response: ms(
                bad,
                "timeouts.upstream_response_ms",
                t.upstream_response_ms,
                DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS,
            ),
        }
    }
}

impl FileUpstream {
    fn validate(&self, bad: &mut impl FnMut(&str, String)) -> UpstreamConfig {
        let u = self;
        let upstream = UpstreamConfig {
            pool_idle_per_origin_max: u
                .pool_idle_per_origin_max
                .unwrap_or(DEFAULT_POOL_IDLE_PER_ORIGIN_MAX),
            pool_idle_total_max: u.pool_idle_total_max.unwrap_or(DEFAULT_POOL_IDLE_TOTAL_MAX),
            pool_idle_timeout: ms(
                bad,
                "upstream.pool_idle_timeout_ms",
                u.pool_idle_timeout_ms,
                DEFAULT_POOL_IDLE_TIMEOUT_MS,
            ),
            dns_cache_ttl: ms(
                bad,
                "upstream.dns_cache_ttl_ms",
                u.dns_cache_ttl_ms,
                DEFAULT_DNS_CACHE_TTL_MS,
            ),
            dns_threads: u.dns_threads.unwrap_or(DEFAULT_DNS_THREADS),
            dns_timeout: ms(
                bad,
                "upstream.dns_timeout_ms",
                u.dns_timeout_ms,
                DEFAULT_DNS_TIMEOUT_MS,
            ),
            dns_negative_ttl: ms(
                bad,
                "upstream.dns_negative_ttl_ms",
                u.dns_negative_ttl_ms,
                DEFAULT_DNS_NEGATIVE_TTL_MS,
            ),
            dns_lookups_per_client_max: u
                .dns_lookups_per_client_max
                .unwrap_or(DEFAULT_DNS_LOOKUPS_PER_CLIENT_MAX),
        };
        check_range(
            bad,
            "upstream.dns_lookups_per_client_max",
            upstream.dns_lookups_per_client_max,
            1,
            1024,
        );
        check_range(bad, "upstream.dns_threads", upstream.dns_threads, 1, 256);
        if upstream.dns_lookups_per_client_max >= upstream.dns_threads {
            // One client could then hold every resolver thread.
            bad(
                "upstream.dns_lookups_per_client_max",
                format!(
                    "{} is not less than upstream.dns_threads ({})",
                    upstream.dns_lookups_per_client_max, upstream.dns_threads
                ),
            );
        }
        upstream
    }
}

impl FileLog {
    fn level(&self, bad: &mut impl FnMut(&str, String)) -> String {
        let log_level = self.level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            bad(
                "log.level",
                format!("{log_level:?} is not one of error, warn, info, debug, trace"),
            );
        }
        log_level
    }

    fn access_log_format(
        &self,
        bad: &mut impl FnMut(&str, String),
    ) -> crate::appliance::access_log::Format {
        use crate::appliance::access_log::Format;
        match self.access_log_format.as_deref() {
            None | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some(other) => {
                bad(
                    "log.access_log_format",
                    format!("{other:?} is not one of text, json"),
                );
                Format::Text
            }
        }
    }
}

impl FileUring {
    fn validate(&self, bad: &mut impl FnMut(&str, String)) -> UringConfig {
        let ur = self;
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
        check_range(bad, "uring.buffer_bytes", uring.buffer_bytes, 1024, 1 << 20);
        check_range(
            bad,
            "uring.fixed_files",
            uring.fixed_files as usize,
            0,
            65536,
        );
        uring
    }
}

/// The `[[route]]` tables, in order.
fn routes(file: &[FileRoute], bad: &mut impl FnMut(&str, String)) -> Vec<Route> {
    let mut routes = Vec::new();
    for (i, r) in file.iter().enumerate() {
        match OriginUrl::parse(&r.origin) {
            Ok(origin) => routes.push(Route {
                host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                // Compared with request paths as an origin reads them: in that form.
                path_prefix: r.path_prefix.as_deref().map_or("/".into(), |p| {
                    crate::http::target::path_for_matching(p).into_owned()
                }),
                origin,
                preserve_host: r.preserve_host.unwrap_or(false),
                clients_allowed: r.clients_allowed.as_ref().map(|list| {
                    let key = format!("route[{i}].clients_allowed");
                    crate::access::clients::ClientList::new(listed_prefixes(list, &key, bad))
                }),
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
    routes
}

impl FileDistill {
    /// Profiles first: the choice settings and rules name profiles, so they are checked
    /// against the merged list, built-ins included.
    fn validate(&self, bad: &mut impl FnMut(&str, String)) -> DistillConfig {
        let profiles = self.merged_profiles(bad);
        let choice = self.choice(profiles, bad);
        let limits = self.image_limits(bad);
        let pool_threads = self.pool_threads.unwrap_or(DEFAULT_DISTILL_POOL_THREADS);
        check_range(bad, "distill.pool_threads", pool_threads, 1, 256);
        DistillConfig {
            choice,
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

    /// The built-in profiles with each `[[distill.profile]]` laid over them in file
    /// order: a table names a profile to change (a later table changes what an earlier
    /// one left) or a new one to add.
    fn merged_profiles(&self, bad: &mut impl FnMut(&str, String)) -> Vec<Profile> {
        let mut profiles = builtin();
        for (i, p) in self.profiles.iter().enumerate() {
            let merged = merge_profile(i, p, &profiles, bad);
            match profiles.iter_mut().find(|b| b.name == merged.name) {
                Some(slot) => *slot = merged,
                None => profiles.push(merged),
            }
        }
        profiles
    }

    /// Which profile each client gets: the named defaults, then the operator's rules.
    fn choice(&self, profiles: Vec<Profile>, bad: &mut impl FnMut(&str, String)) -> Choice {
        let mut name = |key: &str, v: &Option<String>, default: &str| {
            profile_name(&profiles, bad, key, v, default)
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
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(i, r, &profiles, bad))
            .collect();
        Choice {
            profiles,
            rules,
            default,
            save_data,
            slow_link,
            medium_link,
        }
    }

    /// What one image job may cost, so a hostile image is refused, not decoded.
    fn image_limits(&self, bad: &mut impl FnMut(&str, String)) -> crate::distill::image::Limits {
        crate::distill::image::Limits {
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
            animation_pixels_max: self
                .animation_pixels_max
                .unwrap_or(DEFAULT_DISTILL_ANIMATION_PIXELS_MAX),
            time_max: ms(
                bad,
                "distill.job_time_ms",
                self.job_time_ms,
                DEFAULT_DISTILL_JOB_TIME_MS,
            ),
        }
    }
}

/// Table `i` of `[[distill.profile]]` over the profile of that name in `profiles`; a
/// new name takes what its table leaves out from "medium", the middle of the built-ins.
fn merge_profile(
    i: usize,
    p: &FileProfile,
    profiles: &[Profile],
    bad: &mut impl FnMut(&str, String),
) -> Profile {
    let base = profiles.iter().find(|b| b.name == p.name).cloned();
    let base = base.unwrap_or_else(|| Profile {
        name: p.name.clone(),
        ..builtin()[2].clone()
    });
    let q = p.quality.unwrap_or(base.quality);
    let wq = p.webp_quality.unwrap_or(base.webp_quality);
    for (key, v) in [("quality", q), ("webp_quality", wq)] {
        if !(1..=100).contains(&v) {
            bad(
                &format!("distill.profile[{i}].{key}"),
                format!("{v} is outside 1..=100"),
            );
        }
    }
    // Clamped as well as reported, so the profile holds a usable quality either way.
    Profile {
        max_edge: p.max_edge.unwrap_or(base.max_edge),
        quality: q.clamp(1, 100),
        webp_quality: wq.clamp(1, 100),
        webp_sharp_yuv: p.webp_sharp_yuv.unwrap_or(base.webp_sharp_yuv),
        grayscale: p.grayscale.unwrap_or(base.grayscale),
        flatten_animation: p.flatten_animation.unwrap_or(base.flatten_animation),
        compress_text: p.compress_text.unwrap_or(base.compress_text),
        ..base
    }
}

/// A profile setting (`v`, else `default`), which must name a profile that exists.
fn profile_name(
    profiles: &[Profile],
    bad: &mut impl FnMut(&str, String),
    key: &str,
    v: &Option<String>,
    default: &str,
) -> String {
    let n = v.clone().unwrap_or_else(|| default.to_string());
    if !profiles.iter().any(|p| p.name == n) {
        bad(key, format!("{n:?} is not a profile"));
    }
    n
}

/// Table `i` of `[[distill.rule]]`: its client and its profile are both checked, so one
/// run of `check-config` reports both.
fn rule(i: usize, r: &FileRule, profiles: &[Profile], bad: &mut impl FnMut(&str, String)) -> Rule {
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
    Rule {
        client,
        user_agent: r.user_agent.clone(),
        profile: r.profile.clone(),
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
            range_parts_max: self
                .range_parts_max
                .unwrap_or(DEFAULT_CACHE_RANGE_PARTS_MAX),
            targeted_fields: self.targeted_fields(bad),
        };
        check_range(bad, "cache.range_parts_max", cfg.range_parts_max, 1, 1024);
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

impl FileCache {
    /// Field names (tokens), lower-cased for matching.
    fn targeted_fields(&self, bad: &mut impl FnMut(&str, String)) -> Vec<String> {
        let names: Vec<String> = match &self.targeted_fields {
            None => DEFAULT_CACHE_TARGETED_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(list) => list.clone(),
        };
        let is_token = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        for n in names.iter().filter(|n| !is_token(n)) {
            bad(
                "cache.targeted_fields",
                format!("{n:?} is not a field name"),
            );
        }
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case("cache-control"))
        {
            bad(
                "cache.targeted_fields",
                "Cache-Control is what targeted fields take precedence over".into(),
            );
        }
        names.iter().map(|n| n.to_ascii_lowercase()).collect()
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

/// `[forward]`: the client list (default: loopback and the private ranges), the
/// destination rules and the ports.
fn forward(
    f: &super::file::FileForward,
    bad: &mut impl FnMut(&str, String),
) -> super::ForwardConfig {
    use crate::access::clients::{ClientList, DEFAULT_CLIENTS};
    use crate::access::destinations::{
        DEFAULT_DENIED, DEFAULT_PORTS, DestinationRules, parse_port_range,
    };
    let clients = prefixes(&f.clients_allowed, &DEFAULT_CLIENTS, "clients_allowed", bad);
    let denied = prefixes(
        &f.destinations_denied,
        &DEFAULT_DENIED,
        "destinations_denied",
        bad,
    );
    let allowed = prefixes(&f.destinations_allowed, &[], "destinations_allowed", bad);
    let mut ports = Vec::new();
    for (i, p) in strings(&f.ports_allowed, &DEFAULT_PORTS).iter().enumerate() {
        match parse_port_range(p) {
            Some(range) => ports.push(range),
            None => bad(
                &format!("forward.ports_allowed[{i}]"),
                format!("{p:?} is not a port (1-65535) or a range like \"1025-65535\""),
            ),
        }
    }
    let connect_ports = f.connect_ports.clone().unwrap_or(vec![443]);
    for (i, p) in connect_ports.iter().enumerate() {
        if *p == 0 {
            bad(
                &format!("forward.connect_ports[{i}]"),
                "port 0 is not a port".into(),
            );
        }
    }
    super::ForwardConfig {
        clients_allowed: ClientList::new(clients),
        refusals: Default::default(),
        destinations: DestinationRules::new(denied, allowed, ports),
        destination_refusals: Default::default(),
        connect_ports,
        connect_idle: ms(bad, "forward.connect_idle_ms", f.connect_idle_ms, 300_000),
        request_rate: request_rate(f, bad),
        client_connections_max: f.client_connections_max.unwrap_or(0),
        auth: proxy_auth(f, bad),
    }
}

/// `forward.auth_file` (users and their bcrypt or argon2 hashes), its realm, and the
/// failed attempts a client may make a minute.
fn proxy_auth(
    f: &super::file::FileForward,
    bad: &mut impl FnMut(&str, String),
) -> Option<std::sync::Arc<crate::access::auth::ProxyAuth>> {
    use crate::access::auth::{ProxyAuth, Users};
    let failures = f.auth_failures_per_min.unwrap_or(10);
    check_range(
        bad,
        "forward.auth_failures_per_min",
        failures as usize,
        1,
        10_000,
    );
    let realm = f.auth_realm.clone().unwrap_or_else(|| "distilld".into());
    if realm.is_empty()
        || realm
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\')
    {
        bad(
            "forward.auth_realm",
            format!("{realm:?}: printable, without quotes or backslashes"),
        );
    }
    let path = f.auth_file.as_deref().filter(|p| !p.is_empty())?;
    match Users::load(std::path::Path::new(path)) {
        Ok(users) => Some(std::sync::Arc::new(ProxyAuth::new(users, realm, failures))),
        Err(e) => {
            bad("forward.auth_file", e.to_string());
            None
        }
    }
}

/// `forward.client_requests_per_s` (0: off) and its burst.
fn request_rate(
    f: &super::file::FileForward,
    bad: &mut impl FnMut(&str, String),
) -> Option<std::sync::Arc<crate::access::limits::RequestRate>> {
    use crate::access::limits::{BURST_MAX, RequestRate};
    let per_s = f.client_requests_per_s.unwrap_or(0);
    let burst = f.client_requests_burst.unwrap_or(100);
    check_range(
        bad,
        "forward.client_requests_per_s",
        per_s as usize,
        0,
        1_000_000,
    );
    check_range(
        bad,
        "forward.client_requests_burst",
        burst as usize,
        1,
        BURST_MAX as usize,
    );
    (per_s > 0).then(|| std::sync::Arc::new(RequestRate::new(per_s, burst)))
}

/// A list of strings from the file, or the default.
fn strings(given: &Option<Vec<String>>, default: &[&str]) -> Vec<String> {
    match given {
        Some(list) => list.clone(),
        None => default.iter().map(|s| s.to_string()).collect(),
    }
}

/// `forward.<key>`: addresses and prefixes, each checked.
fn prefixes(
    given: &Option<Vec<String>>,
    default: &[&str],
    key: &str,
    bad: &mut impl FnMut(&str, String),
) -> Vec<crate::access::prefix::Prefix> {
    listed_prefixes(&strings(given, default), &format!("forward.{key}"), bad)
}

/// The addresses and prefixes of the list at `key`, each checked.
fn listed_prefixes(
    list: &[String],
    key: &str,
    bad: &mut impl FnMut(&str, String),
) -> Vec<crate::access::prefix::Prefix> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match parse_prefix(p) {
            Some(prefix) => out.push(prefix),
            None => bad(
                &format!("{key}[{i}]"),
                format!("{p:?} is not an address or a prefix like 10.0.0.0/8"),
            ),
        }
    }
    out
}
