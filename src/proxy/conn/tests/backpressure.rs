//! A client that does not read what it was sent gets no more: its next pipelined request
//! waits until it has taken what is queued.

use super::*;

#[test]
fn pipelined_hits_wait_for_the_client_to_read() {
    let store = Arc::new(Store::new(8 << 20, 8 << 20));
    let body = "x".repeat(100_000); // more than the 64 KiB mark
    let get = "GET http://o.test/big HTTP/1.1\r\nHost: o.test\r\n\r\n";
    let mut h = Harness::with_cache("", Some(store.clone()));
    h.client(get);
    h.actions();
    h.ready(false);
    h.origin(&format!(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    h.actions();
    assert!(h.sent_client().ends_with(&body[body.len() - 10..]));
    // Stored. Three hits pipelined by a client that reads nothing yet:
    h.client(&get.repeat(3));
    h.actions();
    let queued = h.conn.client_out_len();
    assert!(
        queued > 64 * 1024 && queued < 2 * body.len(),
        "one hit queued, {queued} bytes"
    );
    // It reads: the next one is answered, and so on.
    let mut answers = h.sent_client().matches("HTTP/1.1 200 OK").count();
    for _ in 0..4 {
        let now = h.now();
        h.conn.on_client_written(now);
        answers += h.sent_client().matches("HTTP/1.1 200 OK").count();
    }
    assert_eq!(answers, 3, "every pipelined request answered in the end");
}
