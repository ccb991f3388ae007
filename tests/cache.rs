//! The shared cache over real sockets: RFC 9111 rules with distill-origin serving the
//! headers under test (`/headers?Name=value`, with `X-Origin-Request` telling a stored
//! copy from a fresh one), collapsing, purge, and what must never be stored.

mod common;

use std::time::Duration;

use common::{
    Client, Mode, Setup, assert_pattern, cache_status, get_with as get, headers_url as url,
    origin_request,
};

in_both_modes!(
    fresh_response_is_stored_and_hit,
    no_store_private_and_authorization_are_not_shared,
    request_directives,
    stale_entry_is_revalidated_and_updated_on_304,
    client_conditional_is_answered_from_the_cache,
    vary_keeps_one_entry_per_variant,
    a_distilled_variant_keeps_the_originals_vary,
    purge_and_invalidation_remove_distilled_variants,
    head_is_answered_from_a_stored_get,
    unsafe_method_invalidates_target_and_location,
    purge_removes_a_url,
    incomplete_body_is_never_stored,
    errors_are_stored_only_when_explicit_and_never_request_errors,
    stale_if_error_when_the_origin_is_gone,
    stale_while_revalidate_serves_the_stale_copy_during_the_refresh,
    large_objects_stream_through,
);

on_both_drivers!(a_thousand_clients_on_an_expired_key_cause_one_origin_request);

fn fresh_response_is_stored_and_hit(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D60&n=fresh");
    let first = get(&s, &u, &[]);
    assert_eq!(first.status, 200);
    assert!(
        cache_status(&first).contains("fwd=miss") && cache_status(&first).contains("stored"),
        "{first:?}"
    );
    let second = get(&s, &u, &[]);
    assert_eq!(second.body, first.body);
    assert_eq!(origin_request(&second), origin_request(&first));
    assert!(cache_status(&second).contains("hit"), "{second:?}");
    assert!(cache_status(&second).contains("ttl="), "{second:?}");
    assert!(
        second
            .header("age")
            .is_some_and(|a| a.parse::<u64>().is_ok())
    );
    assert!(second.has("date"));
    assert_eq!(second.header("via"), Some("1.1 distilld"));
    // Pipelined hits on one connection come back whole and in order.
    let mut c = s.client();
    let req = s.head("GET", &u, &[]);
    c.send(format!("{req}{req}{req}").as_bytes());
    for _ in 0..3 {
        assert_eq!(c.response(false).body, first.body);
    }
}

fn no_store_private_and_authorization_are_not_shared(mode: Mode) {
    let s = Setup::new(mode);
    for u in [
        url("Cache-Control=no-store"),
        url("Cache-Control=private%2C%20max-age%3D60"),
    ] {
        let a = get(&s, &u, &[]);
        let b = get(&s, &u, &[]);
        assert_ne!(origin_request(&a), origin_request(&b), "{u} was shared");
        assert!(!cache_status(&a).contains("stored"), "{a:?}");
    }
    // A response to a request with Authorization is not stored unless it says public…
    let u = url("Cache-Control=max-age%3D60&n=auth");
    let a = get(&s, &u, &["Authorization: Basic dTpw"]);
    let b = get(&s, &u, &[]);
    assert_ne!(origin_request(&a), origin_request(&b));
    // …and an authenticated request is never answered from the store.
    let c = get(&s, &u, &["Authorization: Basic dTpw"]);
    assert_ne!(origin_request(&b), origin_request(&c));
    let u = url("Cache-Control=public%2C%20max-age%3D60&n=auth-public");
    let a = get(&s, &u, &["Authorization: Basic dTpw"]);
    let b = get(&s, &u, &[]);
    assert_eq!(origin_request(&a), origin_request(&b));
}

fn request_directives(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D60&n=directives");
    let first = get(&s, &u, &[]);
    for directive in [
        "Cache-Control: no-cache",
        "Cache-Control: max-age=0",
        "Pragma: no-cache",
    ] {
        let r = get(&s, &u, &[directive]);
        assert_ne!(origin_request(&r), origin_request(&first), "{directive}");
    }
    let r = get(&s, &u, &["Cache-Control: min-fresh=3600"]);
    assert!(
        !cache_status(&r).contains("hit"),
        "min-fresh beyond the lifetime: {r:?}"
    );
    let r = get(&s, &u, &["Cache-Control: only-if-cached"]);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    let missing = get(
        &s,
        &url("n=never-stored"),
        &["Cache-Control: only-if-cached"],
    );
    assert_eq!(missing.status, 504);
    // A request's no-store keeps its response out of the store.
    let u = url("Cache-Control=max-age%3D60&n=req-no-store");
    let a = get(&s, &u, &["Cache-Control: no-store"]);
    let b = get(&s, &u, &[]);
    assert_ne!(origin_request(&a), origin_request(&b));
}

fn stale_entry_is_revalidated_and_updated_on_304(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D3&ETag=%22v1%22&n=reval");
    let first = get(&s, &u, &[]);
    std::thread::sleep(Duration::from_millis(4100));
    let second = get(&s, &u, &[]);
    assert_eq!(second.status, 200);
    assert_eq!(
        second.body, first.body,
        "the stored body is served after a 304"
    );
    assert!(
        cache_status(&second).contains("fwd=stale; fwd-status=304"),
        "{second:?}"
    );
    // The 304's fields replaced the stored ones, and it is fresh again.
    assert_ne!(origin_request(&second), origin_request(&first));
    let third = get(&s, &u, &[]);
    assert!(cache_status(&third).contains("hit"), "{third:?}");
    assert_eq!(origin_request(&third), origin_request(&second));
    // With Last-Modified only, revalidation uses If-Modified-Since.
    let u = url(
        "Cache-Control=max-age%3D3&Last-Modified=Sat%2C%2001%20Jan%202000%2000%3A00%3A00%20GMT&n=ims",
    );
    let first = get(&s, &u, &[]);
    std::thread::sleep(Duration::from_millis(4100));
    let second = get(&s, &u, &[]);
    assert_eq!(second.body, first.body);
    assert!(
        cache_status(&second).contains("fwd-status=304"),
        "{second:?}"
    );
}

fn client_conditional_is_answered_from_the_cache(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D60&ETag=%22c1%22&n=cond");
    let first = get(&s, &u, &[]);
    let mut c = s.client();
    c.send(
        s.head("GET", &u, &["If-None-Match: \"other\", W/\"c1\""])
            .as_bytes(),
    );
    let r = c.response(false);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some("\"c1\""));
    assert!(cache_status(&r).contains("hit"));
    // The connection stays usable after a 304 from the cache.
    c.send(s.head("GET", &u, &["If-None-Match: \"other\""]).as_bytes());
    let r = c.response(false);
    assert_eq!((r.status, r.body), (200, first.body));
}

fn vary_keeps_one_entry_per_variant(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D60&Vary=Accept-Language&_echo=Accept-Language");
    let en = get(&s, &u, &["Accept-Language: en"]);
    let fr = get(&s, &u, &["Accept-Language: fr"]);
    assert_eq!((en.text(), fr.text()), ("en\n".into(), "fr\n".into()));
    let en2 = get(&s, &u, &["Accept-Language: en"]);
    let fr2 = get(&s, &u, &["Accept-Language: fr"]);
    assert_eq!((en2.text(), fr2.text()), ("en\n".into(), "fr\n".into()));
    assert!(cache_status(&en2).contains("hit") && cache_status(&fr2).contains("hit"));
    let none = get(&s, &u, &[]);
    assert!(!cache_status(&none).contains("hit"), "{none:?}");
}

/// The page varies on Cookie; both clients take gzip, so each gets a distilled variant
/// (or the original stored as one): B must never get A's.
fn a_distilled_variant_keeps_the_originals_vary(mode: Mode) {
    let s = Setup::with(mode, "[distill]\ntext_bytes_min = 1\n", &[]);
    let u =
        url("Cache-Control=public,max-age%3D60&Vary=Cookie&Content-Type=text/plain&_echo=Cookie");
    let page = |cookie: &str| {
        let c = format!("Cookie: {cookie}");
        let r = get(&s, &u, &[&c, "Accept-Encoding: gzip"]);
        assert_eq!(r.status, 200, "{r:?}");
        r
    };
    let a = page("a");
    let a2 = page("a");
    assert!(cache_status(&a2).contains("hit"), "{a2:?}");
    assert_eq!(a2.body, a.body);
    let b = page("b");
    assert!(!cache_status(&b).contains("hit"), "{b:?}");
    assert_eq!(b.text(), "b\n");
}

fn head_is_answered_from_a_stored_get(mode: Mode) {
    let s = Setup::new(mode);
    let get_r = get(&s, "/bytes/5000", &[]);
    assert_pattern(&get_r.body, 5000);
    let mut c = s.client();
    c.send(s.head("HEAD", "/bytes/5000", &[]).as_bytes());
    let r = c.response(true);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(r.header("content-length"), Some("5000"));
    assert!(r.body.is_empty());
    c.send(s.head("GET", "/bytes/5000", &[]).as_bytes());
    assert_pattern(&c.response(false).body, 5000);
}

fn unsafe_method_invalidates_target_and_location(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D60&n=unsafe");
    let first = get(&s, &u, &[]);
    let mut c = s.client();
    c.send(s.head("POST", &u, &["Content-Length: 0"]).as_bytes());
    assert_eq!(c.response(false).status, 200);
    let after = get(&s, &u, &[]);
    assert_ne!(
        origin_request(&after),
        origin_request(&first),
        "POST invalidates"
    );
    // Location naming a stored URL of the same origin invalidates it too.
    let other = url("Cache-Control=max-age%3D60&n=located");
    let stored = get(&s, &other, &[]);
    let location = "%2Fheaders%3FCache-Control%3Dmax-age%253D60%26n%3Dlocated";
    let mut c = s.client();
    c.send(
        s.head("DELETE", &url(&format!("Location={location}")), &[])
            .as_bytes(),
    );
    assert_eq!(c.response(false).status, 200);
    let again = get(&s, &other, &[]);
    assert_ne!(origin_request(&again), origin_request(&stored));
}

fn purge_removes_a_url(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D60&n=purge");
    let first = get(&s, &u, &[]);
    let mut c = s.client();
    c.send(s.head("PURGE", &u, &[]).as_bytes());
    assert_eq!(c.response(false).status, 200);
    c.send(s.head("PURGE", &u, &[]).as_bytes());
    assert_eq!(c.response(false).status, 404, "already gone");
    let after = get(&s, &u, &[]);
    assert_ne!(origin_request(&after), origin_request(&first));
    // From an address not in cache.purge_from: refused, nothing removed.
    let s = Setup::with(mode, "[cache]\npurge_from = [\"127.0.0.2\"]\n", &[]);
    let first = get(&s, &u, &[]);
    let mut c = s.client();
    c.send(s.head("PURGE", &u, &[]).as_bytes());
    assert_eq!(c.response(false).status, 403);
    assert_eq!(origin_request(&get(&s, &u, &[])), origin_request(&first));
}

/// A variant made for gzip clients goes with its URL: after PURGE (or a POST to it),
/// a gzip client gets a fresh fetch, not the old variant.
fn purge_and_invalidation_remove_distilled_variants(mode: Mode) {
    let s = Setup::with(mode, "[distill]\ntext_bytes_min = 1\n", &[]);
    for (how, n) in [("PURGE", "p"), ("POST", "i")] {
        let u = url(&format!(
            "Cache-Control=max-age%3D60&Content-Type=text/plain&n={n}"
        ));
        let gz = |s: &Setup| get(s, &u, &["Accept-Encoding: gzip"]);
        let first = gz(&s);
        assert_eq!(
            origin_request(&gz(&s)),
            origin_request(&first),
            "a stored variant"
        );
        let mut c = s.client();
        let extra: &[&str] = if how == "POST" {
            &["Content-Length: 0"]
        } else {
            &[]
        };
        c.send(s.head(how, &u, extra).as_bytes());
        assert_eq!(c.response(false).status, 200, "{how}");
        let after = gz(&s);
        assert_ne!(
            origin_request(&after),
            origin_request(&first),
            "{how} left the variant: {after:?}"
        );
    }
}

fn incomplete_body_is_never_stored(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D60&_truncate=1");
    let (_, before) = s.origin_stats();
    for _ in 0..2 {
        let mut c = s.client();
        c.send(s.head("GET", &u, &[]).as_bytes());
        assert!(
            c.try_response(false).is_err(),
            "a cut body is never passed off as whole"
        );
    }
    let (_, after) = s.origin_stats();
    assert_eq!(after - before, 3, "both requests reached the origin");
}

fn errors_are_stored_only_when_explicit_and_never_request_errors(mode: Mode) {
    let s = Setup::new(mode);
    for u in [
        url("_status=404&n=plain404"),
        url("_status=400&Cache-Control=max-age%3D60"),
    ] {
        let a = get(&s, &u, &[]);
        let b = get(&s, &u, &[]);
        assert_ne!(origin_request(&a), origin_request(&b), "{u} was stored");
    }
    let u = url("_status=404&Cache-Control=max-age%3D60");
    let a = get(&s, &u, &[]);
    let b = get(&s, &u, &[]);
    assert_eq!((a.status, origin_request(&a)), (404, origin_request(&b)));
}

fn stale_if_error_when_the_origin_is_gone(mode: Mode) {
    let mut s = Setup::new(mode);
    let allowed = url("Cache-Control=max-age%3D1%2C%20stale-if-error%3D600&n=sie");
    let strict = url("Cache-Control=max-age%3D1&n=strict");
    let first = get(&s, &allowed, &[]);
    get(&s, &strict, &[]);
    std::thread::sleep(Duration::from_millis(2100));
    s.origin.kill();
    let r = get(&s, &allowed, &[]);
    assert_eq!((r.status, &r.body), (200, &first.body));
    assert!(cache_status(&r).contains("stale-if-error"), "{r:?}");
    assert_eq!(get(&s, &strict, &[]).status, 502);
}

fn stale_while_revalidate_serves_the_stale_copy_during_the_refresh(mode: Mode) {
    let s = Setup::new(mode);
    // The origin takes 1 s to answer, so a request that waited for the refresh would
    // take that long.
    let u = url(
        "Cache-Control=max-age%3D4%2C%20stale-while-revalidate%3D600&ETag=%22s%22&_delay_ms=1000&n=swr",
    );
    let first = get(&s, &u, &[]);
    // (Past max-age; the refreshed copy is then fresh long enough to be seen so, its 1 s
    // of delay counted in its age.)
    std::thread::sleep(Duration::from_millis(5100));
    let (_, before) = s.origin_stats();
    // RFC 5861: the first request after expiry is answered at once with the stale copy,
    // and so is one that arrives while the refresh is under way.
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let stale = get(&s, &u, &[]);
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "served without waiting for the origin"
        );
        assert_eq!(stale.body, first.body);
        assert_eq!(stale.header("date"), first.header("date"), "the stale copy");
        assert!(
            cache_status(&stale).contains("detail=stale-while-revalidate"),
            "{stale:?}"
        );
    }
    // The refresh ends in the background (the origin's 304 updates the stored copy):
    // then a fresh hit, and the origin was asked once.
    let refreshed = (0..40).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let r = get(&s, &u, &[]);
        (r.header("date") != first.header("date")).then_some(r)
    });
    let refreshed = refreshed.expect("the stored copy was refreshed");
    assert!(cache_status(&refreshed).contains("; hit"), "{refreshed:?}");
    assert_eq!(refreshed.body, first.body);
    let (_, after) = s.origin_stats();
    assert_eq!(
        after - before,
        2,
        "one revalidation (and the stats request)"
    );
}

fn large_objects_stream_through(mode: Mode) {
    let s = Setup::with(mode, "[cache]\nobject_bytes_max = 100000\n", &[]);
    for _ in 0..2 {
        let r = get(&s, "/bytes/200000", &[]);
        assert_pattern(&r.body, 200000);
        assert!(!cache_status(&r).contains("hit"), "{r:?}");
    }
    // Chunked, so the size is only known once the limit is passed.
    for _ in 0..2 {
        let r = get(&s, "/chunked/150000", &[]);
        assert_pattern(&r.body, 150000);
        assert!(!cache_status(&r).contains("hit"), "{r:?}");
    }
    get(&s, "/chunked/5000", &[]);
    let r = get(&s, "/chunked/5000", &[]);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some("5000"),
        "stored de-chunked"
    );
    assert_pattern(&r.body, 5000);
}

fn a_thousand_clients_on_an_expired_key_cause_one_origin_request() {
    let s = Setup::new(Mode::Forward);
    // Fresh for 3 s once revalidated, so a slow burst on a loaded machine still finds
    // it fresh after waiting.
    let u = url("Cache-Control=max-age%3D3&ETag=%22hot%22&_delay_ms=300&n=hot");
    let first = get(&s, &u, &[]);
    std::thread::sleep(Duration::from_millis(4100));
    let (_, before) = s.origin_stats();
    let req = s.head("GET", &u, &[]);
    let mut clients: Vec<Client> = (0..1000).map(|_| s.client()).collect();
    for c in &mut clients {
        c.send(req.as_bytes());
    }
    for c in &mut clients {
        let r = c.response(false);
        assert_eq!((r.status, &r.body), (200, &first.body));
    }
    let (_, after) = s.origin_stats();
    assert_eq!(
        after - before - 1,
        1,
        "one revalidation for 1000 concurrent requests (the rest waited on it)"
    );
}
