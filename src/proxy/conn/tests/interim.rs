//! Interim (1xx) responses: passed on to HTTP/1.1 clients as they come, bounded, and
//! never a reason to send a request twice.

use super::*;

const GET11: &str = "GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n";

#[test]
fn a_103_goes_to_an_http11_client_before_the_final_response() {
    let mut h = Harness::new("");
    h.client(GET11);
    h.actions();
    h.ready(false);
    h.sent_upstream();
    h.origin("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n");
    let hints = h.sent_client();
    assert!(hints.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{hints}");
    assert!(hints.contains("Link: </a.css>; rel=preload\r\n"), "{hints}");
    assert!(
        !hints.contains("X-Hop"),
        "hop-by-hop fields are not passed on: {hints}"
    );
    assert!(hints.ends_with("Via: 1.1 distilld\r\n\r\n"), "{hints}");
    h.origin("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let fin = h.sent_client();
    assert!(
        fin.starts_with("HTTP/1.1 200 OK\r\n"),
        "no 100 of the origin's: {fin}"
    );
    assert!(
        !fin.contains("Link"),
        "not merged into the final response: {fin}"
    );
}

#[test]
fn an_http10_client_gets_no_interim_response() {
    let mut h = Harness::new("");
    h.client("GET http://o.test/ HTTP/1.0\r\nHost: o.test\r\n\r\n");
    h.actions();
    h.ready(false);
    h.origin("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let all = h.sent_client();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert_eq!(all.matches("HTTP/1.1 ").count(), 1);
}

#[test]
fn endless_interim_responses_end_in_a_502() {
    let mut h = Harness::new("[limits]\nheader_bytes_max = 4096\n");
    h.client(GET11);
    h.actions();
    h.ready(false);
    let hint = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n";
    for _ in 0..200 {
        h.origin(hint);
        if h.conn.is_finished() || h.sent_client().contains("502") {
            return;
        }
    }
    panic!("200 interim heads of {} bytes were taken", hint.len());
}

#[test]
fn a_request_answered_with_an_interim_response_is_not_sent_again() {
    let mut h = Harness::new("");
    h.client("DELETE http://o.test/x HTTP/1.1\r\nHost: o.test\r\n\r\n");
    h.actions();
    h.ready(true); // a pooled connection
    h.sent_upstream();
    h.origin("HTTP/1.1 102 Processing\r\n\r\n");
    let now = h.now();
    h.conn.on_upstream_closed(None, now);
    let actions = h.actions();
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Acquire { .. })),
        "the origin began on it: {actions:?}"
    );
    assert!(h.sent_client().contains("HTTP/1.1 502 "));
}
