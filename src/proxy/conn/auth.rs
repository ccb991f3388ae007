//! The forward proxy's Basic authentication, from the Conn's side: a request without
//! good credentials gets 407 and a challenge; a pair not seen lately is checked on the
//! node's verifier threads (bcrypt and argon2 are slow on purpose) while the request
//! waits in its own stage; each check counts against the client's failures until it
//! succeeds, and a client out of them gets 429 without a check. The
//! credentials are never forwarded (Proxy-Authorization is hop-by-hop) nor logged.

use crate::access::auth::basic_credentials;
use crate::distill::pool::{ResultSlot, put, take};
use crate::http::request::{Field, RequestHead};
use crate::http::target::Destination;

use super::super::local::error_body;
use super::distilling::DistillJob;
use super::exchange::{Exchange, Stage, Verifying};
use super::{Action, Conn, Now};

impl Conn {
    /// The request must show credentials: the forward proxy has an `auth_file`, and
    /// the request did not come from a peer node (which checked them itself).
    pub(super) fn needs_auth(&self, head: &RequestHead, dest: &Destination) -> bool {
        dest.screened && self.cfg.forward.auth.is_some() && self.trusted_hop(head).is_none()
    }

    /// Checks the request's credentials, then carries it on (`proceed`), or answers it.
    pub(super) fn authenticate(&mut self, head: RequestHead, dest: Destination, now: Now<'_>) {
        let Some(auth) = self.cfg.forward.auth.clone() else {
            return self.proceed(head, dest, now);
        };
        let Some((user, password)) = head
            .first(Field::ProxyAuthorization)
            .and_then(basic_credentials)
        else {
            return self.challenge(&head, now);
        };
        let client = self.client_ip(&head);
        let digest = auth.digest(client, &user, &password);
        if auth.remembered(&digest, now.instant) {
            return self.proceed(head, dest, now);
        }
        let check = match auth.start_check(client, digest, now.instant) {
            Ok(check) => check,
            Err(wait) => {
                let body = error_body(429, "too many failed authentications from this client");
                return self.too_many(&head, client, wait, &body, now);
            }
        };
        let ok: ResultSlot<bool> = Default::default();
        let (slot, users) = (ok.clone(), auth.users.clone());
        let verify = move || put(&slot, users.verify(&user, &password));
        let ticket = self.ticket();
        self.actions.push_back(Action::CheckCredentials(
            DistillJob(Box::new(verify)),
            ticket,
        ));
        let stage = Stage::Verifying(Box::new(Verifying {
            since: now.instant,
            ticket,
            ok,
            check: Some(check),
        }));
        self.ex = Some(Exchange::new(head, dest, None, None, stage, now.instant));
    }

    /// The check is done: on, remembered; or 407, counted against the client.
    pub(super) fn on_verified(&mut self, mut ex: Box<Exchange>, now: Now<'_>) {
        let Stage::Verifying(v) = &mut ex.stage else {
            self.ex = Some(ex);
            return;
        };
        match take(&v.ok) {
            Some(true) => {
                if let Some(check) = v.check.take() {
                    check.succeeded(now.instant);
                }
                let Exchange { head, dest, .. } = *ex;
                self.proceed(head, dest, now);
            }
            Some(false) => {
                let client = self.client_ip(&ex.head);
                self.stats.auth_failures.incr();
                if self.cfg.forward.refusals.should_log(client, now.instant) {
                    tracing::warn!(%client, "407: proxy authentication failed (logged once a minute per client address)");
                }
                self.challenge(&ex.head, now);
                self.advance(now);
            }
            None => self.answer_unverified(ex, now),
        }
    }

    /// The check never ran (the verifier threads' queue was full) or took too long.
    pub(super) fn answer_unverified(&mut self, mut ex: Box<Exchange>, now: Now<'_>) {
        // Not the client's failure: its attempt is given back.
        if let Stage::Verifying(v) = &mut ex.stage
            && let Some(check) = v.check.take()
        {
            check.not_a_failure(now.instant);
        }
        let body = error_body(
            503,
            "the proxy's credential checks are overloaded: try again",
        );
        self.answer_local_with(&ex.head, 503, &body, b"Retry-After: 1\r\n", now);
        self.advance(now);
    }

    /// 407 with the challenge.
    fn challenge(&mut self, head: &RequestHead, now: Now<'_>) {
        let Some(auth) = self.cfg.forward.auth.clone() else {
            return;
        };
        let body = error_body(407, "this proxy needs a user and password (Basic)");
        self.answer_local_with(head, 407, &body, auth.challenge().as_bytes(), now);
    }

    /// On with a request whose client may use the proxy.
    pub(super) fn proceed(&mut self, head: RequestHead, dest: Destination, now: Now<'_>) {
        if head.method() == "CONNECT" {
            self.begin_tunnel(head, dest, now);
        } else {
            self.begin_proxy(head, dest, now);
        }
    }
}
