//! The uring shard in-process, over loopback, where a unit test can reach inside it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Shard;
use crate::config::Config;
use crate::proxy::stats::Stats;
use crate::shard::control::{NodeControl, ShardControl};
use crate::shard::{Node, dns};

/// An origin that answers every request on a connection with `200 ok`.
fn origin() -> std::net::SocketAddr {
    counted_origin([127, 0, 0, 1]).0
}

/// An origin on `ip` that counts the connections it accepts.
fn counted_origin(ip: [u8; 4]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(std::net::SocketAddr::from((ip, 0))).expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || serve(stream));
        }
    });
    (addr, accepted)
}

fn serve(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// Starts one uring shard in front of `origin` with its generation counter at `first`.
fn shard(origin: std::net::SocketAddr, first: u32) -> std::net::SocketAddr {
    let toml = format!(
        "[cache]\nmemory_bytes = 0\n[upstream]\npool_idle_per_origin_max = 0\n\
         [[route]]\norigin = \"http://{origin}\"\n"
    );
    start(&toml, dns::Resolver::start(1, 4), first)
}

/// Starts one uring shard with `toml` and `resolver`.
fn start(toml: &str, resolver: dns::Resolver, first: u32) -> std::net::SocketAddr {
    let cfg = Arc::new(Config::from_toml_str(toml, "test").expect("valid config"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("proxy addr");
    let node = Node {
        resolver,
        cache: None,
        jobs: crate::distill::pool::JobPool::start(1, 4),
        held: crate::proxy::held::HeldBudget::new(1 << 20),
        own: Arc::from([addr]),
        connections: Default::default(),
        auth_jobs: crate::distill::pool::JobPool::start_named("auth", 1, 4),
    };
    let (ready, is_ready) = crossbeam_channel::bounded(1);
    let control = ShardControl::new(NodeControl::new(cfg.clone(), 1), 0);
    std::thread::spawn(move || {
        let built = Shard::new(
            0,
            cfg,
            Arc::new(Stats::default()),
            listener,
            node,
            control,
            first,
        );
        match built {
            Ok(shard) => {
                let _ = ready.send(Ok(()));
                let _ = shard.run();
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    });
    match is_ready.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => addr,
        other => panic!("the uring shard did not start: {other:?}"),
    }
}

fn get(proxy: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn sockets_keep_working_across_the_generation_wrap() {
    // Each request takes two generations (client and origin socket): 40 requests cross
    // the 24-bit wrap, the only one there is (a start above it is taken modulo 2^24).
    for first in [(1 << 24) - 20] {
        let proxy = shard(origin(), first);
        for i in 0..40 {
            let answer = get(proxy).unwrap_or_else(|e| panic!("request {i} from {first}: {e}"));
            assert!(
                answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
                "request {i} from {first}: {answer:?}"
            );
        }
    }
}

#[test]
fn the_kernel_caps_a_multishot_receive() {
    assert!(super::probe::capped_multishot_works());
}

/// Sends `request` from `from` (a loopback address) and reads the answer.
fn ask(proxy: std::net::SocketAddr, from: [u8; 4], request: &str) -> String {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local = std::net::SocketAddr::from((from, 0));
    socket.bind(&local.into()).expect("bind a loopback source");
    socket.connect(&proxy.into()).expect("connect");
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn a_name_that_never_resolves_gets_502_and_delays_no_other() {
    let origin = origin();
    let gate = Arc::new(std::sync::Mutex::new(()));
    let closed = gate.lock();
    let held = gate.clone();
    let lookups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = lookups.clone();
    let lookup: dns::LookupFn = Arc::new(move |o: &crate::http::target::Authority| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if o.host.starts_with("never") {
            let _blocked = held.lock();
        }
        Ok(std::net::SocketAddr::from(([127, 0, 0, 1], origin.port())))
    });
    let toml =
        "[forward]\ndestinations_allowed = [\"127.0.0.0/8\"]\n[upstream]\ndns_timeout_ms = 300\n";
    let proxy = start(toml, dns::Resolver::with_lookup(4, 2, lookup), 0);
    let get = |host: &str| {
        format!("GET http://{host}/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    // A client asks for names that never resolve, from 127.0.0.2 ...
    let slow: Vec<_> = (0..3)
        .map(|i| {
            let host = format!("never{i}.test");
            let r = get(&host);
            std::thread::spawn(move || (host, ask(proxy, [127, 0, 0, 2], &r)))
        })
        .collect();
    // ... another client's name resolves meanwhile.
    let fast = ask(proxy, [127, 0, 0, 3], &get("fast.test"));
    assert!(fast.starts_with("HTTP/1.1 200"), "{fast}");
    let answers: Vec<(String, String)> = slow.into_iter().filter_map(|t| t.join().ok()).collect();
    assert_eq!(answers.len(), 3);
    for (_, a) in &answers {
        assert!(a.starts_with("HTTP/1.1 502"), "{a}");
    }
    let refused = answers
        .iter()
        .filter(|(_, a)| a.contains("already has 2 names resolving"))
        .count();
    assert_eq!(refused, 1, "the third name is refused at once: {answers:?}");
    let timed_out: Vec<&String> = answers
        .iter()
        .filter(|(_, a)| a.contains("no answer within 300 ms"))
        .map(|(h, _)| h)
        .collect();
    assert_eq!(timed_out.len(), 2, "{answers:?}");
    // Remembered as failing: asked again, answered without a new lookup.
    let before = lookups.load(std::sync::atomic::Ordering::SeqCst);
    let again = ask(proxy, [127, 0, 0, 4], &get(timed_out[0]));
    assert!(again.contains("no answer within 300 ms"), "{again}");
    assert_eq!(lookups.load(std::sync::atomic::Ordering::SeqCst), before);
    drop(closed);
}

/// DNS rebinding: a name first resolves to an allowed address, then to a denied one.
/// The rules look at the address each connection goes to, so the second answer is
/// refused and its listener sees no connection (nor does a pooled one to the first).
#[test]
fn the_address_a_name_resolves_to_is_checked_at_every_connect() {
    let (allowed, allowed_seen) = counted_origin([127, 0, 0, 2]);
    let (denied, denied_seen) = counted_origin([127, 0, 0, 1]);
    let answer = Arc::new(std::sync::Mutex::new(allowed));
    let current = answer.clone();
    let lookup: dns::LookupFn = Arc::new(move |_: &crate::http::target::Authority| {
        Ok(*current.lock().unwrap_or_else(|p| p.into_inner()))
    });
    let toml = "[forward]\ndestinations_allowed = [\"127.0.0.2\"]\n\
                [upstream]\ndns_cache_ttl_ms = 1\n";
    let proxy = start(toml, dns::Resolver::with_lookup(2, 2, lookup), 0);
    let get = "GET http://rebind.test:8080/x HTTP/1.1\r\nHost: rebind.test\r\n\r\n";
    let first = ask(
        proxy,
        [127, 0, 0, 5],
        &get.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
    );
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_eq!(allowed_seen.load(Ordering::SeqCst), 1);
    *answer.lock().unwrap_or_else(|p| p.into_inner()) = denied;
    std::thread::sleep(Duration::from_millis(20));
    let second = ask(
        proxy,
        [127, 0, 0, 5],
        &get.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
    );
    assert!(second.starts_with("HTTP/1.1 403"), "{second}");
    assert!(
        second.contains("127.0.0.0/8 of forward.destinations_denied"),
        "{second}"
    );
    assert_eq!(
        denied_seen.load(Ordering::SeqCst),
        0,
        "no connection to a denied address"
    );
    assert_eq!(
        allowed_seen.load(Ordering::SeqCst),
        1,
        "nor a pooled one elsewhere"
    );
}
