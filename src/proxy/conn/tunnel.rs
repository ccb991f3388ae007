//! CONNECT tunnels (RFC 9110 §9.3.6). Once the destination is connected the client is
//! told `200` and bytes flow both ways unchanged, through the connection's own buffers
//! with the same high-water marks as a proxied body: a side that stops reading stops
//! the other side's reads, so a tunnel holds at most those buffers. Nothing inside is
//! cached or distilled (the bytes are TLS). When the client closes its side, what it
//! sent is delivered and the destination's side is closed too (a FIN), while its answer
//! still flows back; when the destination closes, what it sent is delivered and both
//! close (RFC 9110 §9.3.6). A tunnel silent both ways for `forward.connect_idle_ms`
//! closes.

use crate::http::request::RequestHead;
use crate::http::target::Destination;

use super::exchange::{Exchange, Fetch, Response, Stage, Tunnel, Upstream};
use super::{Action, Conn, Now};

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

impl Conn {
    /// A CONNECT the rules let through: connect to the destination (never a pooled
    /// connection: a tunnel's connection is its client's alone).
    pub(super) fn begin_tunnel(&mut self, head: RequestHead, dest: Destination, now: Now<'_>) {
        if head.has_body() {
            self.refuse(400, "a CONNECT request has no content", now);
            self.no_more_requests = true;
            return;
        }
        self.actions.push_back(Action::Acquire {
            origin: dest.origin.clone(),
            pooled_ok: false,
            screened: dest.screened,
        });
        let stage = Stage::Fetching(Fetch {
            up_head: Vec::new(),
            to: dest.origin.clone(),
            screened: dest.screened,
            opens_tunnel: true,
            peer: None,
            _in_flight: None,
            upstream: Upstream::Acquiring { since: now.instant },
            // A failed connect is the client's to retry.
            retried: true,
            interim_bytes: 0,
            first_interim: None,
            response: Response::AwaitHead { buf: Vec::new() },
        });
        self.ex = Some(Exchange::new(head, dest, None, None, stage, now.instant));
    }

    /// The exchange is a CONNECT whose destination is now connected: `200`, then relay
    /// what the client already sent.
    pub(super) fn open_tunnel(&mut self, now: Now<'_>) -> bool {
        let Some(ex) = self.ex.as_mut() else {
            return false;
        };
        if !ex.fetch_mut().is_some_and(|f| f.opens_tunnel) {
            return false;
        }
        ex.stage = Stage::Tunnel(Tunnel {
            up: 0,
            down: 0,
            last_active: now.instant,
            client_done: false,
        });
        self.stats.upstream_connects.incr();
        self.stats.forward_tunnels.incr();
        self.out.extend(ESTABLISHED);
        self.relay_to_upstream(now);
        true
    }

    /// Client bytes into the destination's output, up to its high-water mark; once the
    /// client has closed and all it sent is queued, the destination is told (a FIN).
    pub(super) fn relay_to_upstream(&mut self, now: Now<'_>) {
        let watermark = self.watermark();
        let Some(t) = self.ex.as_mut().and_then(|ex| ex.tunnel_mut()) else {
            return;
        };
        let n = watermark
            .saturating_sub(self.up_out.len())
            .min(self.inbuf.len());
        if n > 0 {
            self.up_out.extend(&self.inbuf.pending()[..n]);
            self.inbuf.consume(n);
            t.up += n as u64;
            t.last_active = now.instant;
        }
        if self.client_eof && self.inbuf.is_empty() && self.up_out.is_empty() && !t.client_done {
            t.client_done = true;
            self.actions.push_back(Action::ShutdownUpstreamWrite);
        }
    }

    /// Destination bytes to the client. False when the exchange is not a tunnel.
    pub(super) fn relay_to_client(&mut self, data: &[u8], now: Now<'_>) -> bool {
        let Some(t) = self.ex.as_mut().and_then(|ex| ex.tunnel_mut()) else {
            return false;
        };
        t.down += data.len() as u64;
        t.last_active = now.instant;
        self.out.extend(data);
        true
    }

    /// The tunnel ends (`why`): both connections close once what is queued for the
    /// client is out; the access log gets the bytes each way.
    pub(super) fn close_tunnel(&mut self, why: &str, now: Now<'_>) -> bool {
        let Some(ex) = self.ex.take() else {
            return false;
        };
        let Stage::Tunnel(t) = &ex.stage else {
            self.ex = Some(ex);
            return false;
        };
        self.actions.push_back(Action::CloseUpstream);
        self.up_out.clear();
        self.inbuf.clear();
        self.no_more_requests = true;
        self.stats.response(200);
        self.stats.client_body_bytes_out.add(t.down);
        if self.cfg.access_log {
            let micros = now
                .instant
                .saturating_duration_since(ex.started)
                .as_micros() as u64;
            let origin = ex.origin();
            let entry = crate::appliance::access_log::Entry {
                client: &self.peer_text,
                method: "CONNECT",
                target: ex.head.target(),
                status: 200,
                bytes: t.down,
                micros,
                upstream: Some(origin),
                tunnel: Some((t.up, why)),
            };
            self.local
                .log
                .write(self.cfg.access_log_format, &entry, now.instant);
        }
        true
    }

    /// A tunnel silent both ways for `forward.connect_idle_ms` is closed.
    pub(super) fn tunnel_tick(&mut self, now: Now<'_>) {
        let idle = self.cfg.forward.connect_idle;
        let quiet = self
            .ex
            .as_mut()
            .and_then(|ex| ex.tunnel_mut())
            .is_some_and(|t| now.instant.saturating_duration_since(t.last_active) >= idle);
        if quiet {
            self.stats.client_timeouts.incr();
            self.close_tunnel("idle", now);
        }
    }
}
