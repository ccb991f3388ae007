//! Forwarding a request to the node that owns its key (`crate::cluster`): the owner
//! answers from its cache or fetches, distils and stores, and this node streams the
//! answer back. A forwarded request carries the hop field and is never forwarded
//! again. A peer that cannot be reached is passed over for `cluster.peer_down_ms` and
//! the request goes to the next candidate, or is served here: a client never sees an
//! error for a request that could be served (idempotent requests without a body; others
//! get the error, as from an origin).

use crate::cluster::hop::{self, Hop};
use crate::config::cluster::{ClusterConfig, InFlight};
use crate::http::request::RequestHead;
use crate::http::target::{Authority, Destination};

use super::super::heads::write_peer_request;
use super::super::stats::Stats;
use super::distilling::strip_original_marker;
use super::exchange::{Exchange, Fetch, Response, Stage, Upstream};
use super::{Action, Conn, Now};

/// The peer a request goes to, and the candidates after it.
#[derive(Debug, Clone)]
pub(super) struct PeerRoute {
    pub(super) node: usize,
    rest: Vec<u8>,
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
        next_candidate(c, c.ring.candidates(&key), &self.stats, now)
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
        let mut hop = Hop {
            node: c.node.clone(),
            digest: c.digest,
            client: Some(self.peer.ip()),
            mac: None,
        };
        if let Some(secret) = &c.secret {
            hop.vouch(secret, head.method(), head.target());
        }
        let mut up_head = Vec::with_capacity(256 + head.fields().count() * 32);
        write_peer_request(&mut up_head, &head, &dest, &hop);
        let to = Authority {
            host: peer.http.ip().to_string(),
            port: peer.http.port(),
        };
        self.actions.push_back(Action::Acquire {
            origin: to.clone(),
            pooled_ok: true,
        });
        self.stats.cluster_forwarded.incr();
        let fetch = Stage::Fetching(Fetch {
            up_head,
            to,
            _in_flight: Some(InFlight::start(&c.health, route.node)),
            peer: Some(route),
            upstream: Upstream::Acquiring { since: now.instant },
            retried: false,
            response: Response::AwaitHead { buf: Vec::new() },
        });
        self.ex = Some(Exchange::new(head, dest, None, None, fetch, now.instant));
    }

    /// The peer the exchange was forwarded to failed before its response began: pass
    /// it over, and send the request to the next candidate or serve it here. False
    /// (nothing done) when the exchange is not a forward or may not be sent again.
    pub(super) fn reroute(&mut self, why: &str, now: Now<'_>) -> bool {
        let Some(c) = self.cfg.cluster.clone() else {
            return false;
        };
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
        match next_candidate(&c, &route.rest, &self.stats, now) {
            Some(next) => self.start_forward(head, dest, next, now),
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
        match &ex.stage {
            Stage::Fetching(Fetch {
                peer: Some(route),
                response: Response::AwaitHead { .. },
                ..
            }) => !c.health.is_alive(route.node),
            _ => false,
        }
    }

    /// The client a peer forwarded this request for, written into X-Forwarded-For in
    /// its stead (only from a hop this node trusts).
    pub(super) fn forwarded_client(&self, head: &RequestHead) -> Option<String> {
        self.trusted_hop(head)?.client.map(|ip| ip.to_string())
    }

    /// The request's hop field, when it comes from a node of the cluster: with a secret,
    /// its tag must vouch for this request; without one, the connection must come from
    /// another node's address. A hop from anyone else is ignored (the request is placed
    /// as any other, and the field is replaced if it is forwarded).
    fn trusted_hop(&self, head: &RequestHead) -> Option<Hop> {
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
fn next_candidate(
    c: &ClusterConfig,
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
            rest: candidates[i + 1..].to_vec(),
        });
    }
    None
}

/// RFC 9110 §9.2.2: safe to send again after a failure.
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}
