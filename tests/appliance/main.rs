//! distilld as a systemd service: notifications and the watchdog, reload, graceful stop
//! and binary upgrade under load, a failed shard ending the process, the metrics, the
//! status page, and the shipped units. Real processes on 127.0.0.1; systemd itself is
//! stood in for by a notification socket the test binds.

#[path = "../common/mod.rs"]
mod common;
mod daemon;
mod load;
mod pages;
mod units;

use std::time::{Duration, Instant};

use common::start_origin;
use daemon::{Daemon, Notifications, http_get, signal};

const CONFIG: &str = "[server]\nhealthz_path = \"/healthz\"\n[log]\naccess_log = false\n";

#[test]
fn notifies_ready_watchdog_reload_and_stopping() {
    let origin = start_origin(&[]);
    let notify = Notifications::bind();
    let env = [("WATCHDOG_USEC", "400000")];
    let mut d = Daemon::start(CONFIG, origin.addr, notify.env(&env));
    let ready = notify.wait_for("READY=1", Duration::from_secs(10));
    assert!(ready.is_some(), "no READY=1");
    // READY comes once every shard listens: the port answers at once.
    assert_eq!(http_get(d.addr, "/healthz").0, 200);
    assert!(
        notify.count("WATCHDOG=1", Duration::from_secs(2)) >= 3,
        "WATCHDOG=1 every 200 ms"
    );

    // A valid reload applies live: the health path moves.
    d.write_config("[server]\nhealthz_path = \"/alive\"\n");
    signal(d.pid(), libc::SIGHUP);
    let reloading = notify
        .wait_for("RELOADING=1", Duration::from_secs(5))
        .expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    assert!(notify.wait_for("READY=1", Duration::from_secs(5)).is_some());
    assert!(
        common::wait_until(Duration::from_secs(2), || http_get(d.addr, "/alive").0
            == 200),
        "the reloaded health path answers"
    );
    assert_eq!(
        http_get(d.addr, "/healthz").0,
        404,
        "now proxied to the origin"
    );

    // An invalid file is refused; the running config stays.
    d.write_config("[server]\nworkers = \"many\"\n");
    signal(d.pid(), libc::SIGHUP);
    assert!(
        notify
            .wait_for("RELOADING=1", Duration::from_secs(5))
            .is_some()
    );
    assert!(notify.wait_for("READY=1", Duration::from_secs(5)).is_some());
    assert_eq!(
        http_get(d.addr, "/alive").0,
        200,
        "the old config still serves"
    );
    // The log is written by a thread of its own: the line lands shortly after.
    let logged = common::wait_until(Duration::from_secs(3), || {
        d.log().contains("reload refused")
    });
    assert!(logged, "{}", d.log());

    signal(d.pid(), libc::SIGTERM);
    assert!(
        notify
            .wait_for("STOPPING=1", Duration::from_secs(5))
            .is_some()
    );
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_stuck_shard_stops_the_watchdog_and_fails_health() {
    let origin = start_origin(&[]);
    let notify = Notifications::bind();
    let env = [
        ("WATCHDOG_USEC", "400000"),
        ("DISTILLD_TEST_STALL_SHARD", "1@1500"),
    ];
    let d = Daemon::start(CONFIG, origin.addr, notify.env(&env));
    assert!(
        notify
            .wait_for("READY=1", Duration::from_secs(10))
            .is_some()
    );
    assert!(notify.count("WATCHDOG=1", Duration::from_millis(1000)) >= 2);
    std::thread::sleep(Duration::from_millis(1500));
    notify.drain();
    assert_eq!(
        notify.count("WATCHDOG=1", Duration::from_millis(1500)),
        0,
        "no pings while shard 1 is stuck"
    );
    let (status, body) = http_get(d.admin, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unhealthy shards: 1"), "{body}");
}

#[test]
fn a_panicking_shard_ends_the_process_with_a_failure() {
    let origin = start_origin(&[]);
    let notify = Notifications::bind();
    let env = [("DISTILLD_TEST_PANIC_SHARD", "0@500")];
    let mut d = Daemon::start(CONFIG, origin.addr, notify.env(&env));
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(70));
    let log = d.log();
    assert!(log.contains("shard 0 stopped: panicked"), "{log}");
}

#[test]
fn sigterm_finishes_every_request_accepted_before_it() {
    let origin = start_origin(&[]);
    let mut d = Daemon::start(CONFIG, origin.addr, Vec::new());
    let signal_at = Instant::now() + Duration::from_millis(700);
    let clients = load::slow_clients(d.addr, 8, "/delay/300", signal_at);
    let wait = signal_at.saturating_duration_since(Instant::now());
    std::thread::sleep(wait);
    signal(d.pid(), libc::SIGTERM);
    let outcome = load::join(clients);
    assert!(outcome.completed_after_signal > 0, "{outcome:?}");
    assert_eq!(outcome.lost_before_signal, 0, "{outcome:?}");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn reloads_and_a_binary_upgrade_under_load_lose_nothing() {
    upgrade_under_load("uring");
}

#[test]
fn reloads_and_a_binary_upgrade_under_load_lose_nothing_on_epoll() {
    upgrade_under_load("epoll");
}

/// Keep-alive and connection-per-request clients, cached and proxied requests, while
/// the daemon gets 20 SIGHUPs and then a binary upgrade: not one failed request, and
/// the new process feeds the watchdog once the old one has gone.
fn upgrade_under_load(io: &str) {
    let origin = start_origin(&[]);
    let notify = Notifications::bind();
    let env = notify.env(&[("WATCHDOG_USEC", "1000000"), ("WATCHDOG_PID", "self")]);
    let mut d = Daemon::start_on(io, CONFIG, origin.addr, env);
    assert!(
        notify
            .wait_for("READY=1", Duration::from_secs(10))
            .is_some()
    );
    let old_pid = d.pid();
    let runs = load::distill_load_mix(d.addr, 7);
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..20 {
        signal(old_pid, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(60));
    }
    signal(old_pid, libc::SIGUSR2);
    let new_pid = d.wait_new_pid(old_pid, Duration::from_secs(15));
    let _new = daemon::Reaper(new_pid);
    let mainpid = notify
        .wait_for("MAINPID=", Duration::from_secs(5))
        .expect("MAINPID=");
    assert!(
        mainpid.contains(&format!("MAINPID={new_pid}")),
        "{mainpid:?}"
    );
    assert_eq!(
        d.wait_exit(Duration::from_secs(40)),
        Some(0),
        "the old process drains and exits"
    );
    notify.drain();
    assert!(
        notify.count("WATCHDOG=1", Duration::from_millis(1600)) >= 2,
        "the new process pings the watchdog"
    );
    for report in load::finish(runs) {
        report.assert_clean();
    }
    assert_eq!(
        http_get(d.addr, "/healthz").0,
        200,
        "the new process serves"
    );
}

#[test]
fn metrics_parse_and_count_what_was_sent() {
    pages::metrics_parse_and_count_what_was_sent();
}

#[test]
fn the_status_page_shows_live_figures_in_a_real_browser() {
    pages::status_page_in_headless_chromium();
}

#[test]
fn shipped_units_verify_and_are_hardened() {
    units::verify_and_score();
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let origin = start_origin(&[]);
    let mut d = Daemon::start(CONFIG, origin.addr, Vec::new());
    // A request that would hold the drain for 20 s.
    let addr = d.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/delay/20000"));
    std::thread::sleep(Duration::from_millis(300));
    signal(d.pid(), libc::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_millis(1500)),
        None,
        "the first one drains"
    );
    let second = Instant::now();
    signal(d.pid(), libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
    let _ = slow.join();
}

#[test]
fn a_client_connected_before_a_stop_is_answered() {
    for io in ["uring", "epoll"] {
        let origin = start_origin(&[]);
        let mut d = Daemon::start_on(io, CONFIG, origin.addr, Vec::new());
        let mut early = std::net::TcpStream::connect(d.addr).expect("connect");
        std::thread::sleep(Duration::from_millis(300));
        signal(d.pid(), libc::SIGTERM);
        // Past the shards' next tick: they drain now.
        std::thread::sleep(Duration::from_millis(300));
        use std::io::{Read, Write};
        early
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("send");
        let _ = early.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = String::new();
        let _ = early.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{io}: {answer:?}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{io}: {answer}"
        );
        assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{io}");
    }
}
