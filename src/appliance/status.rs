//! `GET /status.json` (the live figures) and `GET /status` (a page that shows them at a
//! glance and refreshes from the JSON every second; no external assets, so it works
//! offline and behind any firewall).

use serde_json::json;

use super::view::NodeView;

pub const PAGE: &str = include_str!("status.html");

pub fn json(v: &NodeView) -> String {
    let rates = v.rates();
    let shards: Vec<_> = (0..v.control.shards.len())
        .map(|i| {
            let s = v.stats.get(i);
            let get = |f: fn(&crate::proxy::stats::Stats) -> u64| s.map_or(0, |s| f(s));
            json!({
                "shard": i,
                "healthy": v.shard_healthy(i),
                "connections": v.shard_clients(i),
                "requests": get(|s| s.requests.get()),
                // What clients saw go wrong: a 5xx answer, or a response cut short.
                "errors": get(|s| s.responses[4].get() + s.truncated_responses.get()),
            })
        })
        .collect();
    let (objects, bytes) = v.cache.as_ref().map_or((0, 0), |c| c.usage());
    json!({
        "pid": v.pid,
        "started_at": v.started_at,
        "driver": v.driver,
        "healthy": v.healthy(),
        "draining": v.control.draining().is_some(),
        "requests": v.total(|s| &s.requests),
        "requests_per_s": rates.requests_per_s,
        "hit_ratio": rates.hit_ratio,
        "cache_hits": v.total(|s| &s.cache_hits),
        "cache_misses": v.total(|s| &s.cache_misses),
        "cache_objects": objects,
        "cache_bytes": bytes,
        "bytes_saved": v.total(|s| &s.distill_saved_bytes),
        "distilled": v.total(|s| &s.distilled),
        "upstream_errors": v.stats.iter()
            .map(|s| s.upstream_failures.iter().map(|c| c.get()).sum::<u64>())
            .sum::<u64>(),
        "shards": shards,
    })
    .to_string()
}
