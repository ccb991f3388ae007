//! distill-load against real servers: bounded runs whose counts must add up.

mod common;

use std::process::Command;

use common::{Mode, Setup, origin_stats, start_origin, temp_path};

fn load(args: &[&str]) -> (std::process::Output, Option<serde_json::Value>) {
    let json = temp_path("load.json");
    let out = Command::new(env!("CARGO_BIN_EXE_distill-load"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run distill-load");
    let report = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    (out, report)
}

/// Runs distill-load, which must succeed, and returns its JSON report.
fn load_ok(args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let (out, report) = load(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, report.expect("json report"))
}

fn statuses(r: &serde_json::Value) -> u64 {
    r["status"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
}

#[test]
fn two_second_closed_loop_counts_add_up() {
    let origin = start_origin(&[]);
    let url = format!("http://{}/bytes/1000", origin.addr);
    let (out, r) = load_ok(&["-c", "8", "-t", "2", "-d", "2", &url]);
    let requests = r["requests"].as_u64().unwrap();
    assert!(requests > 100, "{r}");
    assert_eq!(statuses(&r), requests, "every counted request has a status");
    assert_eq!(r["status"]["200"].as_u64(), Some(requests));
    assert_eq!(r["errors"]["read"].as_u64(), Some(0));
    let per_response = r["bytes"].as_u64().unwrap() / requests;
    assert!(
        (1000..1400).contains(&per_response),
        "{per_response} bytes per response"
    );
    let (connections, served) = origin_stats(origin.addr);
    assert_eq!(
        connections,
        8 + 1,
        "8 keep-alive connections and the reachability probe"
    );
    // the origin also answered requests still in flight when the window closed
    assert!(
        served >= requests && served <= requests + 8,
        "origin {served}, counted {requests}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("p99.9") && text.contains("200: "), "{text}");
}

#[test]
fn open_loop_through_the_proxy_with_zipf_targets() {
    let s = Setup::new(Mode::Forward);
    let urls_file = temp_path("urls.txt");
    let list: Vec<String> = (1..=20)
        .map(|i| format!("http://{}/bytes/{}", s.origin.addr, i * 10))
        .collect();
    std::fs::write(&urls_file, list.join("\n")).unwrap();
    let proxy = s.proxy.addr.to_string();
    let (_, r) = load_ok(&[
        "-c",
        "4",
        "-d",
        "2",
        "--rate",
        "500",
        "--proxy",
        &proxy,
        "--zipf",
        "0.9",
        "--seed",
        "3",
        "--urls",
        urls_file.to_str().unwrap(),
        "-H",
        "Save-Data: on",
    ]);
    let requests = r["requests"].as_u64().unwrap();
    assert!(
        (900..=1000).contains(&requests),
        "500/s for 2 s gave {requests}"
    );
    assert_eq!(statuses(&r), requests);
    assert!(r["shortfall"].is_null(), "{r}");
    // every counted request was answered by the proxy's cache or by the origin (Zipf
    // repeats hot URLs, so the cache took some); up to one per connection may still
    // have been in flight when the window closed
    let hits = r["cache"]["hits"].as_u64().unwrap_or(0);
    assert!(hits > 0, "{r}");
    let served = s.origin_stats().1;
    assert!(
        (requests..=requests + 4).contains(&(served + hits)),
        "origin served {served}, cache hits {hits}, counted {requests}"
    );
}

#[test]
fn request_count_mode_and_pipelining() {
    let origin = start_origin(&[]);
    let url = format!("http://{}/bytes/10", origin.addr);
    let (_, r) = load_ok(&["-c", "4", "-n", "2000", "--pipeline", "8", &url]);
    assert_eq!(r["requests"].as_u64(), Some(2000));
    assert_eq!(origin_stats(origin.addr).1, 2000);
}

#[test]
fn unreachable_target_and_bad_use_are_refused() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (out, _) = load(&["-d", "1", &format!("http://{dead}/")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let (out, _) = load(&["-d", "1", "ftp://127.0.0.1/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an http:// URL"));
}

#[test]
fn unreachable_rate_is_reported_not_hidden() {
    let origin = start_origin(&[]);
    // one connection to a 20 ms endpoint cannot carry 1000 requests a second
    let url = format!("http://{}/delay/20", origin.addr);
    let (out, report) = load(&["-c", "1", "-d", "1", "--rate", "1000", &url]);
    assert!(out.status.success());
    let r = report.unwrap();
    assert!(
        r["shortfall"]
            .as_str()
            .is_some_and(|s| s.contains("not reached")),
        "{r}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not reached"));
}

#[test]
fn a_new_connection_per_request() {
    let origin = start_origin(&[]);
    let url = format!("http://{}/bytes/10", origin.addr);
    let (out, report) = load(&["-c", "2", "-n", "50", "--no-keepalive", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.unwrap()["requests"].as_u64(), Some(50));
    let (connections, requests) = origin_stats(origin.addr);
    assert_eq!(requests, 50);
    // one per request, the reachability probe, and the two left open at the end
    assert!(
        (51..=53).contains(&connections),
        "{connections} connections"
    );
}
