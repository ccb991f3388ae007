//! Numbers from the network at their extremes, through the caching path (a debug build
//! panics on overflow, so these runs check every arithmetic on them).

use proptest::prelude::*;

use super::*;

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("1".to_string()),
        Just("2147483648".to_string()),
        Just("4294967296".to_string()),
        Just("9223372036854775807".to_string()),
        Just("9223372036854775808".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("999999999999999999999999999999".to_string()),
        Just("+5".to_string()),
        Just("-1".to_string()),
        Just("".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
    ]
}

fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Thu, 01 Jan 1970 00:00:00 GMT".to_string()),
        Just("Sat, 28 Nov 2026 00:00:00 GMT".to_string()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_string()),
        Just("Sun, 06 Nov 1994 08:49:37 GMT".to_string()),
        Just("not a date".to_string()),
        Just("0".to_string()),
    ]
}

/// One response's time fields, any of them absent.
#[derive(Debug, Clone)]
struct Fields {
    age: Option<String>,
    max_age: Option<String>,
    s_maxage: Option<String>,
    stale: Option<String>,
    date: Option<String>,
    expires: Option<String>,
    last_modified: Option<String>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        proptest::option::of(number()),
        proptest::option::of(number()),
        proptest::option::of(number()),
        proptest::option::of(number()),
        proptest::option::of(date()),
        proptest::option::of(date()),
        proptest::option::of(date()),
    )
        .prop_map(
            |(age, max_age, s_maxage, stale, date, expires, last_modified)| Fields {
                age,
                max_age,
                s_maxage,
                stale,
                date,
                expires,
                last_modified,
            },
        )
}

fn response(f: &Fields, content_length: &str, body: &str) -> String {
    let mut cc = vec!["public".to_string()];
    if let Some(v) = &f.max_age {
        cc.push(format!("max-age={v}"));
    }
    if let Some(v) = &f.s_maxage {
        cc.push(format!("s-maxage={v}"));
    }
    if let Some(v) = &f.stale {
        cc.push(format!("stale-while-revalidate={v}, stale-if-error={v}"));
    }
    let mut r = format!("HTTP/1.1 200 OK\r\nCache-Control: {}\r\n", cc.join(", "));
    for (name, value) in [
        ("Age", &f.age),
        ("Date", &f.date),
        ("Expires", &f.expires),
        ("Last-Modified", &f.last_modified),
    ] {
        if let Some(v) = value {
            r.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    r.push_str(&format!(
        "ETag: \"e\"\r\nContent-Length: {content_length}\r\n\r\n{body}"
    ));
    r
}

const REQUESTS: [&str; 5] = [
    "GET http://o.test/n HTTP/1.1\r\nHost: o.test\r\n\r\n",
    "GET http://o.test/n HTTP/1.1\r\nHost: o.test\r\nCache-Control: max-stale=18446744073709551616\r\n\r\n",
    "GET http://o.test/n HTTP/1.1\r\nHost: o.test\r\nCache-Control: min-fresh=99999999999999999999\r\n\r\n",
    "GET http://o.test/n HTTP/1.1\r\nHost: o.test\r\nCache-Control: max-age=9223372036854775808\r\nIf-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n\r\n",
    "GET http://o.test/n HTTP/1.1\r\nHost: o.test\r\nAccept-Encoding: gzip\r\n\r\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn extreme_numbers_pass_through_the_cache_without_overflow(
        first in fields(),
        revalidated in fields(),
        content_length in prop_oneof![Just(None), number().prop_map(Some)],
        requests in proptest::collection::vec((0..REQUESTS.len(), 0u64..100_000_000), 1..5),
    ) {
        let store = Arc::new(Store::new(1 << 20, 1 << 20));
        let body = "b".repeat(600);
        // Stored, then revalidated (a 304 with its own extremes), then a 200 whose
        // Content-Length is an extreme too.
        let declared = content_length.unwrap_or_else(|| body.len().to_string());
        let mut answers = vec![
            response(&first, &body.len().to_string(), &body),
            response(&revalidated, "0", "").replace("200 OK", "304 Not Modified"),
            response(&first, &declared, &body),
        ];
        for (which, wait) in std::iter::once((0, 0)).chain(requests) {
            let mut h = Harness::with_cache("", Some(store.clone()));
            h.t += Duration::from_secs(wait); // a later connection: no tick in between
            h.client(REQUESTS[which]);
            if h.actions().iter().any(|a| matches!(a, Action::Acquire { .. })) {
                h.ready(false);
                let answer = if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() };
                h.origin(&answer);
                h.actions();
            }
            let out = h.sent_client();
            prop_assert!(out.starts_with("HTTP/1.1 "), "{:.200}", out);
        }
    }
}

#[test]
fn an_age_past_i64_on_a_304_is_served_without_overflow() {
    let store = Arc::new(Store::new(1 << 20, 1 << 20));
    let mut h = Harness::with_cache("", Some(store.clone()));
    h.client(REQUESTS[0]);
    h.actions();
    h.ready(false);
    h.origin("HTTP/1.1 200 OK\r\nCache-Control: public, max-age=0\r\nETag: \"e\"\r\nContent-Length: 2\r\n\r\nok");
    h.actions();
    let mut h = Harness::with_cache("", Some(store));
    h.client(REQUESTS[0]);
    h.actions();
    h.ready(false);
    assert!(h.sent_upstream().contains("If-None-Match: \"e\""));
    h.origin("HTTP/1.1 304 Not Modified\r\nAge: 9223372036854775808\r\nCache-Control: max-age=60\r\n\r\n");
    let out = h.sent_client();
    assert!(out.contains("fwd-status=304; ttl=-2147483588"), "{out}");
    assert!(out.ends_with("ok"), "{out}");
}
