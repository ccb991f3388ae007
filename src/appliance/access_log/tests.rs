use super::*;
use std::time::Instant;

fn entry<'a>(target: &'a str, upstream: Option<&'a crate::http::target::Authority>) -> Entry<'a> {
    Entry {
        client: "127.0.0.9:5000",
        method: "GET",
        target,
        status: 200,
        bytes: 1024,
        micros: 87,
        upstream,
        tunnel: None,
    }
}

#[test]
fn a_text_line_says_what_the_tracing_line_said() {
    let log = AccessLog::in_memory(Arc::default());
    let origin = crate::http::target::Authority {
        host: "o.test".into(),
        port: 8080,
    };
    log.write(
        Format::Text,
        &entry("/a?b=1", Some(&origin)),
        Instant::now(),
    );
    let line = log.take();
    let rest = line.split_once("Z access ").expect("stamp then access").1;
    assert_eq!(
        rest,
        "client=127.0.0.9:5000 method=GET target=\"/a?b=1\" status=200 bytes=1024 micros=87 upstream=o.test:8080\n"
    );
    assert_eq!(line.as_bytes()[10], b'T');
    assert_eq!(line.as_bytes()[23], b'Z');
}

#[test]
fn a_json_line_is_one_valid_object_whatever_the_target() {
    let log = AccessLog::in_memory(Arc::default());
    let mut tunnel = entry("h:443", None);
    tunnel.method = "CONNECT";
    tunnel.tunnel = Some((7, "client closed \"early\""));
    log.write(
        Format::Json,
        &entry("/q\"uote\\back\u{1}", None),
        Instant::now(),
    );
    log.write(Format::Json, &tunnel, Instant::now());
    let text = log.take();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(v["target"], "/q\"uote\\back\u{1}");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 1024);
    assert_eq!(v["upstream"], serde_json::Value::Null);
    assert!(
        v["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24)
    );
    let t: serde_json::Value = serde_json::from_str(lines[1]).expect("valid JSON");
    assert_eq!(
        (t["bytes_up"].as_u64(), t["end"].as_str()),
        (Some(7), Some("client closed \"early\""))
    );
}

#[test]
fn a_text_line_stays_one_line() {
    let log = AccessLog::in_memory(Arc::default());
    log.write(Format::Text, &entry("/x\n\"y\u{7f}", None), Instant::now());
    let line = log.take();
    assert_eq!(line.matches('\n').count(), 1);
    assert!(line.contains(r#"target="/x\x0a\"y\x7f""#), "{line}");
}

#[test]
fn utc_stamps_are_spelled_right() {
    let spell = |secs| {
        let mut out = [0u8; 19];
        spell_utc(secs, &mut out);
        String::from_utf8(out.to_vec()).expect("ascii")
    };
    assert_eq!(spell(0), "1970-01-01T00:00:00");
    assert_eq!(spell(1_709_164_800), "2024-02-29T00:00:00");
    assert_eq!(spell(1_795_824_000 + 3_723), "2026-11-28T01:02:03");
    assert_eq!(spell(4_107_542_399), "2100-02-28T23:59:59");
}

#[test]
fn writes_end_at_lines() {
    let line = |n: usize| {
        let mut l = vec![b'a'; n - 1];
        l.push(b'\n');
        l
    };
    let mut bytes = Vec::new();
    for _ in 0..100 {
        bytes.extend(line(100));
    }
    assert_eq!(chunk_end(&bytes), 4000);
    assert_eq!(chunk_end(&bytes[..250]), 250);
    let long = line(10_000);
    assert_eq!(
        chunk_end(&long),
        10_000,
        "a line longer than a write is written whole"
    );
}

#[test]
fn a_line_is_written_without_allocating() {
    let log = AccessLog::in_memory(Arc::default());
    let origin = crate::http::target::Authority {
        host: "o.test".into(),
        port: 80,
    };
    log.write(Format::Text, &entry("/warm", Some(&origin)), Instant::now());
    let (_, n) = crate::peak_alloc::allocations(|| {
        for _ in 0..100 {
            log.write(Format::Text, &entry("/x", Some(&origin)), Instant::now());
            log.write(Format::Json, &entry("/x", None), Instant::now());
        }
    });
    assert_eq!(n, 0);
}

/// A writer that takes nothing until told to, so batches pile up.
fn stalled_sink(shard: usize) -> (Sink, Receiver<Batch>, Sender<Vec<u8>>) {
    let (full, full_rx) = crossbeam_channel::bounded(BUFFERS_PER_SHARD);
    let (empty_tx, empty) = crossbeam_channel::bounded(BUFFERS_PER_SHARD);
    (Sink { shard, full, empty }, full_rx, empty_tx)
}

#[test]
fn a_writer_that_falls_behind_costs_counted_lines_never_a_wait() {
    let stats: Arc<Stats> = Arc::default();
    let (sink, full_rx, _empty_tx) = stalled_sink(0);
    let log = AccessLog::new(Some(sink), stats.clone());
    let mut written = 0u64;
    // Far more than every buffer holds: the shard goes on, lines beyond are dropped.
    for _ in 0..(BUFFERS_PER_SHARD + 3) {
        for _ in 0..(BATCH_BYTES / 100) {
            log.write(
                Format::Text,
                &entry("/a-long-enough-target-to-fill-batches", None),
                Instant::now(),
            );
            written += 1;
        }
        log.flush();
    }
    let queued: Vec<Batch> = full_rx.try_iter().collect();
    let queued_lines: u64 = queued
        .iter()
        .map(|b| b.bytes.iter().filter(|&&c| c == b'\n').count() as u64)
        .sum();
    assert_eq!(
        queued.len(),
        BUFFERS_PER_SHARD - 1,
        "one buffer is the shard's own"
    );
    let dropped = stats.access_log_dropped.get();
    assert!(dropped > 0, "lines dropped once every buffer was taken");
    assert_eq!(
        queued_lines + dropped,
        written,
        "every line written or counted"
    );
}

#[test]
fn the_writer_writes_every_batch_and_gives_the_buffers_back() {
    let (sink, full_rx, empty_tx) = stalled_sink(0);
    let stats: Arc<Stats> = Arc::default();
    let log = AccessLog::new(Some(sink), stats.clone());
    let writer = std::thread::spawn(move || {
        let mut out = Vec::new();
        write_batches(full_rx, vec![empty_tx], &mut out, &Counter::default());
        out
    });
    // Fewer lines than the shard's buffers hold, so none may be dropped however the
    // writer thread is scheduled.
    for i in 0..1500 {
        log.write(Format::Text, &entry(&format!("/{i}"), None), Instant::now());
    }
    drop(log); // flushes
    let out = writer.join().expect("writer");
    let text = String::from_utf8(out).expect("utf-8");
    let targets: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split("target=\"")
                .nth(1)
                .and_then(|t| t.split('"').next())
                .unwrap_or("")
        })
        .collect();
    let expected: Vec<String> = (0..1500).map(|i| format!("/{i}")).collect();
    assert_eq!(targets, expected, "every line, in order");
    assert_eq!(stats.access_log_dropped.get(), 0);
}

#[test]
fn a_line_s_time_follows_the_driver_s_clock_reading() {
    let log = AccessLog::in_memory(Arc::default());
    let at = Instant::now();
    let t0 = log.wall_time(at);
    let later = log.wall_time(at + std::time::Duration::from_millis(250));
    assert_eq!(later - t0, std::time::Duration::from_millis(250));
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    assert!(
        system.abs_diff(t0) < std::time::Duration::from_secs(1),
        "{t0:?} {system:?}"
    );
    // Past a second the clocks are read again, still in step.
    let much_later = log.wall_time(at + std::time::Duration::from_secs(3));
    let step = much_later - t0;
    assert!(
        step.abs_diff(std::time::Duration::from_secs(3)) < std::time::Duration::from_millis(50),
        "{step:?}"
    );
}

/// A log destination that fails every write.
struct Broken;

impl std::io::Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk full"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn lines_a_failed_write_loses_are_counted() {
    let (sink, full_rx, empty_tx) = stalled_sink(0);
    let log = AccessLog::new(Some(sink), Arc::default());
    for i in 0..10 {
        log.write(Format::Text, &entry(&format!("/{i}"), None), Instant::now());
    }
    drop(log);
    let unwritten = Counter::default();
    write_batches(full_rx, vec![empty_tx], Broken, &unwritten);
    assert_eq!(unwritten.get(), 10);
}
