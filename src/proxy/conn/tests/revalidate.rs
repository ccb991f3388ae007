//! stale-while-revalidate as RFC 5861 says: the stale copy answers at once, the first
//! request included, and the refresh runs behind it, never reaching the client.

use super::*;

const GET: &str = "GET http://o.test/swr HTTP/1.1\r\nHost: o.test\r\n\r\n";

/// A harness with `/swr` stored (fresh for 1 s, then usable stale for 600 s), and the
/// clock moved past its freshness.
fn stale_stored() -> Harness {
    let store = Arc::new(Store::new(1 << 20, 1 << 20));
    let mut h = Harness::with_cache("", Some(store));
    h.client(GET);
    h.actions();
    h.ready(false);
    h.origin(
        "HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 00:00:00 GMT\r\nETag: \"v1\"\r\n\
         Expires: Sat, 28 Nov 2026 00:00:01 GMT\r\n\
         Cache-Control: max-age=1, stale-while-revalidate=600\r\nContent-Length: 3\r\n\r\nold",
    );
    h.actions();
    h.sent_client();
    h.advance(Duration::from_secs(3));
    h
}

/// A request served the stale copy, its refresh sent to the origin.
fn refresh_under_way(h: &mut Harness) {
    h.client(GET);
    let stale = h.sent_client();
    assert!(
        stale.ends_with("old") && stale.contains("stale-while-revalidate"),
        "{stale}"
    );
    assert!(matches!(h.actions().as_slice(), [Action::Acquire { .. }]));
    h.ready(false);
    assert!(h.sent_upstream().contains("If-None-Match: \"v1\""));
}

#[test]
fn the_first_request_after_expiry_gets_the_stale_copy_before_the_origin_answers() {
    let mut h = stale_stored();
    h.client(GET);
    let first = h.sent_client();
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.contains("detail=stale-while-revalidate"), "{first}");
    assert!(
        first.ends_with("\r\n\r\nold"),
        "one whole response: {first}"
    );
    assert!(matches!(h.actions().as_slice(), [Action::Acquire { .. }]));
    h.ready(false);
    let up = h.sent_upstream();
    assert!(up.contains("If-None-Match: \"v1\""), "{up}");
    h.origin(
        "HTTP/1.1 304 Not Modified\r\nDate: Sat, 28 Nov 2026 00:00:03 GMT\r\nETag: \"v1\"\r\n\
         Expires: Sat, 28 Nov 2026 01:00:00 GMT\r\nCache-Control: max-age=60\r\n\r\n",
    );
    assert_eq!(h.actions(), vec![Action::Release]);
    assert_eq!(
        h.sent_client(),
        "",
        "the refresh says nothing to the client"
    );
    h.client(GET);
    let second = h.sent_client();
    assert_eq!(
        second.matches("HTTP/1.1 ").count(),
        1,
        "one response: {second}"
    );
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");
    assert!(
        second.contains("Cache-Status: distilld; hit; ttl=60\r\n"),
        "refreshed, answered as a fresh hit, and only once: {second}"
    );
    // RFC 9111 §3.2: the 304's Date and Expires replace the stored ones.
    assert!(
        second.contains("Date: Sat, 28 Nov 2026 00:00:03 GMT"),
        "{second}"
    );
    assert!(
        second.contains("Expires: Sat, 28 Nov 2026 01:00:00 GMT"),
        "{second}"
    );
    assert_eq!(second.matches("Expires:").count(), 1, "{second}");
    assert!(second.ends_with("old"));
    assert!(!h.conn.is_finished());
}

#[test]
fn a_failed_refresh_neither_answers_nor_resets_the_client() {
    for failure in ["closed", "mid-body", "timeout"] {
        let mut h = stale_stored();
        refresh_under_way(&mut h);
        let now = h.now();
        match failure {
            "closed" => h.conn.on_upstream_closed(None, now),
            "mid-body" => {
                h.origin(
                    "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 9\r\n\r\nnew",
                );
                let now = h.now();
                h.conn.on_upstream_closed(None, now);
            }
            _ => h.advance(Duration::from_secs(120)),
        }
        assert_eq!(h.actions(), vec![Action::CloseUpstream], "{failure}");
        assert_eq!(
            h.sent_client(),
            "",
            "{failure}: nothing more for the client"
        );
        assert!(!h.conn.wants_reset() && !h.conn.is_finished(), "{failure}");
        // The stale copy is still there (the cut body was not stored), and the
        // connection serves the next request.
        h.client(GET);
        let next = h.sent_client();
        assert!(
            next.ends_with("old") && next.contains("stale-while-revalidate"),
            "{failure}: {next}"
        );
    }
}

#[test]
fn a_refresh_that_brings_a_new_body_stores_it_for_the_next_request() {
    let mut h = stale_stored();
    refresh_under_way(&mut h);
    h.origin("HTTP/1.1 200 OK\r\nETag: \"v2\"\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\nnew");
    assert_eq!(h.actions(), vec![Action::Release]);
    assert_eq!(h.sent_client(), "", "the client had its answer");
    h.client(GET);
    let next = h.sent_client();
    assert!(next.ends_with("new") && next.contains("; hit;"), "{next}");
}

#[test]
fn a_request_that_comes_before_the_refresh_is_answered_is_not_held_up() {
    let mut h = stale_stored();
    refresh_under_way(&mut h);
    // The next request arrives while the origin has not answered: the refresh is
    // dropped, the request answered at once (stale still), and it refreshes in turn.
    h.client(GET);
    let next = h.sent_client();
    assert!(
        next.ends_with("old") && next.contains("stale-while-revalidate"),
        "{next}"
    );
    assert!(
        matches!(
            h.actions().as_slice(),
            [Action::CloseUpstream, Action::Acquire { .. }]
        ),
        "the first refresh dropped, a second one started"
    );
    // Once the response head is in, a refresh that will be stored runs to its end.
    h.ready(false);
    h.sent_upstream();
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 6\r\n\r\nnew");
    h.client(GET);
    assert_eq!(h.sent_client(), "", "waits for the body being stored");
    h.origin("est");
    assert_eq!(h.actions(), vec![Action::Release]);
    let after = h.sent_client();
    assert!(
        after.ends_with("newest") && after.contains("; hit;"),
        "{after}"
    );
}

#[test]
fn a_refresh_whose_answer_will_not_be_stored_ends_at_its_head() {
    let mut h = stale_stored();
    refresh_under_way(&mut h);
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 1000000\r\n\r\nxx");
    assert_eq!(
        h.actions(),
        vec![Action::CloseUpstream],
        "not read to its end"
    );
    assert_eq!(h.sent_client(), "");
    assert!(!h.conn.wants_reset() && !h.conn.is_finished());
}

#[test]
fn a_refresh_is_bounded_as_a_whole_not_only_by_silence() {
    let mut h = stale_stored();
    refresh_under_way(&mut h);
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100000\r\n\r\n");
    // A trickle that is never silent for long.
    for _ in 0..70 {
        h.origin("x");
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(h.actions(), vec![Action::CloseUpstream]);
    assert_eq!(h.sent_client(), "");
    assert!(!h.conn.wants_reset());
}

#[test]
fn pipelined_stale_hits_start_one_refresh_and_no_stray_acquisition() {
    let mut h = stale_stored();
    h.client(&format!("{GET}{GET}"));
    let both = h.sent_client();
    assert_eq!(
        both.matches("detail=stale-while-revalidate").count(),
        2,
        "{both}"
    );
    assert_eq!(
        h.actions()
            .iter()
            .filter(|a| matches!(a, Action::Acquire { .. } | Action::CloseUpstream))
            .count(),
        1,
        "the last request refreshes; none is started and dropped"
    );
}

#[test]
fn a_fetch_that_will_not_be_stored_lets_its_waiters_go_at_its_head() {
    use crate::cache::store::FlightRole;
    let store = Arc::new(Store::new(1 << 20, 1 << 20));
    let mut h = Harness::with_cache("", Some(store.clone()));
    h.client("GET http://o.test/big HTTP/1.1\r\nHost: o.test\r\n\r\n");
    h.actions();
    h.ready(false);
    let key: Arc<str> = "fwd^o.test:80 o.test /big".into();
    assert!(
        matches!(store.fetch(&key), FlightRole::Follower(_)),
        "led by h"
    );
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 100000\r\n\r\nxx");
    assert!(
        matches!(store.fetch(&key), FlightRole::Leader(_)),
        "the flight ended with the head, not the body"
    );
}

#[test]
fn a_request_waits_on_a_slow_refresh_body_no_longer_than_collapse_wait() {
    let mut h = stale_stored();
    refresh_under_way(&mut h);
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 6\r\n\r\nnew");
    h.client(GET);
    assert_eq!(h.sent_client(), "", "waits for the body being stored");
    h.advance(Duration::from_secs(11)); // past cache.collapse_wait_ms (10 s)
    let next = h.sent_client();
    assert!(
        next.ends_with("old") && next.contains("detail=stale-while-revalidate"),
        "{next}"
    );
    assert!(!h.conn.wants_reset());
}
