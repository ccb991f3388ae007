//! `GET /metrics`: the node's counters in the Prometheus/OpenMetrics text format, read
//! at scrape time from the shards' own counters (nothing is counted twice and the hit
//! path never touches a metrics library). Names start with `distilld_`; counters end
//! in `_total`, units are `_bytes` and `_seconds`; labels are bounded (status class,
//! shard, outcome, kind, driver).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::histogram::Snapshot;
use crate::proxy::stats::{Counter, DECLINE_REASONS, Stats, UPSTREAM_ERROR_KINDS};

use super::view::NodeView;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The whole exposition, as text.
pub fn render(view: &Arc<NodeView>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector(view.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("cannot encode the metrics: {e}");
    }
    out
}

#[derive(Debug)]
struct NodeCollector(Arc<NodeView>);

impl std::fmt::Debug for NodeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeView(pid {})", self.pid)
    }
}

type Fmt = Result<(), std::fmt::Error>;
/// Picks one counter of a shard's stats.
type Pick = fn(&Stats) -> &Counter;

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        let v = &*self.0;
        traffic(v, &mut e)?;
        cache(v, &mut e)?;
        distill(v, &mut e)?;
        shards(v, &mut e)?;
        cluster(v, &mut e)?;
        process(v, &mut e)
    }
}

fn traffic(v: &NodeView, e: &mut DescriptorEncoder) -> Fmt {
    let plain: [(&str, &str, Pick); 7] = [
        ("distilld_requests", "Requests parsed from clients.", |s| {
            &s.requests
        }),
        (
            "distilld_connections_accepted",
            "Client connections accepted.",
            |s| &s.connections_accepted,
        ),
        (
            "distilld_connections_refused",
            "Client connections refused over connections_per_shard_max.",
            |s| &s.connections_refused,
        ),
        (
            "distilld_access_log_lines_dropped",
            "Access log lines dropped because the access log writer fell behind.",
            |s| &s.access_log_dropped,
        ),
        (
            "distilld_access_log_lines_unwritten",
            "Access log lines lost because writing them to stderr failed.",
            |s| &s.access_log_unwritten,
        ),
        (
            "distilld_truncated_responses",
            "Responses cut short (the client connection reset).",
            |s| &s.truncated_responses,
        ),
        (
            "distilld_upstream_retries",
            "Requests sent again after a pooled origin connection had closed.",
            |s| &s.upstream_retries,
        ),
    ];
    for (name, help, pick) in plain {
        counter(e, name, help, None, v.total(pick))?;
    }
    counter(
        e,
        "distilld_client_received",
        "Bytes read from clients (heads and bodies).",
        Some(Unit::Bytes),
        v.total(|s| &s.client_bytes_in),
    )?;
    counter(
        e,
        "distilld_response_body_queued",
        "Response body bytes queued to clients (a cached body when it is queued, whole).",
        Some(Unit::Bytes),
        v.total(|s| &s.client_body_bytes_out),
    )?;
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    let mut m = e.encode_descriptor(
        "distilld_responses",
        "Responses by status class.",
        None,
        MetricType::Counter,
    )?;
    for (i, class) in classes.iter().enumerate() {
        let n: u64 = v.stats.iter().map(|s| s.responses[i].get()).sum();
        ConstCounter::new(n).encode(m.encode_family(&[("class", *class)])?)?;
    }
    let mut m = e.encode_descriptor(
        "distilld_upstream_errors",
        "Origin failures by kind.",
        None,
        MetricType::Counter,
    )?;
    for (i, kind) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
        let n: u64 = v.stats.iter().map(|s| s.upstream_failures[i].get()).sum();
        ConstCounter::new(n).encode(m.encode_family(&[("kind", *kind)])?)?;
    }
    Ok(())
}

fn cache(v: &NodeView, e: &mut DescriptorEncoder) -> Fmt {
    let plain: [(&str, &str, Pick); 5] = [
        (
            "distilld_cache_hits",
            "Requests answered from the cache.",
            |s| &s.cache_hits,
        ),
        (
            "distilld_cache_misses",
            "Cacheable requests the cache could not answer.",
            |s| &s.cache_misses,
        ),
        (
            "distilld_cache_stale",
            "Stale responses served (while revalidating, or on an origin error).",
            |s| &s.cache_stale,
        ),
        (
            "distilld_cache_collapsed",
            "Requests that waited on another request's fetch of the same URL.",
            |s| &s.cache_collapsed,
        ),
        ("distilld_cache_stores", "Responses stored.", |s| {
            &s.cache_stores
        }),
    ];
    for (name, help, pick) in plain {
        counter(e, name, help, None, v.total(pick))?;
    }
    let (objects, bytes, budget, evictions) = match &v.cache {
        Some(store) => {
            let (n, b) = store.usage();
            (n as u64, b, store.budget(), store.evictions())
        }
        None => (0, 0, 0, 0),
    };
    gauge(
        e,
        "distilld_cache_objects",
        "Objects in the cache.",
        None,
        objects,
    )?;
    gauge(
        e,
        "distilld_cache",
        "Memory the cached objects take.",
        Some(Unit::Bytes),
        bytes,
    )?;
    gauge(
        e,
        "distilld_cache_budget",
        "The cache's memory budget.",
        Some(Unit::Bytes),
        budget,
    )?;
    counter(
        e,
        "distilld_cache_evictions",
        "Objects evicted to make room.",
        None,
        evictions,
    )?;
    gauge(
        e,
        "distilld_held",
        "Response bodies held in memory (for jobs and the cache).",
        Some(Unit::Bytes),
        v.held.used(),
    )
}

fn distill(v: &NodeView, e: &mut DescriptorEncoder) -> Fmt {
    counter(
        e,
        "distilld_distill_saved",
        "By how many bytes distilled bodies were smaller than their originals.",
        Some(Unit::Bytes),
        v.total(|s| &s.distill_saved_bytes),
    )?;
    let mut m = e.encode_descriptor(
        "distilld_distill_jobs",
        "Distillation jobs by outcome.",
        None,
        MetricType::Counter,
    )?;
    let distilled = v.total(|s| &s.distilled);
    ConstCounter::new(distilled).encode(m.encode_family(&[("outcome", "distilled")])?)?;
    for (i, reason) in DECLINE_REASONS.iter().enumerate() {
        let n: u64 = v.stats.iter().map(|s| s.distill_declined[i].get()).sum();
        ConstCounter::new(n).encode(m.encode_family(&[("outcome", *reason)])?)?;
    }
    let snap = crate::distill::JOB_SECONDS.snapshot();
    let mut m = e.encode_descriptor(
        "distilld_distill_job",
        "How long distillation jobs take.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        snap.sum,
        snap.count,
        &snap.buckets,
        None,
    )
}

fn shards(v: &NodeView, e: &mut DescriptorEncoder) -> Fmt {
    let mut m = e.encode_descriptor(
        "distilld_shard_connections",
        "Open client connections per shard.",
        None,
        MetricType::Gauge,
    )?;
    for i in 0..v.control.shards.len() {
        let id = i.to_string();
        ConstGauge::new(v.shard_clients(i) as i64)
            .encode(m.encode_family(&[("shard", id.as_str())])?)?;
    }
    let mut m = e.encode_descriptor(
        "distilld_shard_healthy",
        "1 while the shard's loop turns.",
        None,
        MetricType::Gauge,
    )?;
    for i in 0..v.control.shards.len() {
        let id = i.to_string();
        ConstGauge::new(i64::from(v.shard_healthy(i)))
            .encode(m.encode_family(&[("shard", id.as_str())])?)?;
    }
    let mut m = e.encode_descriptor(
        "distilld_shard_loop_turn",
        "How long one turn of a shard's event loop takes.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (i, health) in v.control.shards.iter().enumerate() {
        let id = i.to_string();
        let Snapshot {
            buckets,
            count,
            sum,
        } = health.turns.snapshot();
        let labels = [("shard", id.as_str())];
        let mut f = m.encode_family(&labels)?;
        f.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

fn cluster(v: &NodeView, e: &mut DescriptorEncoder) -> Fmt {
    let plain: [(&str, &str, Pick); 16] = [
        (
            "distilld_forward_clients_refused",
            "Forward-proxy requests refused (403): the client is not in forward.clients_allowed.",
            |s| &s.forward_clients_refused,
        ),
        (
            "distilld_forward_destinations_refused",
            "Forward-proxy requests refused (403): the port or the address the destination resolved to is denied ([forward] destinations_denied, ports_allowed).",
            |s| &s.forward_destinations_refused,
        ),
        (
            "distilld_forward_tunnels",
            "CONNECT tunnels opened (the destination connected, 200 sent).",
            |s| &s.forward_tunnels,
        ),
        (
            "distilld_client_limited",
            "Requests and connections refused with 429: the client was over forward.client_requests_per_s or forward.client_connections_max.",
            |s| &s.client_limited,
        ),
        (
            "distilld_route_clients_refused",
            "Reverse-proxy requests refused (403): the client is not in its route's clients_allowed.",
            |s| &s.route_clients_refused,
        ),
        (
            "distilld_forward_auth_failures",
            "Proxy credentials checked and found wrong (407).",
            |s| &s.auth_failures,
        ),
        (
            "distilld_cluster_ramped",
            "Requests sent past a peer still ramping up (its share of keys not yet back).",
            |s| &s.cluster_ramped,
        ),
        (
            "distilld_cluster_warm_fills",
            "Misses filled from the key's previous owner while this node warms.",
            |s| &s.cluster_warm_fills,
        ),
        (
            "distilld_cluster_warm_misses",
            "Misses the previous owner did not hold either (fetched from the origin).",
            |s| &s.cluster_warm_misses,
        ),
        (
            "distilld_cluster_near_hits",
            "Requests answered from the near-cache of hot objects owned elsewhere.",
            |s| &s.cluster_near_hits,
        ),
        (
            "distilld_cluster_near_stores",
            "Owners' answers kept in the near-cache.",
            |s| &s.cluster_near_stores,
        ),
        (
            "distilld_cluster_spilled",
            "Requests sent to a key's next candidate: its owner was over its load bound.",
            |s| &s.cluster_spilled,
        ),
        (
            "distilld_cluster_forwarded",
            "Requests forwarded to the node that owns their key.",
            |s| &s.cluster_forwarded,
        ),
        (
            "distilld_cluster_served_for_peers",
            "Requests other nodes forwarded here.",
            |s| &s.cluster_served_for_peers,
        ),
        (
            "distilld_cluster_peer_failures",
            "Forwards that failed before a response (the peer then passed over).",
            |s| &s.cluster_peer_failures,
        ),
        (
            "distilld_cluster_digest_mismatch",
            "Forwarded requests from a node whose node list differs from this one's.",
            |s| &s.cluster_digest_mismatch,
        ),
    ];
    for (name, help, pick) in plain {
        counter(e, name, help, None, v.total(pick))?;
    }
    let cfg = v.control.config();
    let Some(c) = cfg.cluster.as_ref() else {
        return Ok(());
    };
    let now = std::time::Instant::now();
    let mut m = e.encode_descriptor(
        "distilld_cluster_peer_up",
        "1 while this node sends requests to the peer.",
        None,
        MetricType::Gauge,
    )?;
    for (i, node) in c.nodes.iter().enumerate().filter(|(i, _)| *i != c.me) {
        let up = i64::from(c.health.is_up(i, now));
        ConstGauge::new(up).encode(m.encode_family(&[("peer", node.id.as_str())])?)?;
    }
    if let Some(near) = c.near.as_ref() {
        let (objects, bytes) = near.store.usage();
        let help = "Memory the near-cache's copies of objects owned elsewhere take.";
        gauge(e, "distilld_cluster_near", help, Some(Unit::Bytes), bytes)?;
        let help = "Copies in the near-cache.";
        gauge(
            e,
            "distilld_cluster_near_objects",
            help,
            None,
            objects as u64,
        )?;
    }
    let digest = format!("{:016x}", c.digest);
    let mut m = e.encode_descriptor(
        "distilld_cluster_node",
        "This node's id and the digest of its node list (1).",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(1)
        .encode(m.encode_family(&[("node", c.node.as_str()), ("digest", digest.as_str())])?)
}

fn process(v: &NodeView, e: &mut DescriptorEncoder) -> Fmt {
    counter(
        e,
        "distilld_log_lines_dropped",
        "Log lines dropped because the log writer fell behind.",
        None,
        v.dropped_logs.dropped_lines() as u64,
    )?;
    let mut m = e.encode_descriptor(
        "distilld_io_driver",
        "The network driver in use (1).",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(1).encode(m.encode_family(&[("driver", v.driver)])?)?;
    gauge(
        e,
        "distilld_start_time",
        "When the serving process started, in Unix seconds.",
        Some(Unit::Seconds),
        v.started_at,
    )?;
    let draining = i64::from(v.control.draining().is_some());
    let m = e.encode_descriptor(
        "distilld_draining",
        "1 while the process drains (stop or upgrade).",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(draining).encode(m)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<Unit>, n: u64) -> Fmt {
    let m = e.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
    ConstCounter::new(n).encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<Unit>, n: u64) -> Fmt {
    let m = e.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(m)
}
