//! distill-origin on its own: the corpus with realistic headers, added latency and a
//! bandwidth cap, as the load and distillation tests need.

mod common;

use std::time::{Duration, Instant};

use common::{Client, corpus_dir, start_origin};

fn get(c: &mut Client, host: std::net::SocketAddr, path: &str) -> common::Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    c.response(false)
}

#[test]
fn serves_the_whole_corpus_with_validators() {
    let origin = start_origin(&[]);
    let mut c = Client::connect(origin.addr);
    let mut served = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let r = get(&mut c, origin.addr, &format!("/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.body, std::fs::read(&path).unwrap(), "{name}");
        for h in [
            "content-type",
            "etag",
            "last-modified",
            "cache-control",
            "date",
        ] {
            assert!(r.has(h), "{name} lacks {h}");
        }
        served += 1;
    }
    assert!(served > 20);
    let r = get(&mut c, origin.addr, "/../Cargo.toml");
    assert_eq!(r.status, 404, "no escape from the root");
}

#[test]
fn added_latency_and_bandwidth_cap() {
    let origin = start_origin(&["--latency-ms", "150"]);
    let mut c = Client::connect(origin.addr);
    let t = Instant::now();
    assert_eq!(get(&mut c, origin.addr, "/bytes/10").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    let fast = start_origin(&[]);
    let mut c = Client::connect(fast.addr);
    let t = Instant::now();
    let r = get(&mut c, fast.addr, "/bytes/100000?rate_kbps=200");
    assert_eq!(r.body.len(), 100_000);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn conditional_requests_get_304() {
    let origin = start_origin(&[]);
    let mut c = Client::connect(origin.addr);
    let r = get(&mut c, origin.addr, "/feather.gif");
    let lm = r.header("last-modified").unwrap().to_string();
    c.send(
        format!("GET /feather.gif HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {lm}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(c.response(false).status, 304);
    c.send(b"GET /feather.gif HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"nope\"\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
}
