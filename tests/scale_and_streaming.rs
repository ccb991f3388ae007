//! Many connections at once, and bodies far larger than the proxy's buffers, streamed
//! through bounded memory.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Client, Mode, Setup, rss};

in_both_modes!(
    five_hundred_concurrent_connections,
    hundred_megabytes_each_way_in_bounded_memory,
);

const CONCURRENT: usize = 500;

fn five_hundred_concurrent_connections(mode: Mode) {
    let s = Setup::new(mode);
    let mut clients: Vec<Client> = (0..CONCURRENT).map(|_| s.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(
            s.head("GET", &format!("/bytes/{}", 100 + i), &[])
                .as_bytes(),
        );
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.response(false);
        assert_eq!(r.status, 200, "client {i}");
        common::assert_pattern(&r.body, 100 + i);
    }
    // all still usable
    for c in clients.iter_mut().step_by(50) {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response(false).status, 200);
    }
}

const BIG: u64 = 100_000_000;
const RSS_GROWTH_MAX: u64 = 32 << 20;

fn hundred_megabytes_each_way_in_bounded_memory(mode: Mode) {
    let s = Setup::new(mode);
    let pid = s.proxy.pid();
    assert_eq!(s.get("/bytes/1000").status, 200); // warm up shards and pools
    let (rss_before, _) = rss(pid);

    // download: read in pieces, checking every byte against the origin's pattern
    let mut c = s.client();
    c.send(s.head("GET", &format!("/bytes/{BIG}"), &[]).as_bytes());
    let (status, headers) = c.head();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-length") && v == &BIG.to_string())
    );
    let mut got = 0u64;
    let check = |data: &[u8], at: u64| {
        for (k, &b) in data.iter().enumerate() {
            assert_eq!(
                b,
                common::pattern_byte(at + k as u64),
                "byte {} differs",
                at + k as u64
            );
        }
    };
    let early = c.take_buffered();
    check(&early, 0);
    got += early.len() as u64;
    let mut piece = vec![0u8; 1 << 16];
    let mut stream = c.stream.try_clone().unwrap();
    while got < BIG {
        let n = stream
            .read(&mut piece[..(BIG - got).min(1 << 16) as usize])
            .unwrap();
        assert!(n > 0, "closed after {got} bytes");
        check(&piece[..n], got);
        got += n as u64;
    }

    // upload: a generated body; the origin answers with its length and hash
    let mut up = s.client();
    up.send(
        s.head("POST", "/sink", &[&format!("Content-Length: {BIG}")])
            .as_bytes(),
    );
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut sent = 0u64;
    let mut writer = up.stream.try_clone().unwrap();
    while sent < BIG {
        let len = (BIG - sent).min(1 << 16);
        let chunk: Vec<u8> = (sent..sent + len).map(|i| (i * 31 % 253) as u8).collect();
        for &b in &chunk {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        writer.write_all(&chunk).unwrap();
        sent += len;
    }
    let r = up.response(false);
    assert_eq!(
        r.text(),
        format!("{{\"bytes\":{BIG},\"fnv1a\":\"{hash:016x}\"}}\n")
    );

    let (_, peak) = rss(pid);
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "proxy RSS: {} KiB before, peak {} KiB during 2 x {BIG} bytes",
        rss_before >> 10,
        peak >> 10
    );
    assert!(
        growth < RSS_GROWTH_MAX,
        "proxy RSS grew by {} MiB",
        growth >> 20
    );
    std::thread::sleep(Duration::from_millis(10));
}
