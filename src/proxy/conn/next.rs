//! Where a proxied request goes: the one decision (`Conn::consult_cache` makes it, and
//! makes it again after a wait) and the one place it is carried out (`Conn::go`). A new
//! destination, such as the peer node that owns a URL, is one more variant of `Next`
//! and one more arm of `go`.

use std::rc::Rc;
use std::sync::Arc;

use crate::cache::Object;
use crate::cache::flight::Flight;
use crate::cache::shard_refs::Held;
use crate::distill::Work;
use crate::http::request::RequestHead;
use crate::http::target::Destination;

use super::caching::CacheCtx;
use super::distilling::{DistillCtx, JobInput};
use super::exchange::{Exchange, Stage};
use super::forward::PeerRoute;
use super::stored::Served;
use super::{Action, Conn, FlightWait, Now};

/// What a proxied request does next.
pub(super) enum Next {
    /// Answered here with this status and plain-text body (only-if-cached, not stored).
    Local(u16, Vec<u8>),
    /// From the cache, as stored: a fresh (or acceptably stale) variant or original, or
    /// a stale one served while another request revalidates it.
    Stored(Rc<Held>, Served),
    /// Made here from a fresh stored original, for this request's profile.
    DistillStored(Arc<Object>, Work),
    /// After another request's fetch of the same URL.
    Wait(Box<CacheCtx>, Arc<Flight>),
    /// A stale copy within stale-while-revalidate, served at once, then revalidated by
    /// this request in the background (the context leads the URL's flight).
    StaleThenRevalidate(Rc<Held>, Box<CacheCtx>),
    /// From the peer node that owns the key (it answers from its cache, or fetches).
    Peer(PeerRoute),
    /// From the origin: a miss, a stale entry to revalidate (also the one request that
    /// revalidates while others are served stale), a request the cache must not answer
    /// (unsafe method, a body, Authorization), or no cache at all. The cache's context
    /// comes along when there is a cache.
    Origin(Option<Box<CacheCtx>>),
}

impl Conn {
    /// Carries out `next` for the request `head`, routed to `dest`.
    pub(super) fn go(
        &mut self,
        next: Next,
        head: RequestHead,
        dest: Destination,
        distill: Option<Box<DistillCtx>>,
        now: Now<'_>,
    ) {
        match next {
            Next::Local(status, body) => self.answer_local(&head, status, &body, now),
            Next::Stored(object, how) => {
                self.serve_stored(&head, &object, how, now);
                self.keep_for_next(head, Some(dest), distill);
            }
            Next::DistillStored(object, work) => {
                let ex = Exchange::new(head, dest, None, distill, Stage::Answering, now.instant);
                self.start_job(ex, JobInput::Stored { object, work }, now);
            }
            Next::Wait(ctx, flight) => {
                let ticket = self.ticket();
                let waiting = Stage::Waiting {
                    since: now.instant,
                    ticket,
                };
                let ex = Exchange::new(head, dest, Some(ctx), distill, waiting, now.instant);
                self.ex = Some(ex);
                self.actions
                    .push_back(Action::AwaitFlight(FlightWait(flight), ticket));
            }
            Next::Origin(ctx) => self.start_fetch(head, dest, ctx, distill, now),
            Next::StaleThenRevalidate(stale, ctx) => {
                self.serve_stored(&head, &stale, Served::StaleWhileRevalidate, now);
                self.spare_distill = distill;
                if !self.inbuf.is_empty() {
                    // The client's next request is here already: it would not wait on
                    // the refresh, so none starts (another request will lead one).
                    drop(ctx);
                    return;
                }
                self.start_fetch(head, dest, Some(ctx), None, now);
                if let Some(ex) = self.ex.as_mut() {
                    ex.background = true;
                }
            }
            Next::Peer(route) => self.start_forward(head, dest, route, now),
        }
    }

    /// After a wait on another request's fetch: answered from the cache now, or fetched
    /// by this request (it does not wait twice).
    pub(super) fn resume_after_wait(&mut self, ex: Exchange, now: Now<'_>) {
        let Exchange {
            head,
            dest,
            distill,
            ..
        } = ex;
        match self.consult_cache(&head, &dest, distill.as_deref(), true, now) {
            Next::Wait(ctx, _) => self.go(Next::Origin(Some(ctx)), head, dest, distill, now),
            next => self.go(next, head, dest, distill, now),
        }
    }
}
