//! The uring shard in-process, over loopback, where a unit test can reach inside it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::Shard;
use crate::config::Config;
use crate::proxy::stats::Stats;
use crate::shard::{Node, dns};

/// An origin that answers every request on a connection with `200 ok`.
fn origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
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
    let cfg = Arc::new(Config::from_toml_str(&toml, "test").expect("valid config"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("proxy addr");
    let node = Node {
        resolver: dns::Resolver::start(1),
        cache: None,
        jobs: crate::distill::pool::Pool::start(1, 4),
        held: crate::proxy::held::HeldBudget::new(1 << 20),
    };
    let (ready, is_ready) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let built = Shard::new(0, cfg, Arc::new(Stats::default()), listener, node, first);
        match built {
            Ok(shard) => {
                let _ = ready.send(Ok(()));
                shard.run();
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
    // the 24-bit wrap of the token and the 32-bit wrap of a plain counter.
    for first in [(1 << 24) - 20, u32::MAX - 20] {
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
