//! The admin listener's pages read as their readers read them: `/metrics` by a strict
//! OpenMetrics parser (the Prometheus project's Python client), `/status` by a real
//! headless browser in a network namespace that has nothing but loopback.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::{start_origin, temp_path};
use super::daemon::{Daemon, http_get};

/// Installs a Debian package when `probe` fails (the tests run as root on Debian, as CI
/// does); fails the test with the reason when it cannot.
pub fn require(probe: &[&str], package: &str) {
    let present = Command::new(probe[0])
        .args(&probe[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine may not have the package lists yet.
    let updated = || {
        Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok()
    };
    let status = install() || (updated() && install());
    assert!(
        status,
        "this test needs Debian's {package} (apt-get install {package})"
    );
}

/// Every sample of an exposition, parsed strictly: `name{labels}` -> value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    // Debian's python, which Debian's package is installed for (a python3 earlier on
    // the PATH may be another).
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    require(
        &[python, "-c", "import prometheus_client"],
        "python3-prometheus-client",
    );
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

fn scrape(d: &Daemon) -> HashMap<String, f64> {
    let (status, body) = http_get(d.admin, "/metrics");
    assert_eq!(status, 200);
    parse_metrics(&body)
}

fn post(addr: SocketAddr, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub fn metrics_parse_and_count_what_was_sent() {
    let origin = start_origin(&[]);
    let d = Daemon::start("", origin.addr, Vec::new());
    for _ in 0..10 {
        assert_eq!(http_get(d.addr, "/bytes/1000").0, 200);
    }
    for _ in 0..3 {
        assert_eq!(post(d.addr, "/echo", "hello"), 200);
    }
    for _ in 0..2 {
        assert_eq!(http_get(d.addr, "/no-such-file").0, 404);
    }
    let first = scrape(&d);
    let at =
        |m: &HashMap<String, f64>, k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}"));
    assert_eq!(at(&first, "distilld_requests_total{}"), 15.0);
    assert_eq!(at(&first, "distilld_connections_accepted_total{}"), 15.0);
    assert_eq!(at(&first, r#"distilld_responses_total{class="2xx"}"#), 13.0);
    assert_eq!(at(&first, r#"distilld_responses_total{class="4xx"}"#), 2.0);
    assert_eq!(at(&first, "distilld_cache_hits_total{}"), 9.0);
    assert_eq!(at(&first, "distilld_cache_misses_total{}"), 3.0);
    assert_eq!(at(&first, "distilld_cache_objects{}"), 1.0);
    assert!(at(&first, "distilld_response_body_queued_bytes_total{}") >= 10_000.0);
    assert!(first.contains_key(r#"distilld_shard_connections{shard="0"}"#));
    let drivers: f64 = first
        .iter()
        .filter(|(k, _)| k.starts_with("distilld_io_driver{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(drivers, 1.0, "one driver in use");
    assert_eq!(at(&first, r#"distilld_shard_healthy{shard="1"}"#), 1.0);

    for _ in 0..5 {
        assert_eq!(http_get(d.addr, "/bytes/1000").0, 200);
    }
    let second = scrape(&d);
    assert_eq!(at(&second, "distilld_requests_total{}"), 20.0);
    assert_eq!(at(&second, "distilld_cache_hits_total{}"), 14.0);
    for (key, before) in &first {
        let cumulative =
            key.contains("_total{") || key.contains("_count{") || key.contains("_bucket{");
        if cumulative {
            let after = at(&second, key);
            assert!(after >= *before, "{key} went down: {before} -> {after}");
        }
    }
}

pub fn status_page_in_headless_chromium() {
    require(&["chromium", "--version"], "chromium");
    require(&["ip", "-V"], "iproute2");
    let out_dir = temp_path("status-page");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    // The browser, the daemon, the origin and the load all run in a namespace of their
    // own with only loopback: nothing the browser does can leave the machine. The
    // daemon runs on its shipped ports there (nobody else is in that namespace).
    let script = r#"
set -e
ip link set lo up
"$ORIGIN" --listen 127.0.0.1:8080 --root "$CORPUS" >/dev/null 2>&1 &
"$DISTILLD" run --origin http://127.0.0.1:8080 --workers 2 >/dev/null 2>"$OUT/distilld.log" &
for i in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/9180) 2>/dev/null && break
  sleep 0.1
done
"$LOAD" -c 4 -d 30 http://127.0.0.1:3128/bytes/1000 >/dev/null 2>&1 &
sleep 2
browse() {
  chromium --headless --no-sandbox --disable-gpu --user-data-dir="$OUT/profile-$1" \
    --virtual-time-budget=3000 --dump-dom http://127.0.0.1:9180/status > "$OUT/dom-$1.html" 2>/dev/null
}
browse 1
sleep 2
browse 2
kill $(jobs -p) 2>/dev/null || true
"#;
    let status = Command::new("unshare")
        .args(["-n", "bash", "-c", script])
        .env("ORIGIN", env!("CARGO_BIN_EXE_distill-origin"))
        .env("DISTILLD", env!("CARGO_BIN_EXE_distilld"))
        .env("LOAD", env!("CARGO_BIN_EXE_distill-load"))
        .env("CORPUS", super::common::corpus_dir())
        .env("OUT", &out_dir)
        .status()
        .expect("unshare");
    assert!(status.success(), "the namespace script failed ({status})");
    // The text of the element with this id (attributes may follow the id).
    let field = |dom: &str, id: &str| -> String {
        let marker = format!("id=\"{id}\"");
        dom.split_once(&marker)
            .and_then(|(_, rest)| rest.split_once('>'))
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(value, _)| value.trim().to_string())
            .unwrap_or_default()
    };
    let read =
        |n: u32| std::fs::read_to_string(out_dir.join(format!("dom-{n}.html"))).unwrap_or_default();
    let (one, two) = (read(1), read(2));
    let requests = |dom: &str| field(dom, "requests").parse::<u64>().unwrap_or(0);
    assert!(
        requests(&one) > 0,
        "the first load shows no requests: {one}"
    );
    assert!(
        requests(&two) > requests(&one),
        "the figures did not change between loads:\n{one}\n{two}"
    );
    let rps: f64 = field(&two, "rps").parse().unwrap_or(0.0);
    assert!(rps > 0.0, "requests/s while load runs: {two}");
    assert!(field(&two, "hit").ends_with('%'), "{two}");
    assert_eq!(field(&two, "health"), "ok", "{two}");
    assert!(two.contains("<td>1</td>"), "a row per shard: {two}");
}
