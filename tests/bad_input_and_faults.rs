//! Bad input and faults: every refusal comes with the right status, a closed connection
//! where framing is in doubt, and nothing sent to the origin.

mod common;

use std::time::{Duration, Instant};

use common::{Mode, Setup, start_proxy};

in_both_modes!(
    malformed_heads_get_400_and_reach_no_origin,
    oversized_head_gets_431,
    too_many_fields_get_431,
    oversized_declared_body_gets_413,
    oversized_chunked_body_gets_413,
    invalid_chunk_size_gets_400,
    slow_head_gets_408,
    connection_limit_refuses_cleanly,
    unreachable_origin_gets_502_naming_the_cause,
    slow_origin_gets_504,
    origin_closing_mid_body_is_never_complete,
    origin_killed_mid_response_is_never_complete,
    invalid_chunked_response_is_never_complete,
);

/// Sends `raw` on a fresh connection; returns the status and whether the proxy closed.
fn refused(s: &Setup, raw: &str) -> (u16, bool) {
    let mut c = s.client();
    c.send(raw.as_bytes());
    let r = c.response(false);
    (r.status, c.is_closed(Duration::from_secs(2)))
}

fn malformed_heads_get_400_and_reach_no_origin(mode: Mode) {
    let s = Setup::new(mode);
    let (target, host) = s.target("/echo");
    let line = format!("POST {target} HTTP/1.1");
    let cases = [
        format!(
            "{line}\r\nHost: {host}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
        ),
        format!("{line}\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc"),
        format!("{line}\r\nHost: {host}\r\nContent-Length: 3x\r\n\r\nabc"),
        format!("{line}\r\nHost: {host}\r\nContent-Length: -3\r\n\r\nabc"),
        format!("{line}\r\nHost: {host}\r\nContent-Length: 184467440737095516160\r\n\r\nabc"),
        format!("{line}\r\nHost: {host}\r\nX-Folded: a\r\n  b\r\n\r\n"),
        format!("{line}\r\nHost: {host}\r\nX-Cr: a\rb\r\n\r\n"),
        format!("{line}\r\n\r\n"),
        format!("{line}\r\nHost: {host}\r\nHost: other\r\n\r\n"),
        format!("{line}\r\nHost : {host}\r\n\r\n"),
        format!("POST  {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        format!("P@ST {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        format!("{line}\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
        // Hosts that are not an authority (RFC 3986): they would smuggle a path into
        // the cache key or confuse route matching.
        format!("{line}\r\nHost: {host}/x\r\n\r\n"),
        format!("{line}\r\nHost: a:80/x\r\n\r\n"),
        format!("{line}\r\nHost: a:b:80\r\n\r\n"),
        format!("{line}\r\nHost: user@{host}\r\n\r\n"),
        format!("{line}\r\nHost: [::1\r\n\r\n"),
    ];
    for raw in &cases {
        let (status, closed) = refused(&s, raw);
        assert_eq!(status, 400, "{raw:?}");
        assert!(closed, "connection left open after {raw:?}");
    }
    // An absolute-form target whose authority is not one (a port after a port).
    let (status, _) = refused(&s, "GET http://a:80:1/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(status, 400);
    assert_eq!(s.origin_stats(), (0, 0), "the origin received something");
}

fn oversized_head_gets_431(mode: Mode) {
    let s = Setup::with(mode, "[limits]\nheader_bytes_max = 2048\n", &[]);
    let big = format!("X-Big: {}", "a".repeat(3000));
    let (status, closed) = refused(&s, &s.head("GET", "/bytes/1", &[&big]));
    assert_eq!((status, closed), (431, true));
    assert_eq!(s.origin_stats(), (0, 0));
}

fn too_many_fields_get_431(mode: Mode) {
    let s = Setup::with(mode, "[limits]\nheaders_count_max = 10\n", &[]);
    let fields: Vec<String> = (0..11).map(|i| format!("X-F{i}: v")).collect();
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    assert_eq!(refused(&s, &s.head("GET", "/bytes/1", &refs)), (431, true));
}

fn oversized_declared_body_gets_413(mode: Mode) {
    let s = Setup::with(mode, "[limits]\nrequest_body_bytes_max = 1000\n", &[]);
    assert_eq!(
        refused(&s, &s.head("POST", "/sink", &["Content-Length: 1001"])),
        (413, true)
    );
    assert_eq!(s.origin_stats(), (0, 0));
    let mut c = s.client();
    c.send(
        s.head("POST", "/sink", &["Content-Length: 1000"])
            .as_bytes(),
    );
    c.send(&[b'x'; 1000]);
    assert!(c.response(false).text().contains("\"bytes\":1000"));
}

fn oversized_chunked_body_gets_413(mode: Mode) {
    let s = Setup::with(mode, "[limits]\nrequest_body_bytes_max = 1000\n", &[]);
    let mut c = s.client();
    c.send(
        s.head("POST", "/sink", &["Transfer-Encoding: chunked"])
            .as_bytes(),
    );
    c.send(format!("3e8\r\n{}\r\n1\r\nx\r\n0\r\n\r\n", "y".repeat(1000)).as_bytes());
    let r = c.try_response(false);
    if let Ok(r) = r {
        assert_eq!(r.status, 413);
    }
    assert!(c.is_closed(Duration::from_secs(2)));
}

fn invalid_chunk_size_gets_400(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(
        s.head("POST", "/sink", &["Transfer-Encoding: chunked"])
            .as_bytes(),
    );
    c.send(b"zz\r\nhello\r\n0\r\n\r\n");
    assert_eq!(c.response(false).status, 400);
    assert!(c.is_closed(Duration::from_secs(2)));
}

fn slow_head_gets_408(mode: Mode) {
    let s = Setup::with(mode, "[timeouts]\nrequest_head_ms = 400\n", &[]);
    let mut c = s.client();
    let head = s.head("GET", "/bytes/1", &[]);
    let started = Instant::now();
    // a slowloris: one byte at a time, never finishing in time
    for b in head.as_bytes()[..20].iter() {
        if std::io::Write::write_all(&mut c.stream, &[*b]).is_err() {
            break; // the proxy gave up on us: expected
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let r = c.response(false);
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(c.is_closed(Duration::from_secs(2)));
    assert_eq!(s.origin_stats(), (0, 0));
}

fn connection_limit_refuses_cleanly(mode: Mode) {
    let origin = common::start_origin(&[]);
    let proxy = start_proxy(
        mode,
        origin.addr,
        "[limits]\nconnections_per_shard_max = 3\n",
        1,
    );
    let s = Setup {
        mode,
        origin,
        proxy,
    };
    let held: Vec<_> = (0..3).map(|_| s.client()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = s.client();
    let r = extra.response(false);
    assert_eq!(r.status, 503);
    assert!(extra.is_closed(Duration::from_secs(2)));
    drop(held);
    // room again once those are gone
    assert!(common::wait_until(Duration::from_secs(3), || {
        let mut c = s.client();
        c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        c.try_response(false).is_ok_and(|r| r.status == 200)
    }));
}

fn unreachable_origin_gets_502_naming_the_cause(mode: Mode) {
    // a port that was just free: nothing listens there
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = start_proxy(mode, dead, "", 1);
    let mut c = common::Client::connect(proxy.addr);
    let target = match mode {
        Mode::Forward => format!("http://{dead}/x"),
        Mode::Reverse => "/x".into(),
    };
    c.send(format!("GET {target} HTTP/1.1\r\nHost: {dead}\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 502);
    assert!(r.text().contains("refused"), "{}", r.text());
    if mode == Mode::Forward {
        c.send(b"GET http://no-such-host.invalid/ HTTP/1.1\r\nHost: no-such-host.invalid\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.status, 502);
        assert!(r.text().contains("cannot resolve"), "{}", r.text());
    }
}

fn slow_origin_gets_504(mode: Mode) {
    let s = Setup::with(mode, "[timeouts]\nupstream_response_ms = 300\n", &[]);
    let started = Instant::now();
    let r = s.get("/delay/3000");
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn origin_closing_mid_body_is_never_complete(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(s.head("GET", "/truncate/100000", &[]).as_bytes());
    let err = c
        .try_response(false)
        .expect_err("a truncated body must not look complete");
    assert!(err.contains("of 100000"), "{err}");
}

fn origin_killed_mid_response_is_never_complete(mode: Mode) {
    let mut s = Setup::new(mode);
    let mut c = s.client();
    // 50 MB at 20 MB/s: still running when the origin is killed
    c.send(
        s.head("GET", "/bytes/50000000?rate_kbps=20000", &[])
            .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(300));
    s.origin.kill();
    let err = c
        .try_response(false)
        .expect_err("the body must not look complete");
    assert!(err.contains("of 50000000"), "{err}");
}

fn invalid_chunked_response_is_never_complete(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(s.head("GET", "/bad-chunk", &[]).as_bytes());
    assert!(c.try_response(false).is_err());
}
