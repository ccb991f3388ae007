//! The shipped systemd unit: valid for systemd (`systemd-analyze verify`), hardened to
//! an exposure of at most 2.5 (`systemd-analyze security --offline=true`), and
//! consistent with the daemon's defaults.

use std::process::Command;

use super::common::temp_path;
use super::pages::require;

const UNIT: &str = include_str!("../../systemd/distilld.service");

fn directive<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

pub fn verify_and_score() {
    require(&["systemd-analyze", "--version"], "systemd");
    // The unit as installed, with the binary it names pointed at this build (verify
    // checks that the executables exist).
    let dir = temp_path("units");
    std::fs::create_dir_all(&dir).expect("unit dir");
    let path = dir.join("distilld.service");
    let unit = UNIT.replace("/usr/bin/distilld", env!("CARGO_BIN_EXE_distilld"));
    std::fs::write(&path, unit).expect("write unit");

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for distilld.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in {report}"));
    assert!(exposure <= 2.5, "exposure {exposure} > 2.5:\n{report}");

    assert_eq!(directive(UNIT, "Type"), ["notify"]);
    assert!(directive(UNIT, "ExecReload")[0].contains("check-config"));
    assert_eq!(directive(UNIT, "Restart"), ["on-failure"]);
    assert!(!directive(UNIT, "WatchdogSec").is_empty());
    let stop: u64 = directive(UNIT, "TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    let drain = distilld::config::Config::embedded_default()
        .expect("default config")
        .drain_timeout;
    assert!(
        stop > drain.as_secs(),
        "TimeoutStopSec {stop}s must exceed the drain deadline {drain:?}"
    );
}
