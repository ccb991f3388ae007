//! CONNECT tunnels through the forward proxy, on both network drivers: bytes relayed
//! both ways unchanged, either side's close ending the tunnel after what it sent is
//! delivered, the idle timeout, and refusals (a port outside `connect_ports`, a denied
//! address) with no connection attempted. Loopback only: the destinations are this
//! test's own listeners.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Io, Mode, Process, start_proxy, with_io};

/// A destination that echoes every byte back, closes when its client does, and counts
/// the connections it took.
fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().expect("clone");
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
                let _ = writer.shutdown(Shutdown::Both);
            });
        }
    });
    (addr, seen)
}

/// A destination that says `bye` and closes.
fn talker() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind talker");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"bye");
        }
    });
    addr
}

fn proxy(config: &str) -> Process {
    // The origin argument is unused in forward mode.
    start_proxy(
        Mode::Forward,
        "127.0.0.1:9".parse().expect("addr"),
        config,
        1,
    )
}

/// Sends CONNECT (and `early` bytes in the same write), returns the stream positioned
/// after the response head, and the head.
fn connect(proxy: SocketAddr, to: &str, early: &[u8]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!("CONNECT {to} HTTP/1.1\r\nHost: {to}\r\n\r\n").into_bytes();
    req.extend_from_slice(early);
    s.write_all(&req).expect("send CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn on_both(f: impl Fn() + Send + Sync + Copy + 'static) {
    for io in [Io::Uring, Io::Epoll] {
        std::thread::spawn(move || with_io(io, f))
            .join()
            .unwrap_or_else(|_| panic!("failed on {io:?}"));
    }
}

#[test]
fn a_tunnel_relays_bytes_both_ways_unchanged() {
    on_both(|| {
        let (dest, _) = echo();
        let p = proxy(&format!("[forward]\nconnect_ports = [{}]\n", dest.port()));
        let (mut s, head) = connect(p.addr, &dest.to_string(), b"early bytes|");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{head}"
        );
        // 2 MiB each way, written while read: the buffers' high-water marks must hold
        // the flow without losing or reordering a byte.
        let payload: Vec<u8> = (0..2u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut writer = s.try_clone().expect("clone");
        let sent = payload.clone();
        let send = std::thread::spawn(move || {
            writer.write_all(&sent).expect("send through the tunnel");
            writer.shutdown(Shutdown::Write).expect("half-close");
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("read the echo");
        send.join().expect("sender");
        let mut expected = b"early bytes|".to_vec();
        expected.extend_from_slice(&payload);
        assert_eq!(back.len(), expected.len());
        assert!(back == expected, "the bytes came back changed");
        // The access log has the bytes each way.
        let logged = common::wait_until(Duration::from_secs(3), || {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let n = expected.len();
            log.contains(&format!("bytes={n}")) && log.contains(&format!("bytes_up={n}"))
        });
        assert!(
            logged,
            "{}",
            std::fs::read_to_string(&p.log).unwrap_or_default()
        );
    });
}

#[test]
fn the_destination_closing_ends_the_tunnel_after_its_bytes() {
    on_both(|| {
        let dest = talker();
        let p = proxy(&format!("[forward]\nconnect_ports = [{}]\n", dest.port()));
        let (mut s, head) = connect(p.addr, &dest.to_string(), b"");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("read to the end");
        assert_eq!(rest, b"bye");
    });
}

#[test]
fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    on_both(|| {
        let (dest, _) = echo();
        let p = proxy(&format!(
            "[forward]\nconnect_ports = [{}]\nconnect_idle_ms = 300\n",
            dest.port()
        ));
        let (mut s, head) = connect(p.addr, &dest.to_string(), b"");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("closed by the proxy");
        assert!(rest.is_empty());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    });
}

#[test]
fn connect_outside_connect_ports_or_to_a_denied_address_is_refused_unattempted() {
    on_both(|| {
        let (trap, seen) = echo();
        // The trap's port is not a CONNECT port; loopback is allowed (the test harness).
        let p = proxy("");
        for to in [trap.to_string(), "localhost:22".to_string()] {
            let (mut s, head) = connect(p.addr, &to, b"\x16\x03\x01 a client hello");
            assert!(head.starts_with("HTTP/1.1 403 "), "{to}: {head}");
            let mut body = Vec::new();
            let _ = s.read_to_end(&mut body);
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("forward.connect_ports"), "{to}: {body}");
        }
        // A CONNECT port, but the shipped rules deny loopback.
        let p = proxy(&format!(
            "[forward]\ndestinations_allowed = []\nconnect_ports = [{}]\n",
            trap.port()
        ));
        for to in [trap.to_string(), format!("localhost:{}", trap.port())] {
            let (mut s, head) = connect(p.addr, &to, b"");
            assert!(head.starts_with("HTTP/1.1 403 "), "{to}: {head}");
            let mut body = Vec::new();
            let _ = s.read_to_end(&mut body);
            assert!(String::from_utf8_lossy(&body).contains("forward.destinations_denied"));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            seen.load(Ordering::SeqCst),
            0,
            "a refused CONNECT reached its destination"
        );
    });
}
