//! The cache's second pass over real sockets, against distill-origin's `/headers`
//! (`_len` for a body of pattern bytes, `_range` for an origin that answers ranges,
//! `_early` for a 103): byte ranges from the cache, targeted cache control (RFC 9213),
//! interim responses, the stored Date, heuristic freshness for every heuristically
//! cacheable status, and the edge cases of Age, Expires, Vary and conditionals.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{
    Mode, Response, Setup, cache_status, get_with as get, headers_url as url, origin_request,
    pattern_byte,
};

in_both_modes!(
    ranges_are_answered_from_the_cache,
    if_range_decides_between_the_range_and_the_whole,
    a_range_miss_is_forwarded_and_its_206_is_never_stored,
    ranges_of_a_distilled_variant_are_ranges_of_its_bytes,
    targeted_cache_control_takes_precedence,
    early_hints_are_forwarded_as_they_arrive_and_never_stored,
    a_hit_carries_the_stored_date_and_its_age,
    heuristic_freshness_for_every_heuristically_cacheable_status,
    age_and_expires_are_read_as_recipients_must,
    accept_language_variants_match_when_equivalent,
    if_modified_since_is_answered_from_a_fresh_stored_response,
    preconditions_the_cache_does_not_evaluate_go_to_the_origin,
);

fn pattern(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(pattern_byte).collect()
}

/// An IMF-fixdate `secs` from now (negative: in the past), percent-encoded for a query.
fn date_from_now(secs: i64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn at(secs: i64) -> SystemTime {
    let now = SystemTime::now();
    match secs {
        s if s >= 0 => now + Duration::from_secs(s as u64),
        s => now - Duration::from_secs(s.unsigned_abs()),
    }
}

fn enc(v: &str) -> String {
    v.replace('%', "%25")
        .replace(' ', "%20")
        .replace(',', "%2C")
        .replace(':', "%3A")
        .replace('=', "%3D")
        .replace('"', "%22")
        .replace(';', "%3B")
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('/', "%2F")
}

/// A stored 1000-byte body with validators (ETag "r1", Last-Modified an hour before its
/// Date); returns its URL and the miss's response.
fn stored_body(s: &Setup, name: &str) -> (String, Response) {
    let u = url(&format!(
        "Cache-Control=max-age%3D600&ETag=%22r1%22&Last-Modified={}&Content-Type=application%2Foctet-stream&_len=1000&n={name}",
        enc(&date_from_now(-3600))
    ));
    let first = get(s, &u, &[]);
    assert_eq!(first.status, 200, "{first:?}");
    assert!(cache_status(&first).contains("stored"), "{first:?}");
    (u, first)
}

/// The parts of a multipart/byteranges body: (Content-Range, bytes) each.
fn multipart(r: &Response) -> Vec<(String, Vec<u8>)> {
    let ct = r.header("content-type").unwrap_or("");
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .unwrap_or_else(|| panic!("no boundary in {ct:?}"));
    let delimiter = format!("\r\n--{boundary}");
    let text = r.body.clone();
    let mut parts = Vec::new();
    let find = |from: usize, what: &[u8]| {
        text[from..]
            .windows(what.len())
            .position(|w| w == what)
            .map(|i| i + from)
    };
    let mut at = find(0, delimiter.as_bytes()).expect("first delimiter");
    loop {
        let after = at + delimiter.len();
        if text[after..].starts_with(b"--") {
            assert_eq!(
                &text[after + 2..],
                b"\r\n",
                "the close delimiter ends the body"
            );
            return parts;
        }
        let head_end = find(after, b"\r\n\r\n").expect("part head");
        let head = String::from_utf8_lossy(&text[after..head_end]).into_owned();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("Content-Range in each part")
            .to_string();
        assert!(
            head.contains("Content-Type: application/octet-stream"),
            "{head}"
        );
        let next = find(head_end + 4, delimiter.as_bytes()).expect("next delimiter");
        parts.push((range, text[head_end + 4..next].to_vec()));
        at = next;
    }
}

fn ranges_are_answered_from_the_cache(mode: Mode) {
    let s = Setup::new(mode);
    let (u, first) = stored_body(&s, "ranges");
    let (_, before) = s.origin_stats();
    let range = |spec: &str| get(&s, &u, &[&format!("Range: {spec}")]);

    let r = range("bytes=0-99");
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 0-99/1000"));
    assert_eq!(r.body, pattern(0..100));
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(origin_request(&r), origin_request(&first));
    assert_eq!(r.header("etag"), Some("\"r1\""));

    let r = range("bytes=-10");
    assert_eq!((r.status, r.body.clone()), (206, pattern(990..1000)));
    assert_eq!(r.header("content-range"), Some("bytes 990-999/1000"));
    let r = range("bytes=995-5000");
    assert_eq!((r.status, r.body.clone()), (206, pattern(995..1000)));
    let r = range("bytes=0-0,1-1,2-2");
    assert_eq!(
        r.header("content-range"),
        Some("bytes 0-2/1000"),
        "adjacent ranges merged"
    );

    let r = range("bytes=0-9, 500-509");
    assert_eq!(r.status, 206);
    assert!(r.header("content-range").is_none());
    let parts = multipart(&r);
    assert_eq!(
        parts,
        [
            ("bytes 0-9/1000".to_string(), pattern(0..10)),
            ("bytes 500-509/1000".to_string(), pattern(500..510)),
        ]
    );

    let r = range("bytes=2000-");
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    assert!(r.body.is_empty());

    for ignored in ["bytes=5-1", "lines=0-1", "bytes=0-1,x"] {
        let r = range(ignored);
        assert_eq!((r.status, r.body.len()), (200, 1000), "{ignored}");
    }
    // More pieces than cache.range_parts_max (16): the whole response.
    let many: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
    let r = range(&format!("bytes={}", many.join(",")));
    assert_eq!((r.status, r.body.len()), (200, 1000));

    // HEAD ignores Range; pipelined ranges come back whole and in order.
    let mut c = s.client();
    c.send(s.head("HEAD", &u, &["Range: bytes=0-1"]).as_bytes());
    let h = c.response(true);
    assert_eq!((h.status, h.header("content-length")), (200, Some("1000")));
    let one = s.head("GET", &u, &["Range: bytes=10-19"]);
    let two = s.head("GET", &u, &["Range: bytes=20-29,40-49"]);
    c.send(format!("{one}{two}{one}").as_bytes());
    assert_eq!(c.response(false).body, pattern(10..20));
    assert_eq!(multipart(&c.response(false)).len(), 2);
    assert_eq!(c.response(false).body, pattern(10..20));

    let (_, after) = s.origin_stats();
    assert_eq!(after - before, 1, "every range came from the cache");
}

fn if_range_decides_between_the_range_and_the_whole(mode: Mode) {
    let s = Setup::new(mode);
    let (u, first) = stored_body(&s, "ifrange");
    let lm = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    let with = |if_range: &str| {
        get(
            &s,
            &u,
            &["Range: bytes=0-9", &format!("If-Range: {if_range}")],
        )
    };
    assert_eq!(with("\"r1\"").status, 206);
    assert_eq!(with("\"r2\"").status, 200, "another entity tag");
    assert_eq!(with("W/\"r1\"").status, 200, "weak tags never match");
    assert_eq!(with(&lm).status, 206, "the Last-Modified date");
    let other = date_from_now(-7200);
    let r = with(&other);
    assert_eq!((r.status, r.body.len()), (200, 1000), "another date");
    // If-None-Match is evaluated first: a match is a 304 whatever the range.
    let r = get(&s, &u, &["Range: bytes=0-9", "If-None-Match: \"r1\""]);
    assert_eq!(r.status, 304);
}

fn a_range_miss_is_forwarded_and_its_206_is_never_stored(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D600&_len=1000&_range=1&n=rangemiss");
    let partial = get(&s, &u, &["Range: bytes=0-9"]);
    assert_eq!(partial.status, 206, "{partial:?}");
    assert_eq!(partial.body, pattern(0..10));
    assert_eq!(partial.header("content-range"), Some("bytes 0-9/1000"));
    assert!(cache_status(&partial).contains("fwd=miss"), "{partial:?}");
    assert!(!cache_status(&partial).contains("stored"), "{partial:?}");
    let whole = get(&s, &u, &[]);
    assert_eq!((whole.status, whole.body.clone()), (200, pattern(0..1000)));
    assert!(
        cache_status(&whole).contains("fwd=miss"),
        "the 206 was not stored: {whole:?}"
    );
    assert_ne!(origin_request(&whole), origin_request(&partial));
    let hit = get(&s, &u, &["Range: bytes=10-19"]);
    assert_eq!((hit.status, hit.body.clone()), (206, pattern(10..20)));
    assert!(cache_status(&hit).contains("hit"), "{hit:?}");
    // `bytes=0-` (what a media player asks first) is the whole: fetched whole, stored,
    // and sent as the 206 of all its bytes.
    let u = url("Cache-Control=max-age%3D600&_len=1000&_range=1&n=fromstart");
    let all = get(&s, &u, &["Range: bytes=0-"]);
    assert_eq!(
        (all.status, all.body.clone()),
        (206, pattern(0..1000)),
        "{all:?}"
    );
    assert_eq!(all.header("content-range"), Some("bytes 0-999/1000"));
    assert!(
        cache_status(&all).contains("fwd-status=200; stored"),
        "{all:?}"
    );
    let seek = get(&s, &u, &["Range: bytes=900-"]);
    assert_eq!((seek.status, seek.body.clone()), (206, pattern(900..1000)));
    assert!(cache_status(&seek).contains("hit"), "{seek:?}");
}

fn ranges_of_a_distilled_variant_are_ranges_of_its_bytes(mode: Mode) {
    let s = Setup::with(mode, "[distill]\ntext_bytes_min = 1\n", &[]);
    let u = url(
        "Cache-Control=public,max-age%3D600&ETag=%22t1%22&Content-Type=text%2Fplain&_len=20000&n=dv",
    );
    let zstd = "Accept-Encoding: zstd";
    get(&s, &u, &[zstd]);
    let whole = get(&s, &u, &[zstd]);
    assert_eq!(whole.header("content-encoding"), Some("zstd"), "{whole:?}");
    assert!(cache_status(&whole).contains("hit"), "{whole:?}");
    let tag = whole
        .header("etag")
        .expect("the variant's ETag")
        .to_string();
    assert_ne!(tag, "\"t1\"", "the variant has its own entity tag");
    let n = whole.body.len();
    assert!(n > 20 && n < 20000, "{n}");
    let r = get(&s, &u, &[zstd, "Range: bytes=5-14"]);
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, whole.body[5..15]);
    assert_eq!(r.header("content-range"), Some(&*format!("bytes 5-14/{n}")));
    assert_eq!(r.header("content-encoding"), Some("zstd"));
    assert_eq!(r.header("etag"), Some(&*tag));
    // The variant's tag is weak (its bytes are made here), and a weak tag never passes
    // If-Range; the original's tag does not name the variant: the whole variant.
    assert!(tag.starts_with("W/"), "{tag}");
    for if_range in [tag.as_str(), "\"t1\""] {
        let r = get(
            &s,
            &u,
            &[zstd, "Range: bytes=5-14", &format!("If-Range: {if_range}")],
        );
        assert_eq!((r.status, r.body.len()), (200, n), "{if_range}");
    }
}

/// Targeted fields are for caches that work for the origin: reverse routes obey them,
/// the forward proxy (which no origin chose) reads Cache-Control alone.
fn targeted_cache_control_takes_precedence(mode: Mode) {
    let s = Setup::new(mode);
    let stored_twice = |s: &Setup, query: &str| {
        let u = url(query);
        let a = get(s, &u, &[]);
        let b = get(s, &u, &[]);
        assert_eq!(a.status, 200);
        origin_request(&a) == origin_request(&b)
    };
    let reverse = matches!(mode, Mode::Reverse);
    assert_eq!(
        stored_twice(
            &s,
            "Cache-Control=no-store&CDN-Cache-Control=max-age%3D600&n=t1"
        ),
        reverse,
        "CDN-Cache-Control over Cache-Control"
    );
    assert_eq!(
        stored_twice(
            &s,
            "Cache-Control=max-age%3D600&CDN-Cache-Control=max-age%3D600&Distilld-Cache-Control=no-store&n=t2"
        ),
        !reverse,
        "ours over CDN-Cache-Control"
    );
    assert!(
        !stored_twice(
            &s,
            "Cache-Control=no-store&CDN-Cache-Control=max-age%3D600%20junk&n=t3"
        ),
        "an invalid targeted field is ignored"
    );
    // A valid targeted field without freshness: Expires no longer counts.
    let expires = enc(&date_from_now(600));
    assert_eq!(
        stored_twice(
            &s,
            &format!("CDN-Cache-Control=stale-if-error%3D60&Expires={expires}&n=t4")
        ),
        !reverse,
        "Expires is ignored with a targeted field"
    );
    assert_eq!(
        stored_twice(
            &s,
            "Cache-Control=max-age%3D600&CDN-Cache-Control=private&n=t5"
        ),
        !reverse,
        "private in the targeted field"
    );
    // The field goes on to the client: it is end-to-end.
    let r = get(&s, &url("CDN-Cache-Control=max-age%3D600&n=t1b"), &[]);
    assert_eq!(r.header("cdn-cache-control"), Some("max-age=600"));

    // The list is a config key: here only X-Edge-Control counts.
    let s = Setup::with(
        mode,
        "[cache]\ntargeted_fields = [\"X-Edge-Control\"]\n",
        &[],
    );
    assert_eq!(
        stored_twice(
            &s,
            "Cache-Control=no-store&X-Edge-Control=max-age%3D600&n=t6"
        ),
        reverse
    );
    assert!(!stored_twice(
        &s,
        "Cache-Control=no-store&CDN-Cache-Control=max-age%3D600&n=t7"
    ));
}

fn early_hints_are_forwarded_as_they_arrive_and_never_stored(mode: Mode) {
    let s = Setup::new(mode);
    let link = "</style.css>; rel=preload";
    let u = url(&format!(
        "Cache-Control=max-age%3D600&_early={}&_delay_ms=800&n=eh",
        enc(link)
    ));
    let mut c = s.client();
    let started = Instant::now();
    c.send(s.head("GET", &u, &[]).as_bytes());
    let (status, fields) = c.head();
    assert_eq!(status, 103);
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "before the final response"
    );
    let field = |name: &str| fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
    assert_eq!(field("link").map(|(_, v)| v.as_str()), Some(link));
    assert!(field("via").is_some(), "{fields:?}");
    let fin = c.response(false);
    assert_eq!(fin.status, 200);
    assert!(
        !fin.has("link"),
        "not merged into the final response: {fin:?}"
    );
    // A hit repeats no 103; the connection goes on.
    c.send(s.head("GET", &u, &[]).as_bytes());
    let (status, _) = c.head();
    assert_eq!(status, 200, "the hit starts with its final head");

    // An HTTP/1.0 client gets none.
    let u = url(&format!("_early={}&n=eh10", enc(link)));
    let (target, host) = s.target(&u);
    let mut c = s.client();
    c.send(format!("GET {target} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes());
    let (status, _) = c.head();
    assert_eq!(status, 200);
}

fn a_hit_carries_the_stored_date_and_its_age(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D600&n=date");
    let first = get(&s, &u, &[]);
    let date = first.header("date").expect("Date").to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let hit = get(&s, &u, &[]);
    assert!(cache_status(&hit).contains("hit"), "{hit:?}");
    assert_eq!(hit.header("date"), Some(&*date), "the origin's Date");
    assert_eq!(
        hit.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
            .count(),
        1
    );
    let age: u64 = hit.header("age").and_then(|a| a.parse().ok()).expect("Age");
    // (The driver reads the clock's seconds once a second: one may lag.)
    assert!((1..=4).contains(&age), "age {age}");

    // A 304 that refreshes the stored response brings its own Date.
    let u = url("Cache-Control=max-age%3D2&ETag=%22d1%22&n=date304");
    let first = get(&s, &u, &[]);
    std::thread::sleep(Duration::from_millis(3100));
    let refreshed = get(&s, &u, &[]);
    assert!(
        cache_status(&refreshed).contains("fwd-status=304"),
        "{refreshed:?}"
    );
    assert_ne!(refreshed.header("date"), first.header("date"));
    let age: u64 = refreshed
        .header("age")
        .and_then(|a| a.parse().ok())
        .expect("Age");
    assert!(age <= 1, "age {age} after the refresh");
    let hit = get(&s, &u, &[]);
    assert_eq!(hit.header("date"), refreshed.header("date"));
}

fn heuristic_freshness_for_every_heuristically_cacheable_status(mode: Mode) {
    let s = Setup::new(mode);
    let lm = enc(&date_from_now(-10 * 24 * 3600));
    let stored = |status: u16, extra: &str| {
        let u = url(&format!(
            "_status={status}&Last-Modified={lm}{extra}&n=h{status}"
        ));
        let a = get(&s, &u, &[]);
        let b = get(&s, &u, &[]);
        assert_eq!(a.status, status);
        origin_request(&a) == origin_request(&b)
    };
    for status in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
        assert!(stored(status, ""), "{status} is heuristically cacheable");
    }
    assert!(!stored(302, ""), "302 is not");
    assert!(!stored(500, ""), "500 is not");
    assert!(
        stored(302, "&Cache-Control=public&x=p"),
        "unless marked public"
    );
    assert!(
        stored(307, "&Cache-Control=max-age%3D60"),
        "explicit freshness, any status"
    );
    assert!(stored(500, "&Cache-Control=max-age%3D60&x=e"));
    assert!(
        !stored(503, "&Cache-Control=public&x=p5"),
        "an error is not kept by public"
    );
    for status in [400, 412, 416, 417] {
        assert!(
            !stored(status, "&Cache-Control=max-age%3D60"),
            "a request's own error: {status}"
        );
    }
}

fn age_and_expires_are_read_as_recipients_must(mode: Mode) {
    let s = Setup::new(mode);
    let hit_age = |query: &str| {
        let u = url(query);
        let a = get(&s, &u, &[]);
        let b = get(&s, &u, &[]);
        let age: u64 = b.header("age").and_then(|v| v.parse().ok()).unwrap_or(0);
        (origin_request(&a) == origin_request(&b), age)
    };
    let (hit, age) = hit_age("Cache-Control=max-age%3D600&Age=abc&n=a1");
    assert!(hit && age <= 1, "an invalid Age is ignored: {age}");
    let (hit, age) = hit_age("Cache-Control=max-age%3D600&Age=10%2C%2020&n=a2");
    assert!(
        hit && (10..=11).contains(&age),
        "the first member counts: {age}"
    );
    let (hit, _) = hit_age("Cache-Control=max-age%3D60&Age=100&n=a3");
    assert!(!hit, "older than its lifetime on arrival");

    let future = httpdate::fmt_http_date(at(3600)); // "Tue, 01 Dec 2026 20:00:00 GMT"
    let (wd, rest) = future.split_once(", ").expect("IMF-fixdate");
    let f: Vec<&str> = rest.split(' ').collect(); // [dd, Mon, yyyy, hh:mm:ss, GMT]
    let weekday = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    .into_iter()
    .find(|d| d.starts_with(wd))
    .expect("weekday");
    let rfc850 = format!("{weekday}, {}-{}-{} {} GMT", f[0], f[1], &f[2][2..], f[3]);
    let day: u32 = f[0].parse().expect("day");
    let asctime = format!("{wd} {} {day:>2} {} {}", f[1], f[3], f[2]);
    for (i, expires) in [
        rfc850,
        asctime,
        future.to_lowercase(),
        future.to_uppercase(),
    ]
    .into_iter()
    .enumerate()
    {
        let (hit, _) = hit_age(&format!("Expires={}&n=e{i}", enc(&expires)));
        assert!(hit, "Expires: {expires}");
    }
    let (hit, _) = hit_age("Expires=0&Last-Modified=x&n=e9");
    assert!(!hit, "an invalid Expires means already expired");
}

fn accept_language_variants_match_when_equivalent(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D600&Vary=Accept-Language&_echo=Accept-Language&n=al");
    let first = get(&s, &u, &["Accept-Language: en-US, fr;q=0.5, de;q=0.5"]);
    for same in [
        "FR;q=0.50, de;q=0.5 ,en-us",
        "fr;q=0.500,en-us;q=1.0,de;q=0.5, fr;q=0.5",
    ] {
        let r = get(&s, &u, &[&format!("Accept-Language: {same}")]);
        assert!(cache_status(&r).contains("hit"), "{same}: {r:?}");
        assert_eq!(r.body, first.body);
    }
    // Equally weighted languages keep their order: many servers read it as a preference.
    for other in [
        "fr, en-US",
        "en-US",
        "en-US, fr;q=0.4, de;q=0.5",
        "en-US, de;q=0.5, fr;q=0.5",
    ] {
        let r = get(&s, &u, &[&format!("Accept-Language: {other}")]);
        assert!(!cache_status(&r).contains("hit"), "{other}: {r:?}");
    }
}

fn if_modified_since_is_answered_from_a_fresh_stored_response(mode: Mode) {
    let s = Setup::new(mode);
    let lm = date_from_now(-3600);
    let u = url(&format!(
        "Cache-Control=max-age%3D600&Last-Modified={}&n=ims",
        enc(&lm)
    ));
    let first = get(&s, &u, &[]);
    let (_, before) = s.origin_stats();
    let ask = |since: &str| get(&s, &u, &[&format!("If-Modified-Since: {since}")]);
    let r = ask(&lm);
    assert_eq!(r.status, 304, "{r:?}");
    assert!(cache_status(&r).contains("hit"));
    assert_eq!(r.header("last-modified"), Some(&*lm));
    assert_eq!(r.header("date"), first.header("date"));
    assert_eq!(ask(&lm.to_lowercase()).status, 304, "any case");
    let r = ask(&date_from_now(-7200));
    assert_eq!((r.status, r.body.clone()), (200, first.body.clone()));
    assert_eq!(ask("not a date").status, 200);
    // Without Last-Modified the stored Date stands in (RFC 9111 §4.3.2).
    let u = url("Cache-Control=max-age%3D600&n=ims-date");
    let first = get(&s, &u, &[]);
    let date = first.header("date").expect("Date").to_string();
    let r = get(&s, &u, &[&format!("If-Modified-Since: {date}")]);
    assert_eq!(r.status, 304, "{r:?}");
    let r = get(
        &s,
        &u,
        &[&format!("If-Modified-Since: {}", date_from_now(-3600))],
    );
    assert_eq!(r.status, 200);
    let (_, after) = s.origin_stats();
    assert_eq!(
        after - before,
        2,
        "only the second URL's miss and the stats"
    );
}

/// RFC 9110 §13.2.1: preconditions are evaluated by whoever answers. The cache answers
/// If-None-Match, If-Modified-Since and If-Range itself; If-Match and
/// If-Unmodified-Since go to the origin, and its 412 is never stored.
fn preconditions_the_cache_does_not_evaluate_go_to_the_origin(mode: Mode) {
    let s = Setup::new(mode);
    let u = url("Cache-Control=max-age%3D600&ETag=%22p1%22&n=pre");
    let first = get(&s, &u, &[]);
    let mut last = first;
    for condition in [
        "If-Match: \"p1\"",
        "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
    ] {
        let r = get(&s, &u, &[condition]);
        assert_ne!(
            origin_request(&r),
            origin_request(&last),
            "{condition}: {r:?}"
        );
        assert!(
            cache_status(&r).contains("fwd=bypass"),
            "{condition}: {r:?}"
        );
        last = r;
    }
    // A 200 to such a request is the whole representation: stored, it answers next.
    let hit = get(&s, &u, &[]);
    assert!(cache_status(&hit).contains("hit"), "{hit:?}");
    assert_eq!(origin_request(&hit), origin_request(&last));
    // A failed precondition's 412 is not stored.
    let u = url("Cache-Control=max-age%3D600&_status=412&n=pre412");
    let r = get(&s, &u, &["If-Match: \"zz\""]);
    assert_eq!(r.status, 412);
    let plain = get(&s, &u, &[]);
    assert_ne!(origin_request(&plain), origin_request(&r));
}
