use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::*;
use crate::cache::flight::Notify;
use crate::cache::freshness::Heuristic;
use crate::cache::object::{Build, Fields, read_times};

const B: Build<'static> = Build {
    via_name: "distilld",
    heuristic: Heuristic {
        percent: 10,
        max_secs: 86400,
    },
    targeted: &[],
};

fn object(list: &[(&str, &str)], body: &'static [u8]) -> Arc<Object> {
    let f = Fields::from_response(
        200,
        b"OK",
        list.iter().map(|(n, v)| (*n, v.as_bytes())),
        |_| false,
    );
    let t = read_times(&f, 0, 0);
    Arc::new(Object::new(f, Bytes::from_static(body), t, B))
}

fn none() -> std::iter::Empty<(&'static str, &'static [u8])> {
    std::iter::empty()
}

#[test]
fn insert_lookup_remove() {
    let s = Store::new(1 << 20, 1 << 20);
    let k: Arc<str> = "o|h/a".into();
    assert!(s.lookup(&k, none()).is_none());
    assert!(s.insert(
        &k,
        object(&[("Cache-Control", "max-age=9")], b"body"),
        none()
    ));
    let found = s.lookup(&k, none()).map(|f| f.object.body.clone());
    assert_eq!(found.as_deref(), Some(&b"body"[..]));
    assert!(s.remove(&k));
    assert!(s.lookup(&k, none()).is_none());
    assert_eq!(s.usage(), (0, 0));
}

#[test]
fn variants_are_selected_by_request_fields_and_purged_together() {
    let s = Store::new(1 << 20, 1 << 20);
    let k: Arc<str> = "o|h/v".into();
    let gz = [("Accept-Encoding", &b"gzip"[..])];
    let br = [("Accept-Encoding", &b"br"[..])];
    let vary = [("Vary", "Accept-Encoding")];
    s.insert(&k, object(&vary, b"gzip-body"), gz.iter().copied());
    s.insert(&k, object(&vary, b"br-body"), br.iter().copied());
    let body = |req: &[(&'static str, &'static [u8])]| {
        s.lookup(&k, req.iter().copied())
            .map(|f| f.object.body.clone())
    };
    assert_eq!(body(&gz).as_deref(), Some(&b"gzip-body"[..]));
    assert_eq!(body(&br).as_deref(), Some(&b"br-body"[..]));
    assert!(body(&[]).is_none(), "no Accept-Encoding is another variant");
    assert_eq!(s.usage().0, 2);
    assert!(s.remove(&k));
    assert!(body(&gz).is_none() && body(&br).is_none());
    assert_eq!(s.usage(), (0, 0));
}

#[test]
fn budget_is_never_exceeded() {
    let budget = 64 * 1024;
    let s = Store::new(budget, budget);
    static BODY: [u8; 3000] = [7; 3000];
    for i in 0..200 {
        let k: Arc<str> = format!("o|h/{i}").into();
        s.insert(&k, object(&[], &BODY), none());
        let (_, bytes) = s.usage();
        assert!(bytes <= budget, "{bytes} > {budget}");
    }
    assert!(s.usage().0 > 10);
}

#[test]
fn too_large_is_not_stored() {
    let s = Store::new(1 << 20, 10);
    let k: Arc<str> = "o|h/big".into();
    assert!(!s.insert(&k, object(&[], b"more than ten bytes"), none()));
    assert!(s.lookup(&k, none()).is_none());
}

#[test]
fn readers_run_beside_a_writer() {
    let s = Arc::new(Store::new(256 * 1024, 1 << 20));
    let hot: Arc<str> = "o|h/hot".into();
    s.insert(&hot, object(&[], b"hot"), none());
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..5000 {
                let k: Arc<str> = format!("o|h/w{i}").into();
                s.insert(&k, object(&[], b"cold"), none());
            }
        })
    };
    let mut hits = 0;
    for _ in 0..20_000 {
        if s.lookup(&hot, none()).is_some() {
            hits += 1;
        }
    }
    let _ = writer.join();
    // The hot object is read constantly, so S3-FIFO keeps it through the scan.
    assert!(s.lookup(&hot, none()).is_some());
    assert!(hits > 19_000, "{hits}");
}

struct Count(Arc<AtomicUsize>);

impl Notify for Count {
    fn notify(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn one_leader_per_key_and_followers_are_woken_when_it_ends() {
    let s = Store::new(1 << 20, 1 << 20);
    let k: Arc<str> = "o|h/c".into();
    let woken = Arc::new(AtomicUsize::new(0));
    let FlightRole::Leader(guard) = s.fetch(&k) else {
        panic!("the first request leads");
    };
    for _ in 0..10 {
        match s.fetch(&k) {
            FlightRole::Follower(f) => f.wait(Box::new(Count(woken.clone()))),
            FlightRole::Leader(_) => panic!("a second leader"),
        }
    }
    assert_eq!(woken.load(Ordering::SeqCst), 0);
    drop(guard);
    assert_eq!(woken.load(Ordering::SeqCst), 10);
    assert!(matches!(s.fetch(&k), FlightRole::Leader(_)));
}
