//! Wake-ups are for one wait of one exchange: one that arrives after its exchange gave up
//! (an overdue job, a flight waited on too long) must not reach the next request.

use super::*;
use crate::cache::store::FlightRole;

fn jobs(h: &mut Harness) -> Vec<(Box<dyn FnOnce() + Send>, Ticket)> {
    h.actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::RunJob(DistillJob(work), ticket) => Some((work, ticket)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_late_job_result_does_not_end_the_next_requests_job() {
    let mut h = Harness::new("[distill]\njob_time_ms = 1000\n");
    let body = photo();
    let get = "GET http://o.test/p.jpg HTTP/1.1\r\nHost: o.test\r\nSave-Data: on\r\n\r\n";
    h.client(get);
    h.actions();
    h.ready(false);
    origin_sends_photo(&mut h, &body);
    let mut first = jobs(&mut h);
    assert_eq!(first.len(), 1);
    h.advance(Duration::from_millis(2100)); // overdue: the original goes out
    assert!(h.sent_client().starts_with("HTTP/1.1 200 OK"));
    // The next request's job is queued ...
    h.client(get);
    h.actions();
    h.ready(true);
    origin_sends_photo(&mut h, &body);
    let mut second = jobs(&mut h);
    assert_eq!(second.len(), 1);
    // ... when the first job's wake-up finally arrives: nothing happens.
    let (late_work, late_ticket) = first.remove(0);
    late_work();
    let now = h.now();
    h.conn.on_wait_over(late_ticket, now);
    assert_eq!(
        h.sent_client(),
        "",
        "the late wake-up answered the next request"
    );
    let (work, ticket) = second.remove(0);
    work();
    let now = h.now();
    h.conn.on_wait_over(ticket, now);
    let out = h.sent_client();
    assert!(out.contains("X-Distill: original-bytes="), "{out:.300}");
}

#[test]
fn a_flight_given_up_on_does_not_wake_the_next_request() {
    let store = Arc::new(Store::new(1 << 20, 1 << 20));
    // Other requests lead the fetches of /a and /b.
    let (FlightRole::Leader(lead_a), FlightRole::Leader(lead_b)) = (
        store.fetch(&"fwd^o.test:80 o.test /a".into()),
        store.fetch(&"fwd^o.test:80 o.test /b".into()),
    ) else {
        panic!("fresh store")
    };
    let mut h = Harness::with_cache("[cache]\ncollapse_wait_ms = 1000\n", Some(store.clone()));
    h.client("GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n");
    let waits: Vec<Ticket> = h
        .actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::AwaitFlight(_, t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 1, "/a waits on its leader");
    h.advance(Duration::from_millis(1100)); // waited too long: fetches itself
    assert!(
        h.actions()
            .iter()
            .any(|a| matches!(a, Action::Acquire { .. }))
    );
    h.ready(false);
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 1\r\n\r\nA");
    assert!(h.sent_client().ends_with("A"));
    h.actions();
    h.client("GET http://o.test/b HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert!(
        h.actions()
            .iter()
            .any(|a| matches!(a, Action::AwaitFlight(..))),
        "/b waits on its leader"
    );
    // /a's flight ends now: its wake-up must not send /b upstream.
    drop(lead_a);
    let now = h.now();
    h.conn.on_wait_over(waits[0], now);
    assert!(
        h.actions().is_empty(),
        "a late wake-up sent the next request upstream"
    );
    drop(lead_b);
}
