use proptest::prelude::*;

use super::*;

fn parts(v: &str, len: u64) -> Vec<(u64, u64)> {
    match select(v.as_bytes(), len, 16) {
        Ranges::Parts(p) => p.iter().map(|r| (r.start, r.end)).collect(),
        other => panic!("{v}: {other:?}"),
    }
}

#[test]
fn single_ranges_of_every_form() {
    assert_eq!(parts("bytes=0-499", 10_000), [(0, 500)]);
    assert_eq!(parts("bytes=500-999", 10_000), [(500, 1000)]);
    assert_eq!(parts("bytes=-500", 10_000), [(9500, 10_000)]);
    assert_eq!(parts("bytes=9500-", 10_000), [(9500, 10_000)]);
    assert_eq!(parts("bytes=0-0,-1", 10_000), [(0, 1), (9999, 10_000)]);
    assert_eq!(
        parts("BYTES = 0-99999", 10),
        [(0, 10)],
        "last-pos past the end"
    );
    assert_eq!(
        parts("bytes=-20", 10),
        [(0, 10)],
        "suffix longer than the body"
    );
    assert_eq!(
        parts("bytes=0-1, ,2-3", 10),
        [(0, 4)],
        "empty elements; adjacent merged"
    );
}

#[test]
fn overlapping_ranges_merge_in_order() {
    assert_eq!(
        parts("bytes=0-9,5-20,500-600,601-999", 10_000),
        [(0, 21), (500, 1000)]
    );
    assert_eq!(parts("bytes=0-,-10", 100), [(0, 100)]);
    // Out of order: kept in the order asked when apart, else the whole response.
    assert_eq!(parts("bytes=500-509,0-9", 10_000), [(500, 510), (0, 10)]);
    assert_eq!(
        select(b"bytes=500-600,601-999,0-9", 10_000, 16),
        Ranges::Whole
    );
    assert_eq!(select(b"bytes=-10,0-", 100, 16), Ranges::Whole);
}

#[test]
fn invalid_fields_are_ignored_and_unsatisfiable_ones_say_so() {
    for v in [
        "bytes=5-1",
        "bytes=a-b",
        "items=0-1",
        "bytes 0-1",
        "bytes=",
        "bytes=0-1,x",
        "bytes=--1",
        "bytes=1",
    ] {
        assert_eq!(select(v.as_bytes(), 100, 16), Ranges::Whole, "{v}");
    }
    for v in [
        "bytes=100-",
        "bytes=-0",
        "bytes=200-300,-0",
        "bytes=99999999999999999999999-",
    ] {
        assert_eq!(select(v.as_bytes(), 100, 16), Ranges::Unsatisfiable, "{v}");
    }
    assert_eq!(select(b"bytes=0-", 0, 16), Ranges::Whole, "an empty body");
    assert_eq!(select(b"bytes=-5", 0, 16), Ranges::Whole);
    assert_eq!(
        select(b"bytes=0-0,2-2,4-4", 10, 2),
        Ranges::Whole,
        "too many"
    );
}

#[test]
fn if_range_compares_strongly() {
    let (etag, lm) = (
        Some(&b"\"v1\""[..]),
        Some(&b"Sun, 06 Nov 1994 08:49:37 GMT"[..]),
    );
    let date = Some(&b"Sun, 06 Nov 1994 08:50:37 GMT"[..]);
    assert!(if_range_holds(b"\"v1\"", etag, None, None));
    assert!(!if_range_holds(b"\"v2\"", etag, None, None));
    assert!(!if_range_holds(b"W/\"v1\"", etag, None, None));
    assert!(!if_range_holds(b"\"v1\"", Some(b"W/\"v1\""), None, None));
    assert!(!if_range_holds(b"\"v1\"", None, lm, date));
    assert!(if_range_holds(
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        None,
        lm,
        date
    ));
    assert!(!if_range_holds(
        b"Sun, 06 Nov 1994 08:49:38 GMT",
        None,
        lm,
        date
    ));
    let too_recent = Some(&b"Sun, 06 Nov 1994 08:50:36 GMT"[..]);
    assert!(!if_range_holds(
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        None,
        lm,
        too_recent
    ));
    assert!(!if_range_holds(b"not a date", None, lm, date));
}

proptest! {
    /// Any satisfiable single range selects exactly the bytes it names.
    #[test]
    fn a_satisfiable_range_is_exactly_its_bytes(len in 1u64..5000, a in 0u64..6000, b in 0u64..6000, suffix in proptest::bool::ANY) {
        let body: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let (first, last) = (a.min(b), a.max(b));
        let (value, want) = if suffix {
            let n = last.max(1);
            (format!("bytes=-{n}"), &body[len.saturating_sub(n) as usize..])
        } else {
            if first >= len {
                prop_assert_eq!(select(format!("bytes={first}-{last}").as_bytes(), len, 16), Ranges::Unsatisfiable);
                return Ok(());
            }
            (format!("bytes={first}-{last}"), &body[first as usize..=(last.min(len - 1)) as usize])
        };
        let Ranges::Parts(p) = select(value.as_bytes(), len, 16) else {
            return Err(TestCaseError::fail(format!("{value}: not satisfiable")));
        };
        prop_assert_eq!(p.len(), 1);
        prop_assert_eq!(&body[p[0].start as usize..p[0].end as usize], want);
    }

    /// Several ranges: the parts cover exactly the bytes some range asked for.
    #[test]
    fn parts_cover_exactly_the_bytes_asked_for(len in 1u64..300, specs in proptest::collection::vec((0u64..400, 0u64..400), 1..8)) {
        let value = format!("bytes={}", specs.iter().map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))).collect::<Vec<_>>().join(","));
        let asked = |i: u64| specs.iter().any(|(a, b)| (*a.min(b)..=*a.max(b)).contains(&i));
        let ascending = specs.windows(2).all(|w| w[0].0.min(w[0].1) <= w[1].0.min(w[1].1));
        match select(value.as_bytes(), len, 16) {
            Ranges::Parts(p) => {
                for (i, a) in p.iter().enumerate() {
                    for b in &p[i + 1..] {
                        prop_assert!(a.end < b.start || b.end < a.start, "apart");
                    }
                }
                for i in 0..len {
                    prop_assert_eq!(p.iter().any(|r| (r.start..r.end).contains(&i)), asked(i), "byte {}", i);
                }
            }
            Ranges::Unsatisfiable => prop_assert!((0..len).all(|i| !asked(i))),
            Ranges::Whole => prop_assert!(!ascending, "valid ascending specs are answered"),
        }
    }
}
