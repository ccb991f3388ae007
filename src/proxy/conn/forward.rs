//! Forwarding a request to the node that owns its key (`crate::cluster`): the owner
//! answers from its cache or fetches, distils and stores, and this node streams the
//! answer back. A forwarded request carries the hop field and is never forwarded
//! again. A peer that cannot be reached is passed over for `cluster.peer_down_ms` and
//! the request goes to the next candidate, or is served here: a client never sees an
//! error for a request that could be served (idempotent requests without a body; others
//! get the error, as from an origin).

use crate::cluster::hop::{self, Hop};
use std::sync::Arc;

use crate::cluster::ring::Ring;
use crate::config::cluster::{ClusterConfig, InFlight};
use crate::http::request::RequestHead;
use crate::http::target::{Authority, Destination};

use super::super::heads::write_peer_request;
use super::super::stats::Stats;
use super::caching::CacheCtx;
use super::distilling::{DistillCtx, strip_original_marker};
use super::exchange::{Exchange, Fetch, Response, Stage, Upstream};
use super::next::Next;
use super::stored::Served;
use super::{Action, Conn, Now};

/// The peer a request goes to, and the candidates after it.
#[derive(Debug, Clone)]
pub(super) struct PeerRoute {
    pub(super) node: usize,
    /// The key's slot in the ring (a ramping peer takes back some slots before others).
    slot: usize,
    rest: Vec<u8>,
    /// The request's key in the near-cache, when its answer may be kept there.
    near_key: Option<Arc<str>>,
}

impl Conn {
    /// The peer to forward `head` to, or None to serve it here (no cluster, this node
    /// owns the key or is the best candidate up, or the request was forwarded already).
    pub(super) fn peer_route(
        &self,
        head: &RequestHead,
        dest: &Destination,
        now: Now<'_>,
    ) -> Option<PeerRoute> {
        let c = self.cfg.cluster.as_ref()?;
        if let Some(hop) = self.trusted_hop(head) {
            self.stats.cluster_served_for_peers.incr();
            if hop.digest != c.digest {
                // Placed with another node list: served here all the same, never sent on.
                self.stats.cluster_digest_mismatch.incr();
                tracing::debug!(client = %self.peer, "forwarded request from a node whose cluster view differs");
            }
            return None;
        }
        // Every variant of a URL (profiles, codings, the original) lives with its owner.
        let mut path = dest.path.clone();
        strip_original_marker(&mut path);
        let key = crate::cache::key::primary(&Destination {
            path,
            ..dest.clone()
        });
        let slot = Ring::slot_of(&key);
        let mut route = next_candidate(c, slot, c.ring.candidates(&key), &self.stats, now)?;
        route.near_key = self.near_key(head, dest);
        Some(route)
    }

    /// Where a request for a key owned elsewhere goes: a fresh copy in the near-cache
    /// answers it here, or else the owner.
    pub(super) fn near_or_peer(&self, head: &RequestHead, route: PeerRoute, now: Now<'_>) -> Next {
        let copy = route
            .near_key
            .as_deref()
            .and_then(|k| self.near_copy(head, k, now));
        match copy {
            Some(object) => {
                self.stats.cluster_near_hits.incr();
                Next::Stored(crate::cache::shard_refs::Held::new(object), Served::Near)
            }
            None => Next::Peer(route),
        }
    }

    /// The request's key in the near-cache: its variant's key as its owner stores it
    /// (the profile is chosen here by the same rules). None when the near-cache is off
    /// or the request is not one a shared cache answers.
    fn near_key(&self, head: &RequestHead, dest: &Destination) -> Option<Arc<str>> {
        self.cfg.cluster.as_ref()?.near.as_ref()?;
        let authorized = head
            .fields()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        let unevaluated = super::caching::has_unevaluated_precondition(head);
        if head.method() != "GET" || head.has_body() || authorized || unevaluated {
            return None;
        }
        let mut dest = dest.clone();
        let distill = self.distill_ctx(head, &mut dest);
        let primary = crate::cache::key::primary(&dest);
        Some(match distill {
            Some(d) => d.variant_key(&primary),
            None => primary,
        })
    }

    /// An unsafe request for a URL (or a PURGE) goes to its owner: the copies here go.
    fn drop_near_copies(&self, c: &ClusterConfig, head: &RequestHead, dest: &Destination) {
        let Some(near) = c.near.as_ref() else { return };
        if matches!(head.method(), "GET" | "HEAD" | "OPTIONS" | "TRACE") {
            return;
        }
        let mut dest = dest.clone();
        strip_original_marker(&mut dest.path);
        self.remove_with_variants(&near.store, &crate::cache::key::primary(&dest));
    }

    /// Sends the request to the peer (asks the driver for a connection to it).
    pub(super) fn start_forward(
        &mut self,
        head: RequestHead,
        dest: Destination,
        route: PeerRoute,
        now: Now<'_>,
    ) {
        let Some(c) = self.cfg.cluster.clone() else {
            return self.serve_here(head, dest, now);
        };
        let Some(peer) = c.nodes.get(route.node) else {
            return self.serve_here(head, dest, now);
        };
        if head.expect_continue && head.has_body() && head.minor_version == 1 {
            self.out.extend(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let up_head = self.peer_head(&c, &head, &dest, b"");
        let to = peer_authority(peer);
        self.stats.cluster_forwarded.incr();
        self.drop_near_copies(&c, &head, &dest);
        // Popular enough to keep: the answer is copied into the near-cache.
        let near = c.near.as_ref().and_then(|near| {
            let key = route.near_key.clone().filter(|k| near.touch(k))?;
            Some(self.near_ctx(&head, &dest, key, now))
        });
        let in_flight = InFlight::start(&c.health, route.node);
        let fetch = self.fetching(up_head, (to, false), Some(route), Some(in_flight), now);
        self.ex = Some(Exchange::new(head, dest, near, None, fetch, now.instant));
    }

    /// The request head sent to a peer: the client's, with the hop field (vouched for
    /// with the cluster's secret) and `extra` field lines.
    fn peer_head(
        &self,
        c: &ClusterConfig,
        head: &RequestHead,
        dest: &Destination,
        extra: &[u8],
    ) -> Vec<u8> {
        let mut hop = Hop {
            node: c.node.clone(),
            digest: c.digest,
            client: Some(self.client_ip(head)),
            mac: None,
        };
        if let Some(secret) = &c.secret {
            hop.vouch(secret, head.method(), head.target());
        }
        let mut up_head = Vec::with_capacity(256 + head.fields().count() * 32);
        write_peer_request(&mut up_head, head, dest, &hop, extra);
        up_head
    }

    /// The peer to fill a miss from while this node warms: the key's previous owner
    /// (its runner-up), when this node owns the key, has just joined or come back, and
    /// the miss is a plain GET this node fetches for the cache.
    pub(super) fn warm_source(
        &self,
        head: &RequestHead,
        ctx: &CacheCtx,
        now: Now<'_>,
    ) -> Option<usize> {
        let c = self.cfg.cluster.as_ref()?;
        if now.instant >= c.warm_until || !ctx.is_cold_miss() {
            return None;
        }
        if head.method() != "GET" || head.has_body() {
            return None;
        }
        let candidates = c.ring.candidates(ctx.primary());
        if candidates.first().map(|&n| usize::from(n)) != Some(c.me) {
            return None;
        }
        candidates
            .iter()
            .map(|&n| usize::from(n))
            .find(|&n| n != c.me && c.health.is_up(n, now.instant))
    }

    /// Asks the previous owner `node` for its stored original of the miss (never its
    /// origin: `only-if-cached`); what it answers is stored here as the origin's would be.
    pub(super) fn start_warm(
        &mut self,
        head: RequestHead,
        dest: Destination,
        cache: Box<CacheCtx>,
        distill: Option<Box<DistillCtx>>,
        node: usize,
        now: Now<'_>,
    ) {
        let peer = self.cfg.cluster.clone().and_then(|c| {
            let peer = c.nodes.get(node)?.clone();
            Some((c, peer))
        });
        let Some((c, peer)) = peer else {
            let mut cache = cache;
            cache.warm_from = None;
            return self.start_fetch(head, dest, Some(cache), distill, now);
        };
        // no-transform: its stored original byte for byte (no profile, no coding).
        let extra = b"Cache-Control: only-if-cached, no-transform\r\n";
        let up_head = self.peer_head(&c, &head, &dest, extra);
        let in_flight = InFlight::start(&c.health, node);
        let to = (peer_authority(&peer), false);
        let fetch = self.fetching(up_head, to, None, Some(in_flight), now);
        self.ex = Some(Exchange::new(
            head,
            dest,
            Some(cache),
            distill,
            fetch,
            now.instant,
        ));
    }

    /// The previous owner did not have the object (`failed` = None), or could not be
    /// asked: the miss goes to the origin after all.
    pub(super) fn warm_missed(&mut self, failed: Option<&str>, now: Now<'_>) -> bool {
        let Some(c) = self.cfg.cluster.clone() else {
            return false;
        };
        let warm = self.ex.as_ref().and_then(|e| e.cache.as_deref()?.warm_from);
        let Some(node) = warm else {
            return false;
        };
        let Some(ex) = self.ex.take() else {
            return false;
        };
        match failed {
            Some(why) => {
                c.health.mark_down(node, now.instant, c.peer_down);
                self.stats.cluster_peer_failures.incr();
                let peer = c.nodes.get(node).map_or("?", |n| n.id.as_str());
                tracing::warn!(
                    peer,
                    "cluster peer failed ({why}) while filling a miss from it"
                );
            }
            None => self.stats.cluster_warm_misses.incr(),
        }
        self.actions.push_back(Action::CloseUpstream);
        self.up_out.clear();
        let Exchange {
            head,
            dest,
            mut cache,
            distill,
            ..
        } = *ex;
        if let Some(ctx) = cache.as_deref_mut() {
            ctx.warm_from = None;
        }
        self.start_fetch(head, dest, cache, distill, now);
        true
    }

    /// The peer the exchange was forwarded to failed before its response began: pass
    /// it over, and send the request to the next candidate or serve it here. False
    /// (nothing done) when the exchange is not a forward or may not be sent again.
    pub(super) fn reroute(&mut self, why: &str, now: Now<'_>) -> bool {
        let Some(c) = self.cfg.cluster.clone() else {
            return false;
        };
        if self.warm_missed(Some(why), now) {
            return true;
        }
        let Some(ex) = self.ex.as_mut() else {
            return false;
        };
        let safe_again = is_idempotent(ex.head.method()) && !ex.head.has_body();
        let Some(Fetch {
            peer: Some(route),
            upstream,
            ..
        }) = ex.fetch_mut()
        else {
            return false;
        };
        // Nothing has left this node before the connection is attached: any request
        // may go elsewhere then; after, only one that is safe to send twice.
        let replayable = matches!(upstream, Upstream::Acquiring { .. }) || safe_again;
        let route = route.clone();
        let failed = c.nodes.get(route.node).map_or("?", |n| n.id.as_str());
        c.health.mark_down(route.node, now.instant, c.peer_down);
        self.stats.cluster_peer_failures.incr();
        tracing::warn!(
            peer = failed,
            "cluster peer failed ({why}): passed over for {} ms",
            c.peer_down.as_millis()
        );
        if !replayable {
            return false;
        }
        let Some(ex) = self.ex.take() else {
            return false;
        };
        self.actions.push_back(Action::CloseUpstream);
        self.up_out.clear();
        let Exchange { head, dest, .. } = *ex;
        match next_candidate(&c, route.slot, &route.rest, &self.stats, now) {
            Some(mut next) => {
                next.near_key = route.near_key;
                self.start_forward(head, dest, next, now)
            }
            None => self.serve_here(head, dest, now),
        }
        true
    }

    /// The peer this exchange waits on for a response head has been declared down
    /// (by membership, or by another request's failure): it will not answer.
    pub(super) fn forward_abandoned(&self) -> bool {
        let (Some(c), Some(ex)) = (self.cfg.cluster.as_ref(), self.ex.as_ref()) else {
            return false;
        };
        let peer = match &ex.stage {
            Stage::Fetching(Fetch {
                peer,
                response: Response::AwaitHead { .. },
                ..
            }) => peer.as_ref().map(|r| r.node),
            _ => return false,
        };
        let warm = ex.cache.as_deref().and_then(|ctx| ctx.warm_from);
        peer.or(warm).is_some_and(|n| !c.health.is_alive(n))
    }

    /// The client a peer forwarded this request for, written into X-Forwarded-For in
    /// its stead (only from a hop this node trusts).
    pub(super) fn forwarded_client(&self, head: &RequestHead) -> Option<String> {
        self.trusted_hop(head)?.client.map(|ip| ip.to_string())
    }

    /// The address per-client rules see: the client a trusted peer forwarded the
    /// request for, else the connection's peer.
    pub(super) fn client_ip(&self, head: &RequestHead) -> std::net::IpAddr {
        if self.cfg.cluster.is_none() {
            return self.peer.ip();
        }
        self.trusted_hop(head)
            .and_then(|h| h.client)
            .unwrap_or(self.peer.ip())
    }

    /// The request's hop field, when it comes from a node of the cluster: with a secret,
    /// its tag must vouch for this request; without one, the connection must come from
    /// another node's address. A hop from anyone else is ignored (the request is placed
    /// as any other, and the field is replaced if it is forwarded).
    pub(super) fn trusted_hop(&self, head: &RequestHead) -> Option<Hop> {
        let c = self.cfg.cluster.as_ref()?;
        let (_, value) = head
            .fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(hop::FIELD))?;
        let hop = Hop::parse(value)?;
        let trusted = match &c.secret {
            Some(secret) => hop.vouched(secret, head.method(), head.target()),
            None => {
                let from = self.peer.ip().to_canonical();
                let mine = c.nodes.get(c.me).map(|n| n.http.ip().to_canonical());
                Some(from) != mine && c.nodes.iter().any(|n| n.http.ip().to_canonical() == from)
            }
        };
        trusted.then_some(hop)
    }

    /// The `Cache-Status` entry this node adds to a forwarded response.
    pub(super) fn forwarded_status(&self, route: &PeerRoute) -> Vec<u8> {
        let Some(c) = self.cfg.cluster.as_ref() else {
            return Vec::new();
        };
        let owner = c.nodes.get(route.node).map_or("?", |n| n.id.as_str());
        format!(
            "Cache-Status: distilld-{}; fwd=bypass; detail=owner-{owner}\r\n",
            c.node
        )
        .into_bytes()
    }
}

/// The first of `candidates` that is this node (None: serve here) or a peer up.
/// A peer over its bound is passed over for the next candidate (the last candidate
/// takes the request whatever its load: the key has to be served somewhere).
/// A peer back from down is passed over for the slots it has not yet got back.
fn next_candidate(
    c: &ClusterConfig,
    slot: usize,
    candidates: &[u8],
    stats: &Stats,
    now: Now<'_>,
) -> Option<PeerRoute> {
    let last = candidates.len().saturating_sub(1);
    for (i, &n) in candidates.iter().enumerate() {
        let n = usize::from(n);
        if n == c.me {
            return None;
        }
        if !c.health.is_up(n, now.instant) {
            continue;
        }
        if !c.health.ramped(n, slot, c.rampup, now.instant) {
            stats.cluster_ramped.incr();
            continue;
        }
        if i != last
            && !c
                .health
                .within_bound(n, c.balance_factor, c.me, now.instant)
        {
            stats.cluster_spilled.incr();
            continue;
        }
        return Some(PeerRoute {
            node: n,
            slot,
            near_key: None,
            rest: candidates[i + 1..].to_vec(),
        });
    }
    None
}

fn peer_authority(peer: &crate::config::cluster::Node) -> Authority {
    Authority {
        host: peer.http.ip().to_string(),
        port: peer.http.port(),
    }
}

/// A 5xx the peer made about itself (RFC 9209 Proxy-Status naming an error of the
/// intermediary, such as a node out of connections), not an error of the origin it
/// passes on: the peer failed, and the request can go to the next candidate. Whatever
/// a peer passes on from an origin (or serves from its cache) carries its Via, which an
/// origin cannot take off: a response with a Via is never the peer's own refusal, so an
/// origin cannot make a healthy peer look failed by sending such a Proxy-Status itself.
pub(super) fn peer_layer_failure(resp: &crate::http::response::ResponseHead) -> bool {
    let passed_on = resp.fields().any(|(n, _)| n.eq_ignore_ascii_case("via"));
    resp.status >= 500
        && !passed_on
        && resp
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case("proxy-status"))
            .any(|(_, v)| {
                let v = String::from_utf8_lossy(v);
                ["proxy_internal_response", "proxy_internal_error"]
                    .iter()
                    .any(|e| v.contains(&format!("error={e}")))
            })
}

/// RFC 9110 §9.2.2: safe to send again after a failure.
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::HeadLimits;
    use crate::http::response::parse_response;

    fn head(text: &str) -> crate::http::response::ResponseHead {
        let limits = HeadLimits {
            header_bytes_max: 8192,
            headers_count_max: 50,
        };
        let (resp, _) = parse_response(text.as_bytes(), limits, false)
            .expect("parses")
            .expect("complete");
        resp
    }

    #[test]
    fn only_a_peer_s_own_5xx_passes_it_over() {
        let refused = std::str::from_utf8(crate::shard::clients::REFUSED_RESPONSE).expect("text");
        assert!(
            peer_layer_failure(&head(refused)),
            "a node out of connections"
        );
        // The origin's own errors, passed on by the owner, are the origin's.
        let origin_503 = "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n";
        assert!(!peer_layer_failure(&head(origin_503)));
        let unreachable = "HTTP/1.1 502 Bad Gateway\r\nProxy-Status: distilld; error=connection_refused\r\nContent-Length: 0\r\n\r\n";
        assert!(!peer_layer_failure(&head(unreachable)));
        // An origin's own Proxy-Status, passed on by the owner (with its Via).
        let forged = "HTTP/1.1 503 Busy\r\nProxy-Status: x; error=proxy_internal_error\r\nVia: 1.1 distilld\r\nContent-Length: 0\r\n\r\n";
        assert!(
            !peer_layer_failure(&head(forged)),
            "the origin's, not the peer's"
        );
        let ok = "HTTP/1.1 200 OK\r\nProxy-Status: distilld; error=proxy_internal_error\r\nContent-Length: 0\r\n\r\n";
        assert!(!peer_layer_failure(&head(ok)), "not an error at all");
    }
}
