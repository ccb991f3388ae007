//! The command line (check-config, --version) and routing decisions that need a real
//! process: DNS names, proxy loops.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Client, Mode, Setup, temp_path};

fn distilld(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_distilld"))
        .args(args)
        .output()
        .expect("run distilld")
}

#[test]
fn check_config_accepts_the_documented_default() {
    let path = temp_path("default.toml");
    std::fs::write(&path, distilld::config::EMBEDDED_DEFAULT_TOML).unwrap();
    let out = distilld(&["check-config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_names_every_bad_key() {
    let path = temp_path("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"nowhere\"\n[timeouts]\nupstream_connect_ms = 0\n",
    )
    .unwrap();
    let out = distilld(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.listen") && err.contains("timeouts.upstream_connect_ms"),
        "{err}"
    );

    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\nspeed = 11\n").unwrap();
    let out = distilld(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("speed") && err.contains("line 3"), "{err}");
}

#[test]
fn version_is_printed() {
    let out = distilld(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_command_line_values_are_refused() {
    let out = distilld(&["run", "--origin", "ftp://x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--origin"));
}

#[test]
fn forward_proxy_resolves_names_off_the_shard() {
    let s = Setup::new(Mode::Forward);
    let port = s.origin.addr.port();
    let mut c = s.client();
    for _ in 0..3 {
        c.send(
            format!(
                "GET http://localhost:{port}/bytes/3 HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.response(false);
        assert_eq!(r.status, 200);
        common::assert_pattern(&r.body, 3);
    }
}

#[test]
fn request_to_itself_is_refused_and_a_loop_is_caught() {
    // Loopback is allowed here, but the proxy's own listener never is.
    let s = Setup::new(Mode::Forward);
    let me = s.proxy.addr;
    let mut c = Client::connect(me);
    c.send(format!("GET http://{me}/x HTTP/1.1\r\nHost: {me}\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("own listener"));
    // A loop some other way round (another proxy sent it back) has our Via on it.
    let origin = s.origin.addr;
    c.send(
        format!("GET http://{origin}/x HTTP/1.1\r\nHost: {origin}\r\nVia: 1.1 distilld\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(c.response(false).status, 508);
}

/// The shipped destination rules (loopback denied) in front of a listener that must
/// never see a connection: every spelling of loopback, a name that resolves to it (the
/// hosts file's `localhost`), and a port outside the list are refused with 403 naming
/// the rule and the key.
#[test]
fn denied_destinations_get_403_and_no_connection_is_attempted() {
    let s = Setup::with(Mode::Forward, "[forward]\ndestinations_allowed = []\n", &[]);
    let trap = std::net::TcpListener::bind("127.0.0.1:0").expect("trap");
    trap.set_nonblocking(true).expect("nonblocking");
    let p = trap.local_addr().expect("addr").port();
    let mut c = s.client();
    let denied = [
        format!("127.0.0.1:{p}"),
        format!("2130706433:{p}"),
        format!("0177.0.0.1:{p}"),
        format!("0x7f.0.0.1:{p}"),
        format!("0x7f000001:{p}"),
        format!("127.1:{p}"),
        format!("[::ffff:127.0.0.1]:{p}"),
        format!("[::1]:{p}"),
        format!("localhost:{p}"),
        format!("LocalHost:{p}"),
    ];
    for authority in &denied {
        c.send(
            format!("GET http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
        );
        let r = c.response(false);
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 403, "{authority}: {body}");
        assert!(
            body.contains("forward.destinations_denied"),
            "{authority}: {body}"
        );
        assert!(
            body.contains("127.0.0.0/8") || body.contains("::1/128"),
            "{authority}: {body}"
        );
    }
    c.send(b"GET http://localhost:22/ HTTP/1.1\r\nHost: localhost:22\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("forward.ports_allowed"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        trap.accept().is_err(),
        "a denied destination saw a connection"
    );
    let (connections, _) = s.origin_stats();
    assert_eq!(connections, 0, "nothing reached the test's origin either");
}

#[test]
fn a_client_outside_the_list_gets_403_and_one_inside_is_served() {
    let s = Setup::with(
        Mode::Forward,
        "[forward]\nclients_allowed = [\"127.0.0.1\"]\n",
        &[],
    );
    let (target, host) = s.target("/bytes/10");
    let get = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut outsider = Client::connect_from(s.proxy.addr, [127, 0, 0, 2]);
    outsider.send(get.as_bytes());
    assert_eq!(outsider.response(false).status, 403);
    let mut insider = Client::connect_from(s.proxy.addr, [127, 0, 0, 1]);
    insider.send(get.as_bytes());
    assert_eq!(insider.response(false).status, 200);
}

#[test]
fn https_in_absolute_form_and_connect_to_other_ports_are_refused_clearly() {
    let s = Setup::new(Mode::Forward);
    let mut c = s.client();
    c.send(b"GET https://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 501);
    assert!(String::from_utf8_lossy(&r.body).contains("CONNECT"));
    // Refused before any lookup: no name leaves this machine.
    c.send(b"CONNECT example.test:25 HTTP/1.1\r\nHost: example.test:25\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("forward.connect_ports"));
}

#[test]
fn reverse_routes_by_host_and_prefix() {
    let a = common::start_origin(&["--cache-control", "max-age=1"]);
    let b = common::start_origin(&["--cache-control", "max-age=2"]);
    let config = format!(
        "[server]\nforward_proxy = false\n\
         [[route]]\nhost = \"a.test\"\norigin = \"http://{}\"\n\
         [[route]]\npath_prefix = \"/bytes/\"\norigin = \"http://{}\"\n",
        a.addr, b.addr
    );
    let proxy = common::start_proxy(Mode::Forward, a.addr, &config, 1);
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /bytes/1 HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert_eq!(c.response(false).header("cache-control"), Some("max-age=1"));
    c.send(b"GET /bytes/1 HTTP/1.1\r\nHost: b.test\r\n\r\n");
    assert_eq!(c.response(false).header("cache-control"), Some("max-age=2"));
    c.send(b"GET /other HTTP/1.1\r\nHost: b.test\r\n\r\n");
    assert_eq!(c.response(false).status, 404);
    c.send(format!("GET http://{}/bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n", a.addr).as_bytes());
    assert_eq!(c.response(false).status, 403, "forward proxying off");
}

#[test]
fn a_second_daemon_cannot_share_the_port() {
    let s = Setup::new(Mode::Forward);
    let addr = s.proxy.addr.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_distilld"))
        .args(["run", "--listen", &addr, "--workers", "1", "--admin", "off"])
        .output()
        .expect("run distilld");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen") && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn readme_documents_the_embedded_default_config_verbatim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in README.md");
    assert_eq!(
        block,
        distilld::config::EMBEDDED_DEFAULT_TOML,
        "README's config block is out of date"
    );
}

#[test]
fn a_client_outside_the_list_is_refused_before_any_upstream_work() {
    // Only a network the loopback client is not in: it is an outsider here.
    let s = Setup::with(
        Mode::Forward,
        "[forward]\nclients_allowed = [\"10.0.0.0/8\"]\n",
        &[],
    );
    let (_, before) = s.origin_stats();
    for _ in 0..3 {
        let r = s.get("/bytes/10");
        assert_eq!(r.status, 403);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains("forward.clients_allowed"),
            "names the key: {body}"
        );
    }
    let (_, after) = s.origin_stats();
    assert_eq!(after - before - 1, 0, "no request reached the origin");
    // The health check is not the forward proxy's to refuse.
    let mut c = s.client();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    // Logged once for the three refusals (a line per address a minute).
    let lines = || {
        std::fs::read_to_string(&s.proxy.log)
            .unwrap_or_default()
            .matches("not in forward.clients_allowed")
            .count()
    };
    assert!(common::wait_until(Duration::from_secs(2), || lines() >= 1));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(lines(), 1, "one line for three refusals");
}

/// Per-client limits: a burst past the token bucket gets 429 with Retry-After, and
/// service comes back after the refill; connections past the cap get 429 and are
/// closed, and a new one is admitted once one closes.
#[test]
fn a_client_over_its_limits_gets_429_then_service_again() {
    let s = Setup::with(
        Mode::Forward,
        "[forward]\nclient_requests_per_s = 4\nclient_requests_burst = 3\nclient_connections_max = 2\n",
        &[],
    );
    let (target, host) = s.target("/bytes/10");
    let get = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut c = s.client();
    let statuses: Vec<u16> = (0..5)
        .map(|_| {
            c.send(get.as_bytes());
            c.response(false).status
        })
        .collect();
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|&st| st == 429), "{statuses:?}");
    c.send(get.as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 429);
    let retry = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.clone())
        .expect("Retry-After");
    assert_eq!(retry, "1");
    // A token every 250 ms.
    std::thread::sleep(Duration::from_millis(300));
    c.send(get.as_bytes());
    assert_eq!(
        c.response(false).status,
        200,
        "served again after the refill"
    );
    // Two connections are open (c, and this one, admitted: it was answered); a third
    // is refused.
    let mut second = s.client();
    second.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(second.response(false).status, 200);
    let mut third = s.client();
    let mut refused = Vec::new();
    let _ = std::io::Read::read_to_end(&mut third.stream, &mut refused);
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    assert!(
        refused.contains("forward.client_connections_max"),
        "{refused}"
    );
    drop(second);
    let admitted = common::wait_until(Duration::from_secs(3), || {
        let mut fourth = s.client();
        fourth.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        fourth.try_response(false).is_ok_and(|r| r.status == 200)
    });
    assert!(admitted, "a connection closed makes room");
}

/// Basic authentication against an htpasswd file (bcrypt and argon2): 407 with the
/// challenge without or with wrong credentials, 200 with good ones, the credentials
/// absent at the origin and from the log, and a client that keeps failing gets 429.
#[test]
fn the_forward_proxy_asks_for_credentials_and_never_passes_them_on() {
    use argon2::PasswordHasher;
    let file = temp_path("htpasswd");
    let argon = argon2::Argon2::default()
        .hash_password(b"battery staple")
        .expect("argon2");
    let bcrypt = bcrypt::hash("correct horse", 4).expect("bcrypt");
    std::fs::write(&file, format!("ann:{bcrypt}\nbob:{argon}\n")).expect("write htpasswd");
    let config = format!(
        "[forward]\nauth_file = \"{}\"\nauth_failures_per_min = 3\n",
        file.display()
    );
    let s = Setup::with(Mode::Forward, &config, &[]);
    let (target, host) = s.target("/headers?_echo=Proxy-Authorization");
    let ask = |c: &mut Client, creds: Option<&str>| {
        let field = creds.map_or(String::new(), |b64| {
            format!("Proxy-Authorization: Basic {b64}\r\n")
        });
        c.send(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{field}\r\n").as_bytes());
        c.response(false)
    };
    let header = |r: &common::Response, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut c = s.client();
    let r = ask(&mut c, None);
    assert_eq!(r.status, 407);
    let challenge = header(&r, "proxy-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with("Basic realm=\"distilld\""),
        "{challenge}"
    );
    // ann:correct horse, bob:battery staple, then a wrong password for ann.
    let ann = "YW5uOmNvcnJlY3QgaG9yc2U=";
    let bob = "Ym9iOmJhdHRlcnkgc3RhcGxl";
    let wrong = "YW5uOndyb25n";
    for good in [ann, bob, ann] {
        let r = ask(&mut c, Some(good));
        assert_eq!(r.status, 200, "{good}");
        assert_eq!(r.body, b"\n", "the origin saw no Proxy-Authorization");
    }
    let r = ask(&mut c, Some(wrong));
    assert_eq!(r.status, 407);
    assert!(header(&r, "proxy-authenticate").is_some());
    // Two more failures use the client's three a minute; the next is not even checked.
    for _ in 0..2 {
        assert_eq!(ask(&mut c, Some(wrong)).status, 407);
    }
    let r = ask(&mut c, Some(wrong));
    assert_eq!(r.status, 429);
    assert!(header(&r, "retry-after").is_some());
    let log = std::fs::read_to_string(&s.proxy.log).unwrap_or_default();
    for secret in [ann, bob, wrong, "correct horse", "battery staple"] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
}

/// The access log lines in a daemon's stderr, once `want` of them are there (they are
/// batched and written within a tick of their request).
fn access_lines(log: &std::path::Path, want: usize, json: bool) -> Vec<String> {
    let mut lines = Vec::new();
    common::wait_until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        lines = text
            .lines()
            .filter(|l| {
                if json {
                    l.starts_with('{')
                } else {
                    l.contains("Z access ")
                }
            })
            .map(str::to_string)
            .collect();
        lines.len() >= want
    });
    lines
}

#[test]
fn access_log_lines_reach_stderr_as_text_or_json_lines() {
    for mode in [Mode::Forward, Mode::Reverse] {
        let s = Setup::with(mode, "", &["--cache-control", "max-age=60"]);
        assert_eq!(s.get("/bytes/1000").status, 200);
        assert_eq!(s.get("/bytes/1000").status, 200, "a hit");
        let lines = access_lines(&s.proxy.log, 2, false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (target, _) = s.target("/bytes/1000");
        for l in &lines {
            assert!(
                l.contains(&format!(
                    "method=GET target=\"{target}\" status=200 bytes=1000 "
                )),
                "{l}"
            );
        }
        // Each shard writes its own batches: the two lines may come in either order.
        let miss = format!("upstream={}", s.origin.addr);
        assert!(
            lines.iter().any(|l| l.ends_with(&miss)),
            "the miss: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.ends_with("upstream=-")),
            "the hit: {lines:?}"
        );
    }
    let s = Setup::with(Mode::Reverse, "[log]\naccess_log_format = \"json\"\n", &[]);
    let mut c = s.client();
    c.send(s.head("GET", "/bytes/10?a=\"b\"", &[]).as_bytes());
    assert_eq!(c.response(false).status, 200);
    let lines = access_lines(&s.proxy.log, 1, true);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(v["target"], "/bytes/10?a=\"b\"");
    assert_eq!(
        (v["status"].as_u64(), v["bytes"].as_u64()),
        (Some(200), Some(10))
    );
    let s = Setup::with(Mode::Reverse, "[log]\naccess_log = false\n", &[]);
    assert_eq!(s.get("/bytes/10").status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        access_lines(&s.proxy.log, 0, false).is_empty(),
        "access_log = false"
    );
}
