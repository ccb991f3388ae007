//! A response that varies is only ever served to requests it was selected for, and so
//! is every distilled variant made from it.

use proptest::prelude::*;

use super::*;

const NAMES: [&str; 3] = ["Cookie", "Accept-Language", "X-V"];

/// A request for `/page` that takes gzip, with `values[i]` as the value of `NAMES[i]`.
fn request(values: &[Option<&str>]) -> String {
    let mut r = String::from("GET http://o.test/page HTTP/1.1\r\nHost: o.test\r\n");
    for (name, value) in NAMES.iter().zip(values) {
        if let Some(v) = value {
            r.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    r.push_str("Accept-Encoding: gzip\r\n\r\n");
    r
}

/// A cacheable text response that varies on `vary` and whose body names the request.
fn response(vary: &[&str], who: &str) -> String {
    let body = format!("{who}{}", "x".repeat(600));
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: public, max-age=60\r\n\
         Vary: {}\r\nContent-Length: {}\r\n\r\n{body}",
        vary.join(", "),
        body.len()
    )
}

/// One client's request on a fresh connection; the origin answers with `origin` if asked.
/// Returns whether the cache answered (nothing went upstream) and what the client got.
fn exchange(store: &Arc<Store>, request: &str, origin: &str) -> (bool, String) {
    let mut h = Harness::with_cache("", Some(store.clone()));
    h.client(request);
    let upstream = h
        .actions()
        .iter()
        .any(|a| matches!(a, Action::Acquire { .. }));
    if upstream {
        h.ready(false);
        h.origin(origin);
        h.actions();
    }
    (!upstream, h.sent_client())
}

fn store() -> Arc<Store> {
    Arc::new(Store::new(1 << 20, 1 << 20))
}

#[test]
fn a_compressed_variant_is_not_served_to_another_cookie() {
    let store = store();
    let a = request(&[Some("a"), None, None]);
    let (cached, out) = exchange(&store, &a, &response(&["Cookie"], "a"));
    assert!(
        !cached && out.contains("Content-Encoding: gzip"),
        "{out:.300}"
    );
    let (cached, out) = exchange(&store, &a, "");
    assert!(cached, "A again is a hit: {out:.300}");
    let b = request(&[Some("b"), None, None]);
    let (cached, out) = exchange(&store, &b, &response(&["Cookie"], "b"));
    assert!(!cached, "B got A's page: {out:.300}");
}

fn value() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![Just(None), Just(Some("a")), Just(Some("b")), Just(Some(""))]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn a_stored_response_is_served_only_where_its_vary_fields_match(
        vary in proptest::sample::subsequence(NAMES.to_vec(), 1..=3),
        first in proptest::collection::vec(value(), 3),
        second in proptest::collection::vec(value(), 3),
    ) {
        let store = store();
        exchange(&store, &request(&first), &response(&vary, "first"));
        let (cached, out) = exchange(&store, &request(&second), &response(&vary, "second"));
        let selected_equal = NAMES
            .iter()
            .enumerate()
            .filter(|(_, n)| vary.contains(n))
            .all(|(i, _)| first[i] == second[i]);
        prop_assert_eq!(cached, selected_equal, "{:.400}", out);
    }
}
