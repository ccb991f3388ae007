//! Three nodes on 127.0.0.1, .2 and .3 in front of one origin: each URL has one owner,
//! the others forward to it once, and a dead owner's keys are served by the next
//! candidate with no client-visible error.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Process, Response, origin_stats, start_origin, temp_path};

const IDS: [&str; 3] = ["a", "b", "c"];
/// Ids by node index (a fourth node joins in one test).
const ALL_IDS: [&str; 4] = ["a", "b", "c", "d"];
/// A node back from down gets its keys back over this long (and warms as long).
const RAMPUP_MS: u64 = 3000;

/// The tests here run one at a time: each starts three nodes, and membership's timing
/// (a frozen node declared down within 2 s) should not wait on other tests' CPU.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cluster node: killed when dropped.
struct Node {
    child: Child,
    addr: SocketAddr,
    id: &'static str,
    config: std::path::PathBuf,
    origin: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for TCP and UDP on all three node addresses, below the kernel's
/// ephemeral range (32768 up by default): a port the kernel hands out picks only
/// 127.0.0.1 free, and a connection from 127.0.0.2 could then hold it when node b
/// binds there (it did: "Address already in use").
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 6000) as u16;
    for _ in 0..6000 {
        let port = 24000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 6000;
        let free = (0..3).all(|i| {
            let addr = node_addr(i, port);
            let tcp = std::net::TcpListener::bind(addr);
            let udp = std::net::UdpSocket::bind(addr);
            tcp.is_ok() && udp.is_ok()
        });
        if free {
            return port;
        }
    }
    panic!("no port free on 127.0.0.1-3 in 24000..30000");
}

fn node_addr(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1 + i as u8], port))
}

/// The config of node `me` in a cluster of `ids` on `port`.
fn cluster_config(me: &str, ids: &[&str], port: u16) -> String {
    let weighted: Vec<(&str, u32)> = ids.iter().map(|id| (*id, 1)).collect();
    weighted_config(me, &weighted, port, true)
}

/// With `gossip`, the nodes run SWIM membership on UDP (same port number as http).
fn weighted_config(me: &str, nodes: &[(&str, u32)], port: u16, gossip: bool) -> String {
    // Every node of a test shares the secret that authenticates gossip.
    let secret = temp_path("cluster.key");
    std::fs::write(&secret, "a shared secret of the test cluster\n").expect("secret");
    let mut s = format!(
        "[log]\naccess_log = false\n[cluster]\nnode = \"{me}\"\npeer_down_ms = 500\nrampup_ms = {RAMPUP_MS}\nsecret_file = \"{}\"\n",
        secret.display()
    );
    for (i, (id, weight)) in nodes.iter().enumerate() {
        let idx = ALL_IDS.iter().position(|x| x == id).unwrap_or(i);
        let addr = node_addr(idx, port);
        let gossip = if gossip {
            format!("gossip = \"{addr}\"\n")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "[[cluster.nodes]]\nid = \"{id}\"\nhttp = \"{addr}\"\n{gossip}weight = {weight}\n"
        ));
    }
    common::allow_loopback(&s)
}

fn start_node(i: usize, config: &str, port: u16, origin: SocketAddr) -> Node {
    let path = temp_path("cluster.toml");
    std::fs::write(&path, config).expect("config");
    spawn_node(i, path, port, origin)
}

fn spawn_node(i: usize, config: std::path::PathBuf, port: u16, origin: SocketAddr) -> Node {
    let addr = node_addr(i, port);
    let log = std::fs::File::create(temp_path("cluster.log")).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_distilld"))
        .args(["run", "--config"])
        .arg(&config)
        .args([
            "--listen",
            &addr.to_string(),
            "--workers",
            "1",
            "--admin",
            "off",
        ])
        .arg("--origin")
        .arg(format!("http://{origin}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start a node");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    assert!(
        line.contains("listening"),
        "node {i} did not start: {line:?}"
    );
    Node {
        child,
        addr,
        id: ALL_IDS[i],
        config,
        origin,
    }
}

fn three_nodes(origin: &Process) -> (Vec<Node>, u16) {
    let port = free_port();
    let nodes = (0..3)
        .map(|i| start_node(i, &cluster_config(IDS[i], &IDS, port), port, origin.addr))
        .collect();
    (nodes, port)
}

fn get(node: &Node, path: &str) -> Response {
    let mut c = Client::connect(node.addr);
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    c.response(false)
}

/// Past any near copy (a node keeps hot objects owned elsewhere a few seconds): the
/// request goes to the owner, which revalidates.
fn get_from_owner(node: &Node, path: &str) -> Response {
    let mut c = Client::connect(node.addr);
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: site.test\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    c.response(false)
}

/// The owner named by a forwarded response's Cache-Status, or this node when none.
fn owner_seen(node: &Node, r: &Response) -> String {
    let statuses: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .map(|(_, v)| v.as_str())
        .collect();
    statuses
        .iter()
        .find_map(|v| v.split("detail=owner-").nth(1))
        .map(|o| o.trim().to_string())
        .unwrap_or_else(|| node.id.to_string())
}

#[test]
fn one_url_through_each_node_is_fetched_once() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let (nodes, _) = three_nodes(&origin);
    let (_, before) = origin_stats(origin.addr);
    let path = "/bytes/30000?cluster=1";
    let answers: Vec<Response> = nodes.iter().map(|n| get(n, path)).collect();
    let (_, after) = origin_stats(origin.addr);
    // The first /stats request counts in the second reading.
    assert_eq!(after - before - 1, 1, "one origin fetch cluster-wide");
    for r in &answers {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, answers[0].body, "byte-identical answers");
    }
    let owners: Vec<String> = nodes
        .iter()
        .zip(&answers)
        .map(|(n, r)| owner_seen(n, r))
        .collect();
    assert!(
        owners.iter().all(|o| *o == owners[0]),
        "one owner: {owners:?}"
    );
    let forwarded = answers
        .iter()
        .filter(|r| r.headers.iter().any(|(_, v)| v.contains("detail=owner-")))
        .count();
    assert_eq!(forwarded, 2, "the two others forwarded");

    // Many URLs: each fetched once, whichever node they came through.
    let (_, before) = origin_stats(origin.addr);
    for u in 0..30 {
        for n in &nodes {
            assert_eq!(get(n, &format!("/bytes/2000?u={u}")).status, 200);
        }
    }
    let (_, after) = origin_stats(origin.addr);
    assert_eq!(after - before - 1, 30);
}

#[test]
fn a_distilled_variant_is_fetched_and_made_once_cluster_wide() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let (nodes, _) = three_nodes(&origin);
    let original = std::fs::read(common::corpus_dir().join("LadyBird.jpg")).expect("fixture");
    let (_, before) = origin_stats(origin.addr);
    let answers: Vec<Response> = nodes
        .iter()
        .map(|n| {
            let mut c = Client::connect(n.addr);
            c.send(b"GET /LadyBird.jpg HTTP/1.1\r\nHost: site.test\r\nSave-Data: on\r\nConnection: close\r\n\r\n");
            c.response(false)
        })
        .collect();
    let (_, after) = origin_stats(origin.addr);
    assert_eq!(after - before - 1, 1, "one origin fetch cluster-wide");
    for r in &answers {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, answers[0].body, "the same variant everywhere");
        assert!(r.body.len() < original.len(), "distilled");
    }
    // Made once, by the owner (its entry says it went to the origin); the other two
    // were the owner's stored variant.
    let made = answers
        .iter()
        .filter(|r| {
            r.headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("cache-status") && v.contains("fwd=miss"))
        })
        .count();
    assert_eq!(made, 1, "one distillation: {:?}", answers[2].headers);
}

#[test]
fn a_killed_owner_s_keys_are_served_by_the_next_candidate() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let (mut nodes, port) = three_nodes(&origin);
    let path = "/bytes/4000?killed=1";
    let r = get(&nodes[0], path);
    let owner = owner_seen(&nodes[0], &r);
    let owner_i = IDS.iter().position(|id| *id == owner).expect("owner id");
    let Node { config, .. } = &nodes[owner_i];
    let config = config.clone();
    let _ = nodes[owner_i].child.kill();
    let _ = nodes[owner_i].child.wait();
    // Every request through the others succeeds at once: a refused connection sends
    // it to the next candidate.
    let started = Instant::now();
    for round in 0..20 {
        for (i, n) in nodes.iter().enumerate() {
            if i != owner_i {
                let r = get(n, &format!("{path}&r={round}"));
                assert_eq!(r.status, 200, "through {} after the owner died", n.id);
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The dead owner's URL is fetched (once) by the key's next candidate.
    let other = (owner_i + 1) % 3;
    assert_eq!(get(&nodes[other], path).status, 200);
    // Long enough for membership to declare it down; then it comes back (a newer
    // identity) and owns its keys again.
    std::thread::sleep(Duration::from_secs(2));
    let (_, before) = origin_stats(origin.addr);
    let restarted = spawn_node(owner_i, config, port, origin.addr);
    nodes[owner_i] = restarted;
    // Its first miss is filled from the previous owner, not the origin.
    let r = get(&nodes[owner_i], path);
    assert_eq!(r.status, 200);
    // RFC 9211: the previous owner's entry (a hit), then this node's.
    let statuses: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        statuses.iter().any(|s| s.contains("detail=warm-from-")),
        "filled from the previous owner: {statuses:?}"
    );
    let (_, after) = origin_stats(origin.addr);
    assert_eq!(after - before - 1, 0, "no origin fetch for the warm miss");
    let back = common::wait_until(Duration::from_secs(6), || {
        let r = get_from_owner(&nodes[other], path);
        r.status == 200 && owner_seen(&nodes[other], &r) == owner
    });
    assert!(back, "the restarted owner serves its keys again");
}

/// A URL through `node` that another node owns, and that owner.
fn owned_elsewhere(node: &Node, prefix: &str) -> (String, String) {
    (0..64)
        .map(|k| format!("{prefix}{k}"))
        .find_map(|p| {
            let o = owner_seen(node, &get(node, &p));
            (o != node.id).then_some((p, o))
        })
        .expect("a key the node does not own")
}

#[test]
fn a_hot_url_owned_elsewhere_is_answered_near() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let (nodes, _) = three_nodes(&origin);
    let a = &nodes[0];
    let (path, owner) = owned_elsewhere(a, "/bytes/3000?near=");
    let (_, before) = origin_stats(origin.addr);
    // Forwarded until popular (near_admit_after = 4 by default, the first request
    // above counted once), then kept near: answered by a itself.
    let answers: Vec<Response> = (0..6).map(|_| get(a, &path)).collect();
    let (_, after) = origin_stats(origin.addr);
    assert_eq!(after - before - 1, 0, "the owner had it: no origin fetch");
    let near = |r: &Response| {
        r.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("cache-status") && v.contains("detail=near"))
    };
    let hops: Vec<String> = answers.iter().map(|r| owner_seen(a, r)).collect();
    assert!(
        answers.iter().take(3).all(|r| !near(r)) && hops[..3].iter().all(|o| *o == owner),
        "the first ones go to the owner: {hops:?}"
    );
    assert!(
        answers[4..].iter().all(near),
        "then answered near: {:?}",
        answers[5].headers
    );
    for r in &answers {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, answers[0].body, "the same bytes");
    }
    // A PURGE goes to the owner and takes the near copy with it.
    let mut c = Client::connect(a.addr);
    c.send(
        format!("PURGE {path} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(c.response(false).status, 200, "purged at the owner");
    let r = get(a, &path);
    assert!(!near(&r), "no near copy after the purge: {:?}", r.headers);
    assert_eq!(owner_seen(a, &r), owner);
}

#[test]
fn a_peer_out_of_connections_is_passed_over() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let port = free_port();
    // No warm-up: its probes to b would take b's one connection too.
    let config = |me| cluster_config(me, &IDS, port).replace("rampup_ms = ", "rampup_ms = 0\n#");
    let limited = format!("[limits]\nconnections_per_shard_max = 1\n{}", config("b"));
    let nodes = [
        start_node(0, &config("a"), port, origin.addr),
        start_node(1, &limited, port, origin.addr),
        start_node(2, &config("c"), port, origin.addr),
    ];
    let (a, c) = (&nodes[0], &nodes[2]);
    // URLs b owns, found through c: c's kept-alive connection to b then holds b's only
    // one, and b answers a's 503 (its own refusal, with Proxy-Status).
    let owned_by_b: Vec<String> = (0..64)
        .map(|k| format!("/bytes/500?full={k}"))
        .filter(|p| owner_seen(c, &get(c, p)) == "b")
        .take(3)
        .collect();
    assert!(!owned_by_b.is_empty(), "b owns some keys");
    let mut direct = Client::connect(nodes[1].addr);
    direct.send(b"GET /bytes/10 HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n");
    assert_eq!(direct.response(false).status, 503, "b is full");
    for p in &owned_by_b {
        let r = get(a, p);
        assert_eq!(
            r.status, 200,
            "served by another candidate: {:?}",
            r.headers
        );
        assert_ne!(owner_seen(a, &r), "b", "not by the full node");
    }
}

#[test]
fn nodes_with_different_lists_never_forward_twice() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let port = free_port();
    // a and b weigh each other differently (and b knows a c): for many keys each
    // believes the other owns it. Rendezvous hashing alone would not loop with lists
    // that differ only in members; with weights that differ it would, but for the hop.
    let a = start_node(
        0,
        &weighted_config("a", &[("a", 1), ("b", 5)], port, false),
        port,
        origin.addr,
    );
    let b = start_node(
        1,
        &weighted_config("b", &[("b", 1), ("c", 1), ("a", 5)], port, false),
        port,
        origin.addr,
    );
    // Without gossip: membership would see the digests differ and stop the forwards;
    // this is about the hop, which holds whatever each node believes.
    let mut forwarded = 0;
    let started = Instant::now();
    for u in 0..40 {
        for n in [&a, &b] {
            let r = get(n, &format!("/bytes/100?diff={u}"));
            assert_eq!(r.status, 200, "through {}", n.id);
            let hops = r
                .headers
                .iter()
                .filter(|(_, v)| v.contains("detail=owner-"))
                .count();
            assert!(hops <= 1, "forwarded twice: {:?}", r.headers);
            forwarded += hops;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20), "none hangs");
    assert!(forwarded > 10, "the nodes did forward ({forwarded} of 80)");
    let _ = (a.origin, b.origin);
}

#[test]
fn a_reload_changes_the_node_list() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let port = free_port();
    let a = start_node(0, &cluster_config("a", &["a"], port), port, origin.addr);
    let _b = start_node(
        1,
        &cluster_config("b", &["a", "b"], port),
        port,
        origin.addr,
    );
    let forwarded = |n: &Node| {
        (0..40)
            .filter(|u| {
                let r = get(n, &format!("/bytes/10?reload={u}"));
                assert_eq!(r.status, 200);
                r.headers.iter().any(|(_, v)| v.contains("detail=owner-b"))
            })
            .count()
    };
    assert_eq!(forwarded(&a), 0, "alone, a serves everything");
    std::fs::write(&a.config, cluster_config("a", &["a", "b"], port)).expect("rewrite");
    // SAFETY: signals a process this test started.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    let n = forwarded(&a);
    assert!(
        (8..=32).contains(&n),
        "about half of 40 keys go to b now: {n}"
    );
}

#[test]
fn a_fourth_node_takes_only_the_keys_it_now_owns() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let (nodes, port) = three_nodes(&origin);
    let keys: Vec<String> = (0..60).map(|k| format!("/bytes/100?join={k}")).collect();
    // Who owns each key, as node a sees it (past any near copy).
    let owners = |a: &Node| -> Vec<String> {
        keys.iter()
            .map(|k| owner_seen(a, &get_from_owner(a, k)))
            .collect()
    };
    let before = owners(&nodes[0]);
    let four = ["a", "b", "c", "d"];
    let d = start_node(3, &cluster_config("d", &four, port), port, origin.addr);
    for n in &nodes {
        std::fs::write(&n.config, cluster_config(n.id, &four, port)).expect("rewrite");
        // SAFETY: signals a process this test started.
        unsafe { libc::kill(n.child.id() as i32, libc::SIGHUP) };
    }
    // Settled: past a ramp-up (a node's membership may see a peer leave and come back
    // while its list changes, and then gives that peer its keys back over rampup_ms),
    // and two readings in a row agree (every node applied its reload and sees d up; on
    // a loaded machine that takes longer than on an idle one).
    std::thread::sleep(Duration::from_millis(RAMPUP_MS + 800));
    let mut after = owners(&nodes[0]);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let again = owners(&nodes[0]);
        if again == after {
            break;
        }
        after = again;
    }
    let moved: Vec<(&String, &String)> =
        before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(
        moved.iter().all(|(_, a)| a.as_str() == "d"),
        "keys moved between the old three: {moved:?}"
    );
    // About a quarter of the keys are d's now (rendezvous: 1/(N+1) of them).
    assert!(
        (5..=25).contains(&moved.len()),
        "{} of 60 keys moved to d",
        moved.len()
    );
    let _ = d.origin;
}

#[test]
fn a_frozen_owner_s_keys_are_served_within_two_seconds() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let (nodes, _) = three_nodes(&origin);
    // Membership forms (a few probe periods).
    std::thread::sleep(Duration::from_millis(1500));
    let path = "/bytes/4000?frozen=1";
    let owner = owner_seen(&nodes[0], &get(&nodes[0], path));
    let owner_i = IDS.iter().position(|id| *id == owner).expect("owner id");
    let pid = nodes[owner_i].child.id() as i32;
    // SAFETY: stops (then resumes) a process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let frozen = Instant::now();
    let other = &nodes[(owner_i + 1) % 3];
    // It still accepts connections (the kernel does) but never answers. Each request
    // waits at most until membership declares it down, then goes to the next candidate.
    let mut answered_by = Vec::new();
    for round in 0..6 {
        let sent = frozen.elapsed();
        let r = get(other, &format!("{path}&round={round}"));
        assert_eq!(
            r.status, 200,
            "round {round}, sent {sent:?} after the freeze"
        );
        answered_by.push(frozen.elapsed());
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        answered_by[0] < Duration::from_secs(2),
        "first answer after {:?}",
        answered_by[0]
    );
    // Thawed, it rejoins (declared down, it renews its identity) and owns its keys.
    let back = common::wait_until(Duration::from_secs(8), || {
        let r = get_from_owner(other, path);
        r.status == 200 && owner_seen(other, &r) == owner
    });
    assert!(back, "the thawed owner serves its keys again");
}

#[test]
fn a_client_cannot_forge_the_hop() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let (nodes, _) = three_nodes(&origin);
    // A URL node a does not own.
    let (path, owner) = owned_elsewhere(&nodes[0], "/bytes/100?forge=");
    let mut c = Client::connect(nodes[0].addr);
    let forged = format!(
        "GET {path} HTTP/1.1\r\nHost: site.test\r\nX-Distilld-Hop: node={owner}; digest=0; mac=00\r\nConnection: close\r\n\r\n"
    );
    c.send(forged.as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert_eq!(
        owner_seen(&nodes[0], &r),
        owner,
        "forwarded all the same: {:?}",
        r.headers
    );
}

#[test]
fn a_binary_upgrade_takes_the_gossip_port_too() {
    let _serial = one_at_a_time();
    let origin = start_origin(&[]);
    let port = free_port();
    let mut a = start_node(
        0,
        &cluster_config("a", &["a", "b"], port),
        port,
        origin.addr,
    );
    let config = a.config.display().to_string();
    // SAFETY: signals a process this test started.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGUSR2) };
    let until = Instant::now() + Duration::from_secs(15);
    let mut exited = None;
    while Instant::now() < until && exited.is_none() {
        exited = a.child.try_wait().ok().flatten();
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new process (found by its config path) is killed at the end.
    let new_pids = Command::new("pgrep")
        .args(["-f", &config])
        .output()
        .expect("pgrep");
    let pids: Vec<i32> = String::from_utf8_lossy(&new_pids.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let status = get(&a, "/bytes/10?after-upgrade=1").status;
    for pid in &pids {
        // SAFETY: the process the upgrade started, from this test's config.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "the old process handed over and drained"
    );
    assert_eq!(pids.len(), 1, "one new process: {pids:?}");
    assert_eq!(status, 200, "the new process serves");
}
