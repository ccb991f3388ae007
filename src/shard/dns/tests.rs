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
fn resolver(threads: usize) -> (Resolver, Arc<Mutex<()>>) {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.clone();
    let lookup: LookupFn = Arc::new(move |o: &Authority| {
        if o.host.starts_with("never") {
            let _blocked = held.lock();
        }
        Ok(SocketAddr::from(([127, 0, 0, 1], o.port)))
    });
    (Resolver::with_lookup(threads, lookup), gate)
}

#[test]
fn names_that_never_resolve_leave_threads_for_the_others() {
    let (r, gate) = resolver(crate::config::DEFAULT_DNS_THREADS);
    let closed = gate.lock();
    let (tx, rx) = crossbeam_channel::unbounded();
    let job = |host: &str| Job {
        origin: name(host),
        reply: tx.clone(),
        waker: Arc::new(Wakes),
    };
    // One client at its limit on each of two shards: never-resolving names hold that
    // many threads ...
    let held = 2 * crate::config::DEFAULT_DNS_LOOKUPS_PER_CLIENT_MAX;
    for i in 0..held {
        assert!(r.submit(job(&format!("never{i}.test"))).is_ok());
    }
    // ... and another client's name is still answered meanwhile.
    assert!(r.submit(job("fast.test")).is_ok());
    let answer = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("an answer while the others hang");
    assert_eq!(answer.origin, name("fast.test"));
    drop(closed);
}

#[test]
fn one_lookup_per_name_and_a_limit_per_client() {
    let mut w = Waiters::default();
    let now = Instant::now();
    let a: IpAddr = [127, 0, 0, 2].into();
    let b: IpAddr = [127, 0, 0, 3].into();
    assert_eq!(w.add(&name("x"), (1, 1), a, 2, now), Ok(true));
    assert_eq!(w.add(&name("x"), (2, 2), b, 2, now), Ok(false), "joins");
    assert_eq!(w.add(&name("y"), (3, 3), a, 2, now), Ok(true));
    assert_eq!(
        w.add(&name("z"), (4, 4), a, 2, now),
        Err(Refused::TooManyForClient(2))
    );
    assert_eq!(
        w.add(&name("z"), (5, 5), b, 2, now),
        Ok(true),
        "b has its own"
    );
    assert_eq!(w.take(&name("x")), vec![(1, 1), (2, 2)]);
    assert_eq!(w.add(&name("z"), (4, 4), a, 2, now), Ok(false));
    assert_eq!(
        w.add(&name("w"), (6, 6), a, 2, now),
        Ok(true),
        "x's slot freed"
    );
    let later = now + Duration::from_millis(3000);
    let mut late = w.overdue(Duration::from_millis(3000), later);
    late.sort_by(|p, q| p.host.cmp(&q.host));
    assert_eq!(late, vec![name("w"), name("y"), name("z")]);
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
