//! One request and its response, as the stages it passes through.
//!
//! What belongs to the whole exchange (the request head, where it goes, the request body
//! read from the client, the cache's and the profile's context) sits on `Exchange`; what
//! belongs to one stage is owned by that stage's variant, so a field can only be reached
//! while it means something: the upstream connection and the response while fetching,
//! the job's input and result slot while distilling.

use std::sync::Arc;
use std::time::Instant;

use crate::cache::Object;
use crate::distill::Work;
use crate::http::body::{BodyDecoder, BodyEncoder, Framing};
use crate::http::request::{RequestFraming, RequestHead};
use crate::http::target::{Authority, Destination};

use super::super::out::Out;
use super::Ticket;
use super::caching::CacheCtx;
use super::distilling::{DistillCtx, HeldResponse, Running};
use super::forward::PeerRoute;

/// One request and its response.
#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) head: RequestHead,
    pub(super) dest: Destination,
    pub(super) cache: Option<Box<CacheCtx>>,
    pub(super) distill: Option<Box<DistillCtx>>,
    pub(super) started: Instant,
    pub(super) keep_alive: bool,
    /// The request body, read from the client as the origin takes it; it outlives the
    /// fetch, because unread body bytes decide whether the connection can go on.
    pub(super) request_body: RequestBody,
    pub(super) stage: Stage,
    /// The client was answered already (a stale copy, RFC 5861 stale-while-revalidate):
    /// this exchange only refreshes the cache, and nothing it meets reaches the client.
    pub(super) background: bool,
}

/// The request body's progress from the client to the origin.
#[derive(Debug)]
pub(super) struct RequestBody {
    pub(super) dec: BodyDecoder,
    pub(super) enc: BodyEncoder,
    pub(super) bytes: u64,
}

// Fetching is the stage most exchanges are in, and the exchange is boxed already: a
// second box per proxied request would cost more than the unused bytes of the others.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Stage {
    /// Waiting on another request's fetch of the same URL (collapsed).
    Waiting { since: Instant, ticket: Ticket },
    /// At the origin: the request goes out, the response comes in.
    Fetching(Fetch),
    /// The response is being distilled on the job pool.
    Distilling(Box<Running>),
    /// A CONNECT tunnel: bytes relayed both ways until either side closes.
    Tunnel(Tunnel),
    /// The client's credentials are being checked on the verifier threads.
    Verifying(Box<Verifying>),
    /// Waiting on nothing outside: the exchange is answered here. A job's exchange is in
    /// this stage just before its job starts and just after it ended; it is never left
    /// in it between events.
    Answering,
}

/// A credential check under way.
#[derive(Debug)]
pub(super) struct Verifying {
    pub(super) since: Instant,
    pub(super) ticket: Ticket,
    /// Whether the password was the user's; empty if the check never ran.
    pub(super) ok: crate::distill::pool::ResultSlot<bool>,
    /// The check's bookkeeping: the attempt charged to the client, the pair's digest.
    pub(super) check: Option<crate::access::auth::Check>,
}

/// A tunnel's tally: bytes each way, and when one last moved (its idle timeout).
#[derive(Debug)]
pub(super) struct Tunnel {
    /// Client to destination.
    pub(super) up: u64,
    /// Destination to client.
    pub(super) down: u64,
    pub(super) last_active: Instant,
    /// The client closed its side, and the destination was told.
    pub(super) client_done: bool,
}

/// The exchange's dealings with the origin.
#[derive(Debug)]
pub(super) struct Fetch {
    /// The request head as sent upstream (sent again on a retry).
    pub(super) up_head: Vec<u8>,
    /// Where it goes: the origin, or the peer node that owns the key.
    pub(super) to: Authority,
    /// `to` was named by the client: its address must pass the destination rules.
    pub(super) screened: bool,
    /// A CONNECT's: once attached, the exchange becomes a tunnel (set by
    /// `begin_tunnel` alone, never read from the request).
    pub(super) opens_tunnel: bool,
    /// Forwarded to a peer: which, and the candidates after it.
    pub(super) peer: Option<PeerRoute>,
    /// Counts this forward in the peer's load while it lives (bounded load).
    pub(super) _in_flight: Option<crate::config::cluster::InFlight>,
    pub(super) upstream: Upstream,
    /// Already sent again once on a fresh connection.
    pub(super) retried: bool,
    /// Bytes of interim (1xx) responses received: bounded like a head, and once any
    /// came the origin has processed the request (it is not sent again).
    pub(super) interim_bytes: usize,
    /// When the first interim response came: the final head is due within
    /// `upstream_response` of it, however many more interim ones keep the line busy.
    pub(super) first_interim: Option<Instant>,
    pub(super) response: Response,
}

#[derive(Debug)]
pub(super) enum Upstream {
    /// Asked the driver for a connection.
    Acquiring { since: Instant },
    Attached {
        /// Taken from the idle pool (the origin may have closed it meanwhile).
        reused: bool,
        last_active: Instant,
    },
}

#[derive(Debug)]
pub(super) enum Response {
    /// The head is being read.
    AwaitHead {
        buf: Vec<u8>,
    },
    Body(ResponseBody),
}

/// A response whose head has been read.
#[derive(Debug)]
pub(super) struct ResponseBody {
    pub(super) status: u16,
    pub(super) dec: BodyDecoder,
    pub(super) enc: BodyEncoder,
    /// Body bytes queued to the client.
    pub(super) sent: u64,
    /// The origin connection can be reused once the body is read.
    pub(super) reusable: bool,
    pub(super) sink: Sink,
}

/// Where the origin's body goes.
#[derive(Debug)]
pub(super) enum Sink {
    /// Streamed to the client as it comes.
    Client,
    /// Held for a distillation job.
    Held(Box<HeldResponse>),
    /// The cache answered: the body is read to keep the connection, and dropped. A
    /// stored object may wait to be distilled once it is drained.
    Discard { then: Option<(Arc<Object>, Work)> },
}

impl Exchange {
    pub(super) fn new(
        head: RequestHead,
        dest: Destination,
        cache: Option<Box<CacheCtx>>,
        distill: Option<Box<DistillCtx>>,
        stage: Stage,
        now: Instant,
    ) -> Box<Exchange> {
        let mut head = head;
        head.shrink();
        let (dec, enc) = match head.framing {
            RequestFraming::None => (BodyDecoder::new(Framing::None), BodyEncoder::Raw),
            RequestFraming::Length(n) => (BodyDecoder::new(Framing::Length(n)), BodyEncoder::Raw),
            RequestFraming::Chunked => (BodyDecoder::new(Framing::Chunked), BodyEncoder::Chunked),
        };
        Box::new(Exchange {
            keep_alive: head.wants_keep_alive(),
            head,
            dest,
            cache,
            distill,
            started: now,
            request_body: RequestBody { dec, enc, bytes: 0 },
            stage,
            background: false,
        })
    }

    pub(super) fn origin(&self) -> &Authority {
        &self.dest.origin
    }

    pub(super) fn fetch_mut(&mut self) -> Option<&mut Fetch> {
        self.stage.fetch_mut()
    }

    /// Connected to the origin: the request can be sent and the response read (or a
    /// tunnel's bytes relayed).
    pub(super) fn is_attached(&self) -> bool {
        matches!(
            &self.stage,
            Stage::Fetching(Fetch {
                upstream: Upstream::Attached { .. },
                ..
            }) | Stage::Tunnel(_)
        )
    }

    pub(super) fn tunnel_mut(&mut self) -> Option<&mut Tunnel> {
        match &mut self.stage {
            Stage::Tunnel(t) => Some(t),
            _ => None,
        }
    }

    /// A background revalidation that can no longer change the cache: its response
    /// is neither a 304 (answered already) nor being captured.
    pub(super) fn background_is_moot(&self) -> bool {
        self.background
            && self.response_body().is_some()
            && !self.cache.as_deref().is_some_and(|c| c.is_capturing())
    }

    /// Still waiting for the origin's response head.
    pub(super) fn awaits_head(&self) -> bool {
        matches!(
            self.stage,
            Stage::Fetching(Fetch {
                response: Response::AwaitHead { .. },
                ..
            })
        )
    }

    /// The response, once its head has been read.
    pub(super) fn response_body(&self) -> Option<&ResponseBody> {
        match &self.stage {
            Stage::Fetching(Fetch {
                response: Response::Body(body),
                ..
            }) => Some(body),
            _ => None,
        }
    }

    fn response_body_mut(&mut self) -> Option<&mut ResponseBody> {
        match &mut self.stage {
            Stage::Fetching(Fetch {
                response: Response::Body(body),
                ..
            }) => Some(body),
            _ => None,
        }
    }

    /// The held body, taken out of the response for its job.
    pub(super) fn take_held(&mut self) -> Option<Box<HeldResponse>> {
        let body = self.response_body_mut()?;
        match std::mem::replace(&mut body.sink, Sink::Client) {
            Sink::Held(held) => Some(held),
            other => {
                body.sink = other;
                None
            }
        }
    }

    /// The stored object to distil now that the origin's body is drained.
    pub(super) fn take_pending_job(&mut self) -> Option<(Arc<Object>, Work)> {
        match &mut self.response_body_mut()?.sink {
            Sink::Discard { then } => then.take(),
            _ => None,
        }
    }

    /// The running job, taken out when it ends (the exchange is then answering).
    pub(super) fn take_job(&mut self) -> Option<Box<Running>> {
        match std::mem::replace(&mut self.stage, Stage::Answering) {
            Stage::Distilling(running) => Some(running),
            other => {
                self.stage = other;
                None
            }
        }
    }
}

impl Stage {
    pub(super) fn fetch_mut(&mut self) -> Option<&mut Fetch> {
        match self {
            Stage::Fetching(fetch) => Some(fetch),
            _ => None,
        }
    }
}

impl Fetch {
    /// The origin was heard from, or took bytes.
    pub(super) fn touch(&mut self, now: Instant) {
        if let Upstream::Attached { last_active, .. } = &mut self.upstream {
            *last_active = now;
        }
    }
}

impl ResponseBody {
    /// The body is read to keep the connection and dropped.
    pub(super) fn discards(&self) -> bool {
        matches!(self.sink, Sink::Discard { .. })
    }

    /// Passes a piece of the body on to the client.
    pub(super) fn stream(&mut self, piece: &[u8], out: &mut Out) {
        self.enc.encode(piece, out.compacted_tail());
        self.sent += piece.len() as u64;
    }

    /// The held body turned out too large to distil: queue the head and what was held,
    /// and stream the rest. The held bytes are queued as they are, so they stay charged
    /// to the node's budget until the client has taken them.
    pub(super) fn stream_held(&mut self, out: &mut Out) {
        let Sink::Held(held) = std::mem::replace(&mut self.sink, Sink::Client) else {
            return;
        };
        let (head, mut body) = held.into_streamed();
        let bytes = body.take_bytes();
        out.extend(&head);
        self.enc.frame_start(bytes.len(), out.compacted_tail());
        self.sent += bytes.len() as u64;
        let len = bytes.len();
        out.push_shared(bytes);
        self.enc.frame_end(len, out.compacted_tail());
    }
}
