//! HTTP/1.1 proxy semantics over real sockets, each test in forward and reverse mode.

mod common;

use common::{Mode, Setup, assert_pattern};

in_both_modes!(
    content_length_body,
    chunked_body_stays_chunked,
    close_delimited_body_is_rechunked_for_http11,
    http10_client_gets_close_delimited_and_close,
    http10_keep_alive_is_honoured,
    keep_alive_and_pipelining_in_order,
    request_body_with_content_length,
    request_body_chunked,
    head_has_no_body_and_keeps_connection,
    no_body_for_204_and_304,
    expect_100_continue,
    hop_by_hop_request_fields_removed,
    hop_by_hop_response_fields_removed,
    x_forwarded_for_can_be_turned_off,
    upstream_connections_are_reused,
    health_answered_locally,
    health_path_can_be_turned_off,
    corpus_file_with_validators,
);

fn content_length_body(mode: Mode) {
    let s = Setup::new(mode);
    let r = s.get("/bytes/100000");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert_pattern(&r.body, 100_000);
    assert!(r.header("via").is_some_and(|v| v.contains("1.1 distilld")));
}

fn chunked_body_stays_chunked(mode: Mode) {
    let s = Setup::new(mode);
    let r = s.get("/chunked/300000");
    assert!(r.chunked);
    assert!(!r.has("content-length"));
    assert_pattern(&r.body, 300_000);
}

fn close_delimited_body_is_rechunked_for_http11(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(s.head("GET", "/close/70000", &[]).as_bytes());
    let r = c.response(false);
    assert!(
        r.chunked,
        "HTTP/1.1 client gets chunked so the end is marked"
    );
    assert_pattern(&r.body, 70_000);
    // and the client connection survives
    c.send(s.head("GET", "/bytes/5", &[]).as_bytes());
    assert_pattern(&c.response(false).body, 5);
}

fn http10_client_gets_close_delimited_and_close(mode: Mode) {
    let s = Setup::new(mode);
    let (target, host) = s.target("/chunked/5000");
    let mut c = s.client();
    c.send(format!("GET {target} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert!(!r.chunked, "no chunked coding for an HTTP/1.0 client");
    assert_pattern(&r.body, 5000);
    assert!(c.is_closed(std::time::Duration::from_secs(2)));
}

fn http10_keep_alive_is_honoured(mode: Mode) {
    let s = Setup::new(mode);
    let (target, host) = s.target("/bytes/10");
    let mut c = s.client();
    for _ in 0..2 {
        c.send(
            format!("GET {target} HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n")
                .as_bytes(),
        );
        let r = c.response(false);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_pattern(&r.body, 10);
    }
    // without keep-alive the proxy closes after the response
    c.send(format!("GET {target} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed(std::time::Duration::from_secs(2)));
}

fn keep_alive_and_pipelining_in_order(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    let mut all = String::new();
    for path in [
        "/delay/200",
        "/bytes/1",
        "/chunked/2",
        "/healthz",
        "/bytes/3",
    ] {
        if path == "/healthz" {
            // answered by the proxy itself, between two proxied responses
            all.push_str("GET /healthz HTTP/1.1\r\nHost: any\r\n\r\n");
        } else {
            all.push_str(&s.head("GET", path, &[]));
        }
    }
    c.send(all.as_bytes());
    assert_eq!(c.response(false).text(), "delayed 200 ms\n");
    assert_pattern(&c.response(false).body, 1);
    assert_pattern(&c.response(false).body, 2);
    assert_eq!(c.response(false).text(), "ok\n");
    assert_pattern(&c.response(false).body, 3);
}

fn request_body_with_content_length(mode: Mode) {
    let s = Setup::new(mode);
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let mut c = s.client();
    c.send(
        s.head(
            "POST",
            "/echo",
            &[&format!("Content-Length: {}", body.len())],
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with(&body));
    assert!(
        r.text()
            .contains(&format!("Content-Length: {}\r\n", body.len()))
    );
}

fn request_body_chunked(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(
        s.head("POST", "/echo", &["Transfer-Encoding: chunked"])
            .as_bytes(),
    );
    c.send(b"5;ext=1\r\nhello\r\n");
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b"6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    let r = c.response(false);
    let text = r.text();
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello world"), "{text}");
}

fn head_has_no_body_and_keeps_connection(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(s.head("HEAD", "/bytes/12345", &[]).as_bytes());
    let r = c.response(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("12345"));
    c.send(s.head("GET", "/bytes/7", &[]).as_bytes());
    assert_pattern(&c.response(false).body, 7);
}

fn no_body_for_204_and_304(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(s.head("GET", "/status/204", &[]).as_bytes());
    assert_eq!(c.response(false).status, 204);
    c.send(s.head("GET", "/LadyBird.jpg", &[]).as_bytes());
    let full = c.response(false);
    let etag = full.header("etag").expect("etag").to_string();
    c.send(
        s.head("GET", "/LadyBird.jpg", &[&format!("If-None-Match: {etag}")])
            .as_bytes(),
    );
    let r = c.response(false);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    c.send(s.head("GET", "/bytes/4", &[]).as_bytes());
    assert_pattern(&c.response(false).body, 4);
}

fn expect_100_continue(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(
        s.head(
            "POST",
            "/echo",
            &["Content-Length: 5", "Expect: 100-continue"],
        )
        .as_bytes(),
    );
    let (status, _) = c.head();
    assert_eq!(status, 100);
    c.send(b"abcde");
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("abcde"));
    assert!(!r.text().to_ascii_lowercase().contains("expect:"));
}

fn hop_by_hop_request_fields_removed(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(
        s.head(
            "GET",
            "/echo",
            &[
                "Connection: keep-alive, X-Private",
                "X-Private: secret",
                "Keep-Alive: timeout=5",
                "Proxy-Connection: keep-alive",
                "Proxy-Authorization: Basic Zm9vOmJhcg==",
                "TE: trailers",
                "Trailer: X-T",
                "Upgrade: websocket",
                "X-Forwarded-For: 192.0.2.1",
                "X-Kept: yes",
            ],
        )
        .as_bytes(),
    );
    let echoed = c.response(false).text().to_ascii_lowercase();
    for gone in [
        "x-private",
        "keep-alive:",
        "proxy-connection",
        "proxy-authorization",
        "\r\nte:",
        "trailer",
        "upgrade",
        "connection:",
    ] {
        assert!(!echoed.contains(gone), "{gone} forwarded:\n{echoed}");
    }
    assert!(echoed.contains("x-kept: yes"));
    assert!(echoed.contains("via: 1.1 distilld"));
    assert!(
        echoed.contains("x-forwarded-for: 192.0.2.1, 127.0.0.1"),
        "{echoed}"
    );
}

fn hop_by_hop_response_fields_removed(mode: Mode) {
    let s = Setup::new(mode);
    let r = s.get("/headers?Connection=X-Bar&X-Bar=1&Keep-Alive=timeout%3D5&Upgrade=foo&X-Keep=yes&Via=1.1%20upstream");
    assert_eq!(r.status, 200);
    assert!(!r.has("x-bar") && !r.has("keep-alive") && !r.has("upgrade"));
    assert_eq!(r.header("x-keep"), Some("yes"));
    assert_eq!(r.header("via"), Some("1.1 upstream, 1.1 distilld"));
}

fn x_forwarded_for_can_be_turned_off(mode: Mode) {
    let s = Setup::with(mode, "[server]\nx_forwarded_for = false\n", &[]);
    let echoed = s.get("/echo").text().to_ascii_lowercase();
    assert!(!echoed.contains("x-forwarded-for"), "{echoed}");
}

fn upstream_connections_are_reused(mode: Mode) {
    // The cache would answer the repeats: this is about the origin pool.
    let s = Setup::with(mode, "[cache]\nmemory_bytes = 0\n", &[]);
    for _ in 0..5 {
        let mut c = s.client();
        for _ in 0..10 {
            c.send(s.head("GET", "/bytes/100", &[]).as_bytes());
            assert_pattern(&c.response(false).body, 100);
        }
    }
    let (connections, requests) = s.origin_stats();
    assert_eq!(requests, 50);
    // One per shard at most, and one more if a pooled connection raced its close.
    assert!(
        connections <= 3,
        "origin saw {connections} connections for 50 requests"
    );
}

fn health_answered_locally(mode: Mode) {
    let s = Setup::new(mode);
    let mut c = s.client();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: anything\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(s.origin_stats().1, 0, "origin not asked");
}

fn health_path_can_be_turned_off(mode: Mode) {
    let s = Setup::with(mode, "[server]\nhealthz_path = \"\"\n", &[]);
    let mut c = s.client();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: anything\r\n\r\n");
    let r = c.response(false);
    match mode {
        Mode::Forward => assert_eq!(r.status, 400, "not a proxy request"),
        Mode::Reverse => assert_eq!(r.status, 404, "the origin's answer"),
    }
}

fn corpus_file_with_validators(mode: Mode) {
    let s = Setup::new(mode);
    let r = s.get("/GreenMeadow.jpg");
    let original =
        std::fs::read(common::corpus_dir().join("GreenMeadow.jpg")).expect("corpus file");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert!(r.has("etag") && r.has("last-modified") && r.has("cache-control"));
    assert_eq!(r.body, original);
}
