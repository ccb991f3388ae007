//! Answers the connection writes itself: health, refusals and errors, the profile
//! preference page, and the access log line every answer ends with.

use std::time::Instant;

use crate::appliance::access_log::Entry;
use crate::http::HttpError;
use crate::http::request::RequestHead;
use crate::http::target::Authority;

use super::super::local::{LocalResponse, TEXT_PLAIN, error_body};
use super::{Conn, Now};

impl Conn {
    pub(super) fn answer_local(
        &mut self,
        head: &RequestHead,
        status: u16,
        body: &[u8],
        now: Now<'_>,
    ) {
        self.answer_local_with(head, status, body, b"", now);
    }

    /// `answer_local` with `extra` header lines (each ending in CRLF).
    pub(super) fn answer_local_with(
        &mut self,
        head: &RequestHead,
        status: u16,
        body: &[u8],
        extra: &[u8],
        now: Now<'_>,
    ) {
        self.stats.local_responses.incr();
        // A body we did not read would be taken for the next request: close instead.
        // After a refused CONNECT the client may have sent tunnel bytes already.
        let keep = head.wants_keep_alive() && !head.has_body() && head.method() != "CONNECT";
        let minor = head.minor_version;
        self.write_local_with(status, body, head.is_head(), keep, minor, extra, now);
        self.log_access(head, status, body.len() as u64, now.instant, now, None);
    }

    /// The profile preference page (`proxy::prefs`).
    pub(super) fn answer_preferences(&mut self, head: &RequestHead, query: &str, now: Now<'_>) {
        self.stats.local_responses.incr();
        let signals = crate::distill::profile::Signals::read(super::distilling::head_signals(head));
        let (status, extra, body) =
            super::super::prefs::answer(&self.cfg.distill.choice, query, signals.cookie);
        let keep = head.wants_keep_alive() && !head.has_body() && self.may_keep_alive();
        LocalResponse {
            status,
            body: body.as_bytes(),
            head_only: head.is_head(),
            keep_alive: keep,
            client_minor: head.minor_version,
            date: now.date,
            via_name: &self.cfg.via_name,
            content_type: b"text/html; charset=utf-8",
            extra: &extra,
        }
        .write(self.out.compacted_tail());
        if !keep {
            self.no_more_requests = true;
        }
        self.log_access(head, status, body.len() as u64, now.instant, now, None);
    }

    /// A request that cannot be parsed or accepted: answer, then close.
    pub(super) fn refuse_malformed(&mut self, e: &HttpError, now: Now<'_>) {
        tracing::info!(client = %self.peer, "refused request: {e}");
        self.refuse(e.status(), &e.to_string(), now);
    }

    pub(super) fn refuse(&mut self, status: u16, detail: &str, now: Now<'_>) {
        self.stats.local_responses.incr();
        self.inbuf.clear();
        self.head_started = None;
        let body = error_body(status, detail);
        self.write_local(status, &body, false, false, 1, now);
        self.stats.response(status);
        if self.cfg.access_log {
            let entry = Entry {
                client: &self.peer_text,
                method: "-",
                target: "-",
                status,
                bytes: body.len() as u64,
                micros: 0,
                upstream: None,
                tunnel: None,
            };
            self.local
                .log
                .write(self.cfg.access_log_format, &entry, now.instant);
        }
    }

    pub(super) fn write_local(
        &mut self,
        status: u16,
        body: &[u8],
        head_only: bool,
        keep_alive: bool,
        minor: u8,
        now: Now<'_>,
    ) {
        self.write_local_with(status, body, head_only, keep_alive, minor, b"", now);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_local_with(
        &mut self,
        status: u16,
        body: &[u8],
        head_only: bool,
        keep_alive: bool,
        minor: u8,
        extra: &[u8],
        now: Now<'_>,
    ) {
        LocalResponse {
            status,
            body,
            head_only,
            keep_alive: keep_alive && self.may_keep_alive(),
            client_minor: minor,
            date: now.date,
            via_name: &self.cfg.via_name,
            content_type: TEXT_PLAIN,
            extra,
        }
        .write(self.out.compacted_tail());
        if !keep_alive || self.draining {
            self.no_more_requests = true;
        }
    }

    pub(super) fn log_access(
        &self,
        head: &RequestHead,
        status: u16,
        bytes: u64,
        started: Instant,
        now: Now<'_>,
        origin: Option<&Authority>,
    ) {
        self.stats.response(status);
        self.stats.client_body_bytes_out.add(bytes);
        if !self.cfg.access_log {
            return;
        }
        let micros = now.instant.saturating_duration_since(started).as_micros() as u64;
        let entry = Entry {
            client: &self.peer_text,
            method: head.method(),
            target: head.target(),
            status,
            bytes,
            micros,
            upstream: origin,
            tunnel: None,
        };
        self.local
            .log
            .write(self.cfg.access_log_format, &entry, now.instant);
    }
}
