//! The connection state machine driven byte by byte, with no sockets and a fake clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

const DATE: &[u8] = b"Sat, 28 Nov 2026 00:00:00 GMT";
/// DATE as UNIX seconds: the fake clock's wall time at its start.
const DATE_SECS: u64 = 1_795_824_000;

struct Harness {
    conn: Conn,
    stats: Arc<Stats>,
    start: Instant,
    t: Instant,
}

impl Harness {
    fn new(toml: &str) -> Harness {
        Harness::with_cache(toml, None)
    }

    /// A connection whose requests use `cache` (shared with other harnesses).
    fn with_cache(toml: &str, cache: Option<Arc<Store>>) -> Harness {
        let cfg = Arc::new(Config::from_toml_str(toml, "test").expect("valid config"));
        let t = Instant::now();
        let peer = "127.0.0.9:5000".parse().unwrap();
        let stats = Arc::new(Stats::default());
        let log = crate::appliance::access_log::AccessLog::in_memory(stats.clone());
        let local = crate::proxy::shard_local::ShardLocal::new(log);
        Harness {
            stats: stats.clone(),
            conn: Conn::new(
                cfg,
                stats,
                cache,
                crate::proxy::held::HeldBudget::new(1 << 30),
                peer,
                Now {
                    instant: t,
                    date: DATE,
                    unix_secs: DATE_SECS,
                },
                local,
            ),
            start: t,
            t,
        }
    }

    fn now(&self) -> Now<'static> {
        Now {
            instant: self.t,
            date: DATE,
            unix_secs: DATE_SECS + (self.t - self.start).as_secs(),
        }
    }

    fn client(&mut self, bytes: &str) {
        let now = self.now();
        self.conn.on_client_data(bytes.as_bytes(), now);
    }

    fn origin(&mut self, bytes: &str) {
        let now = self.now();
        self.conn.on_upstream_data(bytes.as_bytes(), now);
    }

    fn ready(&mut self, reused: bool) {
        let now = self.now();
        self.conn.on_upstream_ready(reused, now);
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.conn.next_action()).collect()
    }

    fn sent_upstream(&mut self) -> String {
        let s = String::from_utf8_lossy(self.conn.upstream_out().pending()).into_owned();
        let n = self.conn.upstream_out().len();
        self.conn.upstream_out().consume(n);
        s
    }

    fn sent_client(&mut self) -> String {
        String::from_utf8_lossy(&self.sent_client_bytes()).into_owned()
    }

    fn sent_client_bytes(&mut self) -> Vec<u8> {
        let out = self.conn.client_out();
        let mut all = Vec::new();
        while !out.is_empty() {
            let run = out.pending().to_vec();
            out.consume(run.len());
            all.extend_from_slice(&run);
        }
        all
    }

    fn advance(&mut self, d: Duration) {
        self.t += d;
        let now = self.now();
        self.conn.on_tick(now);
    }
}

fn origin_authority() -> Authority {
    Authority {
        host: "o.test".into(),
        port: 80,
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = Harness::new("");
    h.client("GET http://o.test/1 HTTP/1.1\r\nHost: o.test\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET http://o.test/2 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(
        h.actions(),
        vec![Action::Acquire {
            origin: origin_authority(),
            pooled_ok: true,
            screened: true,
        }]
    );
    assert_eq!(
        h.sent_client(),
        "",
        "health answer must wait for the first response"
    );
    h.ready(false);
    assert!(
        h.sent_upstream()
            .starts_with("GET /1 HTTP/1.1\r\nHost: o.test\r\n")
    );
    h.origin("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA");
    assert_eq!(
        h.actions(),
        vec![
            Action::Release,
            Action::Acquire {
                origin: origin_authority(),
                pooled_ok: true,
                screened: true,
            }
        ]
    );
    let out = h.sent_client();
    let first = out.find("\r\n\r\nA").expect("first response");
    let health = out.find("ok\n").expect("health response");
    assert!(first < health);
    h.ready(true);
    assert!(h.sent_upstream().starts_with("GET /2 "));
    h.origin("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB");
    assert!(h.sent_client().ends_with("B"));
    assert!(!h.conn.is_finished());
}

#[test]
fn a_name_that_resolves_to_a_denied_address_gets_403_and_nothing_is_sent() {
    let mut h = Harness::new("");
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    h.actions();
    let denied = crate::access::destinations::Denied::Address {
        to: "127.0.0.1:80".parse().expect("addr"),
        rule: ("127.0.0.0".parse().expect("ip"), 8),
    };
    let now = h.now();
    h.conn
        .on_upstream_failed(UpstreamFailure::Denied(denied), now);
    let out = h.sent_client();
    assert!(out.starts_with("HTTP/1.1 403 "), "{out}");
    assert!(out.contains("forward.destinations_denied"), "{out}");
    assert!(out.contains("127.0.0.0/8"), "{out}");
    assert_eq!(h.sent_upstream(), "");
    assert_eq!(h.stats.forward_destinations_refused.get(), 1);
    let failures: u64 = h.stats.upstream_failures.iter().map(|c| c.get()).sum();
    assert_eq!(failures, 0, "a refusal is not an upstream failure");
    assert!(
        !h.conn.is_finished(),
        "the connection stays open for the next request"
    );
}

#[test]
fn a_connect_tunnel_takes_a_fresh_connection_and_relays_both_ways() {
    let mut h = Harness::new("");
    h.client("CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n\x16\x03\x01hello");
    assert_eq!(
        h.actions(),
        vec![Action::Acquire {
            origin: Authority {
                host: "o.test".into(),
                port: 443
            },
            pooled_ok: false,
            screened: true,
        }]
    );
    assert_eq!(
        h.sent_client(),
        "",
        "no answer before the destination is connected"
    );
    h.ready(false);
    assert_eq!(
        h.sent_client(),
        "HTTP/1.1 200 Connection established\r\n\r\n"
    );
    assert_eq!(h.sent_upstream(), "\x16\x03\x01hello");
    h.origin("HTTP/1.1 200 OK\r\n\r\nnot parsed, relayed");
    assert_eq!(
        h.sent_client(),
        "HTTP/1.1 200 OK\r\n\r\nnot parsed, relayed"
    );
    h.client("GET / HTTP/1.1\r\n\r\n");
    assert_eq!(h.sent_upstream(), "GET / HTTP/1.1\r\n\r\n");
    let now = h.now();
    h.conn.on_client_eof(now);
    assert_eq!(h.actions(), vec![Action::ShutdownUpstreamWrite]);
    h.origin("last words");
    let now = h.now();
    h.conn.on_upstream_closed(None, now);
    assert_eq!(h.actions(), vec![Action::CloseUpstream]);
    assert_eq!(h.sent_client(), "last words");
    assert!(h.conn.is_finished());
    assert_eq!(h.stats.forward_tunnels.get(), 1);
}

#[test]
fn a_connect_that_cannot_connect_is_answered_and_the_connection_closed() {
    let mut h = Harness::new("");
    h.client("CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n\x16\x03\x01");
    h.actions();
    let now = h.now();
    let failure = UpstreamFailure::Connect {
        addr: "o.test:443".into(),
        reason: "refused".into(),
    };
    h.conn.on_upstream_failed(failure, now);
    let out = h.sent_client();
    assert!(out.starts_with("HTTP/1.1 502 "), "{out}");
    assert!(
        h.conn.is_finished(),
        "tunnel bytes may follow: never parsed as a request"
    );
}

#[test]
fn a_client_over_its_request_rate_gets_429_with_retry_after() {
    let mut h = Harness::new("[forward]\nclient_requests_per_s = 2\nclient_requests_burst = 1\n");
    h.client("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        h.sent_client().starts_with("HTTP/1.1 200 "),
        "the health check is not limited"
    );
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(h.actions().len(), 1, "the first takes the burst's token");
    h.ready(false);
    h.origin("HTTP/1.1 204 No Content\r\n\r\n");
    h.actions();
    h.sent_client();
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    let out = h.sent_client();
    assert!(
        out.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{out}"
    );
    assert!(out.contains("Retry-After: 1\r\n"), "{out}");
    assert!(out.contains("forward.client_requests_per_s"), "{out}");
    assert!(h.actions().is_empty(), "nothing is fetched");
    assert_eq!(h.stats.client_limited.get(), 1);
    h.advance(Duration::from_millis(500));
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(h.actions().len(), 1, "a token again after 1/rate");
}

#[test]
fn credentials_are_checked_off_the_shard_once_then_remembered() {
    let file = std::env::temp_dir().join(format!("distilld-unit-htpasswd-{}", std::process::id()));
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    std::fs::write(&file, format!("ann:{hash}\n")).expect("write");
    let mut h = Harness::new(&format!("[forward]\nauth_file = \"{}\"\n", file.display()));
    // "ann:pw"
    let get = "GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nProxy-Authorization: Basic YW5uOnB3\r\n\r\n";
    h.client(get);
    let (check, ticket) = match h.actions().pop() {
        Some(Action::CheckCredentials(DistillJob(check), ticket)) => (check, ticket),
        other => panic!("{other:?}"),
    };
    assert_eq!(h.sent_client(), "", "the request waits for the check");
    check();
    let now = h.now();
    h.conn.on_wait_over(ticket, now);
    assert!(matches!(h.actions().as_slice(), [Action::Acquire { .. }]));
    h.ready(false);
    let up = h.sent_upstream();
    assert!(
        !up.to_ascii_lowercase().contains("proxy-authorization"),
        "{up}"
    );
    h.origin("HTTP/1.1 204 No Content\r\n\r\n");
    h.actions();
    h.sent_client();
    // Remembered: no second check.
    h.client(get);
    assert!(matches!(h.actions().as_slice(), [Action::Acquire { .. }]));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_purge_through_a_route_removes_the_forward_proxy_s_copy_too() {
    let store = Arc::new(Store::new(1 << 20, 1 << 20));
    let config = "[cache]\npurge_from = [\"127.0.0.9\"]\n\
                  [[route]]\nhost = \"o.test\"\norigin = \"http://o.test\"\n";
    let mut h = Harness::with_cache(config, Some(store));
    let get = "GET http://o.test/x HTTP/1.1\r\nHost: o.test\r\n\r\n";
    h.client(get);
    assert!(matches!(h.actions().as_slice(), [Action::Acquire { .. }]));
    h.ready(false);
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 1\r\n\r\nA");
    h.actions();
    h.sent_client();
    h.client(get);
    assert!(h.actions().is_empty(), "a hit");
    assert!(h.sent_client().ends_with("A"));
    h.client("PURGE /x HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert!(
        h.sent_client().starts_with("HTTP/1.1 200 "),
        "purged through the route"
    );
    h.client(get);
    assert!(
        matches!(h.actions().as_slice(), [Action::Acquire { .. }]),
        "gone"
    );
}

#[test]
fn stale_pooled_connection_is_retried_once_on_a_fresh_one() {
    let mut h = Harness::new("");
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    h.actions();
    h.ready(true);
    h.sent_upstream();
    let now = h.now();
    h.conn.on_upstream_closed(None, now);
    assert_eq!(
        h.actions(),
        vec![
            Action::CloseUpstream,
            Action::Acquire {
                origin: origin_authority(),
                pooled_ok: false,
                screened: true,
            }
        ]
    );
    h.ready(false);
    assert!(h.sent_upstream().starts_with("GET / HTTP/1.1"));
    let now = h.now();
    h.conn.on_upstream_closed(None, now);
    assert!(
        h.sent_client().starts_with("HTTP/1.1 502 "),
        "no second retry"
    );
}

#[test]
fn origin_closing_mid_body_resets_the_client() {
    let mut h = Harness::new("");
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    h.actions();
    h.ready(false);
    h.origin("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
    let now = h.now();
    h.conn.on_upstream_closed(None, now);
    assert!(h.conn.is_finished() && h.conn.wants_reset());
}

#[test]
fn close_delimited_origin_becomes_chunked_for_http11_clients() {
    let mut h = Harness::new("");
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    h.actions();
    h.ready(false);
    h.origin("HTTP/1.0 200 OK\r\n\r\nabc");
    let now = h.now();
    h.conn.on_upstream_closed(None, now);
    let out = h.sent_client();
    assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "{out}");
    assert_eq!(h.actions(), vec![Action::CloseUpstream]);
    assert!(!h.conn.is_finished(), "client connection stays open");
}

#[test]
fn expect_continue_is_answered_by_the_proxy_and_not_forwarded() {
    let mut h = Harness::new("");
    h.client("PUT http://o.test/ HTTP/1.1\r\nHost: o.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(h.sent_client(), "HTTP/1.1 100 Continue\r\n\r\n");
    h.ready(false);
    h.client("hi");
    let up = h.sent_upstream();
    assert!(!up.to_ascii_lowercase().contains("expect"), "{up}");
    assert!(up.ends_with("Content-Length: 2\r\n\r\nhi"), "{up}");
}

#[test]
fn oversized_declared_body_gets_413_without_100() {
    let mut h = Harness::new("[limits]\nrequest_body_bytes_max = 10\n");
    h.client("PUT http://o.test/ HTTP/1.1\r\nHost: o.test\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
    assert!(h.sent_client().starts_with("HTTP/1.1 413 "));
    assert!(h.actions().is_empty());
    assert!(h.conn.is_finished());
}

#[test]
fn slow_head_gets_408_and_idle_connection_closes() {
    let mut h = Harness::new("[timeouts]\nrequest_head_ms = 1000\nclient_idle_ms = 5000\n");
    h.client("GET /healthz HTTP/1.1\r\n");
    h.advance(Duration::from_millis(999));
    assert_eq!(h.sent_client(), "");
    h.advance(Duration::from_millis(1));
    assert!(h.sent_client().starts_with("HTTP/1.1 408 "));
    assert!(h.conn.is_finished());

    let mut idle = Harness::new("[timeouts]\nclient_idle_ms = 5000\n");
    idle.advance(Duration::from_millis(4999));
    assert!(!idle.conn.is_finished());
    idle.advance(Duration::from_millis(1));
    assert!(idle.conn.is_finished() && !idle.conn.wants_reset());
}

#[test]
fn silent_origin_gets_504() {
    let mut h = Harness::new("[timeouts]\nupstream_response_ms = 2000\n");
    h.client("GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    h.actions();
    h.ready(false);
    h.sent_upstream();
    h.advance(Duration::from_millis(2000));
    assert!(h.sent_client().starts_with("HTTP/1.1 504 "));
    assert_eq!(h.actions(), vec![Action::CloseUpstream]);
}

#[test]
fn chunked_request_body_is_rechunked_and_bad_chunk_is_400() {
    let mut h = Harness::new("");
    h.client("POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n");
    h.ready(false);
    let up = h.sent_upstream();
    assert!(
        up.ends_with("Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
        "{up}"
    );
    h.client("zz\r\n");
    assert!(h.sent_client().starts_with("HTTP/1.1 400 "));
    assert!(h.conn.is_finished());
}

mod no_panic_on_network_input {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that look enough like HTTP to get past the first line now and then.
    fn http_ish() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop_oneof![
            Just(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n".to_vec()),
            Just(b"POST /x HTTP/1.0\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Content-Length: 5\r\n".to_vec()),
            Just(b"Expect: 100-continue\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"e\"\r\n".to_vec()),
            Just(b"Vary: Accept\r\nAge: 99999999999999999999\r\n".to_vec()),
            Just(b"HTTP/1.1 304 Not Modified\r\n\r\n".to_vec()),
            Just(b"Cache-Control: max-stale, only-if-cached\r\nAccept: x\r\n".to_vec()),
            Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        proptest::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
    }

    #[derive(Debug, Clone)]
    enum Event {
        Client(Vec<u8>),
        ClientEof,
        Ready(bool),
        Failed,
        Origin(Vec<u8>),
        OriginClosed(bool),
        Tick(u64),
        Drain,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => http_ish().prop_map(Event::Client),
            // Valid pipelined requests pile up while one is answered.
            2 => (1usize..30).prop_map(|n| Event::Client(
                b"GET http://o.test/p HTTP/1.1\r\nHost: o.test\r\n\r\n".repeat(n))),
            1 => Just(Event::ClientEof),
            2 => any::<bool>().prop_map(Event::Ready),
            1 => Just(Event::Failed),
            4 => http_ish().prop_map(Event::Origin),
            1 => any::<bool>().prop_map(Event::OriginClosed),
            1 => (0u64..120_000).prop_map(Event::Tick),
            2 => Just(Event::Drain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn any_event_sequence_is_handled(events in proptest::collection::vec(event(), 1..40)) {
            // One shared cache, so stored, revalidated and collapsed requests are driven
            // too; reads as small as the config allows, so the bound below is reached.
            let store = Arc::new(Store::new(1 << 20, 1 << 20));
            let config = "[limits]\nheader_bytes_max = 1024\nrequest_body_bytes_max = 64\n\
                          io_buffer_bytes = 1024\n[cache]\ncollapse_wait_ms = 500\n";
            let mut h = Harness::with_cache(config, Some(store));
            for e in events {
                let now = h.now();
                match e {
                    // As a driver does: reads of at most io_buffer_bytes, only while
                    // the connection wants more.
                    Event::Client(b) => {
                        for read in b.chunks(1024) {
                            if !h.conn.wants_client_read() {
                                break;
                            }
                            h.conn.on_client_data(read, now);
                        }
                    }
                    Event::ClientEof => h.conn.on_client_eof(now),
                    Event::Ready(reused) => h.conn.on_upstream_ready(reused, now),
                    Event::Failed => h.conn.on_upstream_failed(
                        UpstreamFailure::Connect { addr: "x".into(), reason: "refused".into() }, now),
                    Event::Origin(b) => h.conn.on_upstream_data(&b, now),
                    Event::OriginClosed(err) => h.conn.on_upstream_closed(err.then_some("reset"), now),
                    Event::Tick(ms) => h.advance(Duration::from_millis(ms)),
                    Event::Drain => {
                        h.sent_client();
                        h.sent_upstream();
                        let now = h.now();
                        h.conn.on_client_written(now);
                        h.conn.on_upstream_written(now);
                    }
                }
                h.actions();
                // Bounded: the read buffer stops at the mark plus one read.
                prop_assert!(h.conn.client_in_len() <= 1024 + 1024, "{}", h.conn.client_in_len());
            }
        }
    }
}

/// A corpus photo larger than the inline limit, so its job goes to the pool.
fn photo() -> Vec<u8> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus/flower.jpg");
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn origin_sends_photo(h: &mut Harness, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let now = h.now();
    h.conn.on_upstream_data(head.as_bytes(), now);
    // In pieces, as the network would deliver it.
    for piece in body.chunks(7000) {
        let now = h.now();
        h.conn.on_upstream_data(piece, now);
    }
}

#[test]
fn a_large_image_is_held_sent_to_the_pool_and_answered_when_the_job_ends() {
    let mut h = Harness::new("");
    let body = photo();
    assert!(body.len() > 16 * 1024);
    h.client("GET http://o.test/p.jpg HTTP/1.1\r\nHost: o.test\r\nSave-Data: on\r\n\r\n");
    h.actions();
    h.ready(false);
    origin_sends_photo(&mut h, &body);
    assert_eq!(h.sent_client(), "", "held, not streamed");
    let job = h.actions().into_iter().find_map(|a| match a {
        Action::RunJob(DistillJob(work), ticket) => Some((work, ticket)),
        _ => None,
    });
    let Some((work, ticket)) = job else {
        panic!("no job queued")
    };
    work(); // what the pool thread does
    let now = h.now();
    h.conn.on_wait_over(ticket, now);
    let out = h.sent_client();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("X-Distill: original-bytes="), "{out}");
    assert!(!h.conn.is_finished(), "keep-alive after a distilled answer");
}

#[test]
fn a_job_that_never_returns_ends_as_the_original() {
    let mut h = Harness::new("[distill]\njob_time_ms = 1000\n");
    let body = photo();
    h.client("GET http://o.test/p.jpg HTTP/1.1\r\nHost: o.test\r\nSave-Data: on\r\n\r\n");
    h.actions();
    h.ready(false);
    origin_sends_photo(&mut h, &body);
    assert!(h.actions().iter().any(|a| matches!(a, Action::RunJob(..))));
    h.advance(Duration::from_millis(1500));
    assert_eq!(h.sent_client(), "", "still within the deadline");
    h.advance(Duration::from_millis(600));
    let out = h.sent_client_bytes();
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        out[head_end..] == body[..],
        "the original body, byte for byte"
    );
}

mod backpressure;
mod extremes;
mod interim;
mod revalidate;
mod vary;
mod wakeups;

/// Drains the client's output the way the io_uring driver does: moved into the socket's
/// send queue, then consumed as the kernel reports it sent.
fn drain_like_a_driver(h: &mut Harness, sending: &mut crate::proxy::out::Out) -> usize {
    sending.take_from(h.conn.client_out());
    let n = sending.len();
    sending.consume(n);
    n
}

/// A keep-alive client's hits, after a few to warm the connection's buffers up.
fn hit_allocations(config: &str, request: &str, stored: &str) -> (u64, String) {
    hit_allocations_of(config, request, stored.as_bytes())
}

/// `hit_allocations` for any stored response; a distillation job the first request
/// starts is run as the pool would run it.
fn hit_allocations_of(config: &str, request: &str, stored: &[u8]) -> (u64, String) {
    let store = Arc::new(Store::new(8 << 20, 8 << 20));
    let mut h = Harness::with_cache(config, Some(store));
    let mut sending = crate::proxy::out::Out::default();
    h.client(request);
    assert!(matches!(h.actions().as_slice(), [Action::Acquire { .. }]));
    h.ready(false);
    for piece in stored.chunks(7000) {
        let now = h.now();
        h.conn.on_upstream_data(piece, now);
    }
    for action in h.actions() {
        if let Action::RunJob(DistillJob(work), ticket) = action {
            work();
            let now = h.now();
            h.conn.on_wait_over(ticket, now);
        }
    }
    drain_like_a_driver(&mut h, &mut sending);
    for _ in 0..4 {
        h.client(request);
        assert!(h.actions().is_empty(), "a hit");
        drain_like_a_driver(&mut h, &mut sending);
    }
    h.client(request);
    let one = drain_like_a_driver(&mut h, &mut sending);
    let now = h.now();
    let (sent, n) = crate::peak_alloc::allocations(|| {
        let mut sent = 0;
        for _ in 0..100 {
            h.conn.on_client_data(request.as_bytes(), now);
            sent += drain_like_a_driver(&mut h, &mut sending);
        }
        sent
    });
    assert_eq!(sent, 100 * one, "100 whole answers");
    h.client(request);
    (n, h.sent_client())
}

const HIT_ROUTE: &str = "[[route]]\nhost = \"o.test\"\norigin = \"http://o.test\"\n";
const HIT_STORED: &str = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nETag: \"v1\"\r\n\
                          Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

/// One proxied request of a keep-alive client, answered by the origin on a pooled
/// connection; allocates nothing itself (what it drops or drains is freed, not made).
fn proxy_once(
    h: &mut Harness,
    sending: &mut crate::proxy::out::Out,
    request: &str,
    response: &[u8],
) -> usize {
    let now = h.now();
    h.conn.on_client_data(request.as_bytes(), now);
    while h.conn.next_action().is_some() {}
    h.conn.on_upstream_ready(true, now);
    let n = h.conn.upstream_out().len();
    h.conn.upstream_out().consume(n);
    h.conn.on_upstream_data(response, now);
    while h.conn.next_action().is_some() {}
    drain_like_a_driver(h, sending)
}

/// Allocations in 100 proxied requests of one keep-alive client, after a few to warm
/// the connection's buffers up.
fn proxied_allocations(request: &str, response: &[u8]) -> (u64, String) {
    let mut h = Harness::new(HIT_ROUTE);
    let mut sending = crate::proxy::out::Out::default();
    for _ in 0..4 {
        proxy_once(&mut h, &mut sending, request, response);
    }
    let one = proxy_once(&mut h, &mut sending, request, response);
    let (sent, n) = crate::peak_alloc::allocations(|| {
        (0..100)
            .map(|_| proxy_once(&mut h, &mut sending, request, response))
            .sum::<usize>()
    });
    assert_eq!(sent, 100 * one, "100 whole answers");
    h.client(request);
    h.ready(true);
    h.sent_upstream();
    let now = h.now();
    h.conn.on_upstream_data(response, now);
    (n, h.sent_client())
}

/// A proxied request reuses the memory of the one before on its connection (the
/// request head, its route and profile context, the upstream head, the buffer the
/// response head is read into and the head parsed from it, the fetch's copy of the
/// origin). Two allocations are left: the exchange itself and the origin named in the
/// driver's `Acquire`. Twelve before the reuse.
#[test]
fn a_proxied_request_reuses_the_connection_buffers() {
    let get = "GET /x HTTP/1.1\r\nHost: o.test\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n";
    let body = "b".repeat(1024);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n{body}"
    );
    let (n, sent) = proxied_allocations(get, response.as_bytes());
    assert!(
        sent.starts_with("HTTP/1.1 200 OK\r\n") && sent.ends_with(&body),
        "{sent}"
    );
    assert!(n <= 100 * 2, "{n} allocations in 100 proxied requests");
}

/// What a connection keeps between requests is bounded whatever the last request was:
/// a large head's buffers are let go, a small one's are kept for the next.
#[test]
fn an_idle_connection_keeps_little_of_a_large_request() {
    let held = |h: &Harness| {
        let c = &h.conn;
        [
            c.spare_head.held_bytes(),
            c.spare_dest.as_ref().map_or(0, |d| d.held_bytes()),
            c.spare_up_head.capacity(),
            c.spare_response_head.capacity(),
            c.spare_to.as_ref().map_or(0, |t| t.host.capacity()),
            c.spare_response.held_bytes(),
        ]
    };
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut h = Harness::new(HIT_ROUTE);
    let mut sending = crate::proxy::out::Out::default();
    let small = "GET /x HTTP/1.1\r\nHost: o.test\r\n\r\n";
    proxy_once(&mut h, &mut sending, small, response);
    assert!(
        held(&h).iter().all(|&n| n > 0),
        "kept for the next: {:?}",
        held(&h)
    );
    assert!(
        h.conn.spare_response.is_empty(),
        "nothing of the origin's head kept"
    );
    let large = format!(
        "GET /{} HTTP/1.1\r\nHost: o.test\r\nCookie: {}\r\n\r\n",
        "p".repeat(6000),
        "c".repeat(6000)
    );
    let large_response = format!(
        "HTTP/1.1 200 OK\r\nX-Large: {}\r\nContent-Length: 2\r\n\r\nok",
        "r".repeat(6000)
    );
    let out = proxy_once(&mut h, &mut sending, &large, large_response.as_bytes());
    assert!(out > 0, "answered");
    let kept = held(&h);
    assert!(kept[0] <= SPARE_HEAD_MAX, "{kept:?}");
    assert!(kept[1..].iter().all(|&n| n <= SPARE_BUF_MAX), "{kept:?}");
    // Heads of a few KiB whose Connection field names a thousand fields hold far more
    // than their bytes (a String each, and a list of 24 KiB): that is let go too. Counted
    // by the allocator, not by `held_bytes`, which is what is checked.
    let names = "a,".repeat(1000);
    let named = format!("GET /x HTTP/1.1\r\nHost: o.test\r\nConnection: {names}\r\n\r\n");
    let named_response =
        format!("HTTP/1.1 200 OK\r\nConnection: {names}\r\nContent-Length: 2\r\n\r\nok");
    let (out, kept_bytes) = crate::peak_alloc::retained(|| {
        proxy_once(&mut h, &mut sending, &named, named_response.as_bytes())
    });
    assert!(out > 0, "answered");
    assert!(kept_bytes < 16 * 1024, "{kept_bytes} bytes kept");
    // A browser's head with a few KiB of cookies is kept for its next request.
    let cookies = format!(
        "GET /x HTTP/1.1\r\nHost: o.test\r\nCookie: {}\r\n\r\n",
        "c".repeat(4000)
    );
    proxy_once(&mut h, &mut sending, &cookies, response);
    proxy_once(&mut h, &mut sending, &cookies, response);
    assert!(held(&h)[0] > 4000, "{:?}", held(&h));
}

#[test]
fn a_fresh_hit_allocates_nothing() {
    let get = "GET /x HTTP/1.1\r\nHost: o.test\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n";
    let (n, sent) = hit_allocations(HIT_ROUTE, get, HIT_STORED);
    assert!(
        sent.starts_with("HTTP/1.1 200 OK\r\n") && sent.ends_with("hello"),
        "{sent}"
    );
    assert!(sent.contains("Cache-Status: distilld; hit"), "{sent}");
    assert_eq!(n, 0, "allocations in 100 hits");
}

#[test]
fn a_conditional_hit_allocates_nothing() {
    let get = "GET /x HTTP/1.1\r\nHost: o.test\r\nIf-None-Match: \"v1\"\r\n\r\n";
    let (n, sent) = hit_allocations(HIT_ROUTE, get, HIT_STORED);
    assert!(sent.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{sent}");
    assert_eq!(n, 0, "allocations in 100 conditional hits");
}

#[test]
fn a_forward_proxy_hit_allocates_nothing() {
    let get = "GET http://o.test/x HTTP/1.1\r\nHost: o.test\r\n\r\n";
    let (n, sent) = hit_allocations("", get, HIT_STORED);
    assert!(sent.contains("Cache-Status: distilld; hit"), "{sent}");
    assert_eq!(n, 0, "allocations in 100 forward hits");
}

#[test]
fn a_compressed_variant_hit_allocates_nothing() {
    let page = "<p>distilld keeps the bytes it saves.</p>\n".repeat(60);
    let stored = format!(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Type: text/html\r\n\
         Content-Length: {}\r\n\r\n{page}",
        page.len()
    );
    let get = "GET /p HTTP/1.1\r\nHost: o.test\r\nAccept-Encoding: gzip, zstd\r\n\r\n";
    let (n, sent) = hit_allocations(HIT_ROUTE, get, &stored);
    assert!(sent.contains("Content-Encoding: zstd"), "{sent}");
    assert!(sent.contains("Cache-Status: distilld; hit"), "{sent}");
    assert_eq!(n, 0, "allocations in 100 hits of a compressed variant");
}

/// The buffers a hit's cache keys are written into are kept for the next request only
/// when small: a long path's are let go.
#[test]
fn a_long_path_s_key_buffers_are_let_go() {
    let store = Arc::new(Store::new(1 << 20, 1 << 20));
    let mut h = Harness::with_cache(HIT_ROUTE, Some(store));
    // Accept-Encoding gives the request a profile context, so its variant key is
    // written too.
    let get = |path: &str| {
        format!("GET /{path} HTTP/1.1\r\nHost: o.test\r\nAccept-Encoding: gzip\r\n\r\n")
    };
    h.client(&get("x"));
    h.actions();
    h.ready(false);
    h.origin(HIT_STORED);
    h.actions();
    h.sent_client();
    h.client(&get("x"));
    assert!(h.sent_client().contains("distilld; hit"));
    assert!(
        h.conn.key_buf.capacity() > 0 && h.conn.variant_buf.capacity() > 0,
        "a short key's buffers are kept"
    );
    h.client(&get(&"p".repeat(6000)));
    assert!(
        matches!(h.actions().as_slice(), [Action::Acquire { .. }]),
        "looked up, missed, fetched"
    );
    assert!(
        h.conn.key_buf.capacity() <= SPARE_BUF_MAX
            && h.conn.variant_buf.capacity() <= SPARE_BUF_MAX,
        "{} {}",
        h.conn.key_buf.capacity(),
        h.conn.variant_buf.capacity()
    );
}

/// A desktop Chrome navigation's head (its 13 fields), as bench/run.sh hit-instructions
/// sends it.
const BROWSER_GET: &str = "GET /b HTTP/1.1\r\nHost: o.test\r\n\
    User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
    Chrome/131.0.0.0 Safari/537.36\r\n\
    Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
    image/apng,*/*;q=0.8\r\n\
    Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n\
    Connection: keep-alive\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\
    Sec-Fetch-Site: none\r\nUpgrade-Insecure-Requests: 1\r\n\
    sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
    sec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\n\r\n";

/// A browser's hit on an object that is not compressed for it (its type is not text):
/// deciding that reads the stored type, and must not allocate to do it.
#[test]
fn a_browser_s_hit_allocates_nothing() {
    let stored = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\
                  Content-Type: Application/Octet-Stream\r\nContent-Length: 5\r\n\r\nbytes";
    let (n, sent) = hit_allocations(HIT_ROUTE, BROWSER_GET, stored);
    assert!(
        sent.starts_with("HTTP/1.1 200 OK\r\n") && sent.ends_with("bytes"),
        "{sent}"
    );
    assert!(sent.contains("Cache-Status: distilld; hit"), "{sent}");
    assert_eq!(n, 0, "allocations in 100 browser hits");
}

#[test]
fn a_save_data_image_variant_hit_allocates_nothing() {
    let body = photo();
    let mut stored = format!(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Type: image/jpeg\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    stored.extend_from_slice(&body);
    let get = "GET /p.jpg HTTP/1.1\r\nHost: o.test\r\nSave-Data: on\r\n\r\n";
    let (n, sent) = hit_allocations_of(HIT_ROUTE, get, &stored);
    assert!(sent.contains("X-Distill: original-bytes="), "{sent:.400}");
    assert!(sent.contains("Cache-Status: distilld; hit"), "{sent:.400}");
    assert_eq!(n, 0, "allocations in 100 hits of a Save-Data variant");
}

#[test]
fn queued_hits_hold_the_shard_s_reference_not_the_store_s() {
    let store = Arc::new(Store::new(1 << 20, 1 << 20));
    let mut h = Harness::with_cache(HIT_ROUTE, Some(store.clone()));
    let get = "GET /x HTTP/1.1\r\nHost: o.test\r\n\r\n";
    h.client(get);
    h.actions();
    h.ready(false);
    h.origin(HIT_STORED);
    h.actions();
    h.sent_client();
    let object = store
        .lookup(&key_of("/x"), std::iter::empty())
        .expect("stored")
        .object;
    let before = Arc::strong_count(&object);
    for _ in 0..20 {
        h.client(get); // answered, not sent: 20 responses queued
    }
    assert_eq!(h.conn.local.refs.len(), 1, "one reference for the shard");
    assert_eq!(
        Arc::strong_count(&object),
        before + 1,
        "the queued hits share the shard's one Arc"
    );
    assert!(h.sent_client().matches("hello").count() == 20);
    h.conn.local.refs.sweep();
    h.conn.local.refs.sweep();
    assert!(h.conn.local.refs.is_empty(), "let go once unused");
}

fn key_of(path: &str) -> Arc<str> {
    crate::cache::key::primary(&crate::http::target::Destination {
        origin: origin_authority(),
        path: path.into(),
        host_field: "o.test".into(),
        screened: false,
    })
}
