//! The resolver with a lookup function of the test's own: no lookup leaves the machine.

use std::sync::Mutex;

use super::*;

fn name(host: &str) -> Authority {
    Authority {
        host: host.into(),
        port: 80,
    }
}

struct Wakes;

impl Wake for Wakes {
    fn wake(&self) {}
}

/// Names starting with "never" block until the test ends (as a lookup the system
/// resolver keeps retrying); others answer 127.0.0.1 at once.
fn resolver(threads: usize, per_client: usize) -> (Resolver, Arc<Mutex<()>>) {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.clone();
    let lookup: LookupFn = Arc::new(move |o: &Authority| {
        if o.host.starts_with("never") {
            let _blocked = held.lock();
        }
        Ok(SocketAddr::from(([127, 0, 0, 1], o.port)))
    });
    (Resolver::with_lookup(threads, per_client, lookup), gate)
}

fn job(host: &str, client: [u8; 4], reply: &crossbeam_channel::Sender<Answer>) -> Lookup {
    Lookup {
        origin: name(host),
        client: client.into(),
        reply: reply.clone(),
        waker: Arc::new(Wakes),
    }
}

#[test]
fn names_that_never_resolve_leave_threads_for_the_others() {
    let per_client = crate::config::DEFAULT_DNS_LOOKUPS_PER_CLIENT_MAX;
    let (r, gate) = resolver(crate::config::DEFAULT_DNS_THREADS, per_client);
    let closed = gate.lock();
    let (tx, rx) = crossbeam_channel::unbounded();
    // A client asks for never-resolving names until it is refused ...
    let mut taken = 0;
    while r
        .submit(job(&format!("never{taken}.test"), [127, 0, 0, 2], &tx))
        .is_ok()
    {
        taken += 1;
        assert!(taken <= per_client, "no limit for one client");
    }
    assert_eq!(taken, per_client);
    // ... and another client's name is still answered meanwhile.
    assert!(r.submit(job("fast.test", [127, 0, 0, 3], &tx)).is_ok());
    let answer = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("an answer while the others hang");
    assert_eq!(answer.origin, name("fast.test"));
    drop(closed);
}

#[test]
fn a_clients_share_is_counted_until_the_thread_returns() {
    let (r, gate) = resolver(8, 2);
    let closed = gate.lock();
    let (tx, rx) = crossbeam_channel::unbounded();
    assert!(r.submit(job("never1.test", [127, 0, 0, 2], &tx)).is_ok());
    assert!(r.submit(job("never2.test", [127, 0, 0, 2], &tx)).is_ok());
    let refused = r.submit(job("never3.test", [127, 0, 0, 2], &tx));
    assert_eq!(
        refused.err().as_deref(),
        Some("this client already has 2 names resolving")
    );
    assert!(
        r.submit(job("never4.test", [127, 0, 0, 3], &tx)).is_ok(),
        "its own share"
    );
    // The threads return: the share is free again.
    drop(closed);
    for _ in 0..3 {
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
    }
    assert!(r.submit(job("fast.test", [127, 0, 0, 2], &tx)).is_ok());
}

#[test]
fn an_ipv6_client_is_its_slash_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1"
        .parse()
        .unwrap_or(IpAddr::from([0u8; 16]));
    let b: IpAddr = "2001:db8:1:2:bbbb::9"
        .parse()
        .unwrap_or(IpAddr::from([0u8; 16]));
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
    assert_eq!(client_key(a), client_key(b));
    assert_ne!(client_key(a), client_key(c));
    let mapped = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0u8; 4]));
    assert_ne!(
        client_key(mapped("::ffff:192.0.2.1")),
        client_key(mapped("::ffff:192.0.2.2")),
        "IPv4 clients of a dual-stack listener are told apart"
    );
}

#[test]
fn one_lookup_per_name_and_overdue_ones_found() {
    let mut w = Waiters::default();
    let now = Instant::now();
    assert!(w.add(&name("x"), (1, 1), now));
    assert!(!w.add(&name("x"), (2, 2), now), "joins");
    assert!(w.add(&name("y"), (3, 3), now + Duration::from_millis(1000)));
    let due = w.overdue(
        Duration::from_millis(3000),
        now + Duration::from_millis(3500),
    );
    assert_eq!(due, vec![name("x")]);
    assert_eq!(w.take(&name("x")), vec![(1, 1), (2, 2)]);
    assert!(w.take(&name("x")).is_empty());
}

#[test]
fn failures_are_remembered_for_their_own_time() {
    let mut c = DnsCache::new(Duration::from_secs(60), Duration::from_secs(5));
    let now = Instant::now();
    c.put(name("bad"), Err("no such name".into()), now);
    c.put(name("ok"), Ok(SocketAddr::from(([127, 0, 0, 1], 80))), now);
    let bad = c.get(&name("bad"), now + Duration::from_secs(4));
    assert_eq!(bad, Some(Err("no such name".into())));
    assert_eq!(c.get(&name("bad"), now + Duration::from_secs(6)), None);
    let ok = c.get(&name("ok"), now + Duration::from_secs(59));
    assert!(ok.is_some_and(|r| r.is_ok()));
}
