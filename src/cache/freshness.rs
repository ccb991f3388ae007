//! RFC 9111 freshness for a shared cache, as plain arithmetic on UNIX seconds: may a
//! response be stored (§3), how long it stays fresh (§4.2.1–4.2.2), how old it is
//! (§4.2.3), and whether a request may be answered with it (§4.2.4, §5.2, RFC 5861).
//! No clock is read here: the caller passes `now`.

use thiserror::Error;

use super::control::CacheControl;

/// Status codes a cache may store without explicit freshness (RFC 9110 §15.1).
pub const HEURISTICALLY_CACHEABLE: [u16; 12] =
    [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// What a stored response carries about time, in seconds since the UNIX epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// When the request that fetched it was sent, and when its response arrived.
    pub request_time: u64,
    pub response_time: u64,
    pub date: Option<u64>,
    pub age: Option<u64>,
    /// `Some(None)` for an Expires field that is present but not a valid date (§5.3:
    /// it means "already expired").
    pub expires: Option<Option<u64>>,
    pub last_modified: Option<u64>,
}

/// Limits on heuristic freshness (§4.2.2): a fraction of the time since Last-Modified,
/// capped.
#[derive(Debug, Clone, Copy)]
pub struct Heuristic {
    pub percent: u64,
    pub max_secs: u64,
}

impl Default for Heuristic {
    fn default() -> Self {
        Heuristic {
            percent: 10,
            max_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NotStorable {
    #[error("method is not GET")]
    Method,
    #[error("status {0} is not storable")]
    Status(u16),
    #[error("no-store")]
    NoStore,
    #[error("private")]
    Private,
    #[error("request carried Authorization and the response does not allow sharing it")]
    Authorization,
    #[error("no explicit freshness and a status that is not heuristically cacheable")]
    NoFreshness,
}

/// May a shared cache store this response (§3, §3.5)?
pub fn storable(
    method: &str,
    status: u16,
    request: &CacheControl,
    response: &CacheControl,
    times: &Times,
    had_authorization: bool,
) -> Result<(), NotStorable> {
    if method != "GET" {
        return Err(NotStorable::Method);
    }
    if !(200..600).contains(&status) || matches!(status, 206 | 304) {
        return Err(NotStorable::Status(status));
    }
    if request.no_store || response.no_store {
        return Err(NotStorable::NoStore);
    }
    if response.private {
        return Err(NotStorable::Private);
    }
    if had_authorization
        && !(response.public || response.must_revalidate || response.s_maxage.is_some())
    {
        return Err(NotStorable::Authorization);
    }
    let explicit = response.public
        || response.max_age.is_some()
        || response.s_maxage.is_some()
        || (times.expires.is_some() && !response.targeted);
    if !explicit && !HEURISTICALLY_CACHEABLE.contains(&status) {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// How long the response is fresh, in seconds (§4.2.1), for a shared cache.
pub fn lifetime(response: &CacheControl, times: &Times, status: u16, heuristic: Heuristic) -> u64 {
    if let Some(s) = response.s_maxage {
        return s.seconds();
    }
    if let Some(m) = response.max_age {
        return m.seconds();
    }
    if let Some(expires) = times.expires.filter(|_| !response.targeted) {
        let date = times.date.unwrap_or(times.response_time);
        return expires.map_or(0, |e| e.saturating_sub(date));
    }
    // §4.2.2: heuristics for the statuses so defined, and for any other marked public
    // but an error (a public error page with an old Last-Modified is not kept for a day).
    let heuristic_allowed =
        HEURISTICALLY_CACHEABLE.contains(&status) || (response.public && status < 400);
    match times.last_modified {
        Some(lm) if heuristic_allowed => {
            let date = times.date.unwrap_or(times.response_time);
            let since = date.saturating_sub(lm);
            (since.saturating_mul(heuristic.percent) / 100).min(heuristic.max_secs)
        }
        _ => 0,
    }
}

/// Seconds of freshness left (negative once stale), for Cache-Status `ttl`.
pub fn ttl(lifetime: u64, age: u64) -> i64 {
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    signed(lifetime).saturating_sub(signed(age))
}

/// The response's current age at `now`, in seconds (§4.2.3).
pub fn current_age(times: &Times, now: u64) -> u64 {
    let apparent = times
        .date
        .map_or(0, |d| times.response_time.saturating_sub(d));
    let delay = times.response_time.saturating_sub(times.request_time);
    let corrected = times.age.unwrap_or(0).saturating_add(delay);
    let initial = apparent.max(corrected);
    initial.saturating_add(now.saturating_sub(times.response_time))
}

/// What a cache may do with a stored response for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    /// Stale, but the client accepts it (max-stale).
    StaleAccepted,
    /// Stale within stale-while-revalidate: serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Must be validated with the origin first.
    Revalidate,
}

pub fn verdict(
    request: &CacheControl,
    response: &CacheControl,
    lifetime: u64,
    age: u64,
) -> Verdict {
    if request.no_cache || response.no_cache {
        return Verdict::Revalidate;
    }
    if request.max_age.is_some_and(|m| age > m.seconds()) {
        return Verdict::Revalidate;
    }
    if let Some(min_fresh) = request.min_fresh
        && lifetime.saturating_sub(age) < min_fresh.seconds()
    {
        return Verdict::Revalidate;
    }
    if age < lifetime {
        return Verdict::Fresh;
    }
    // A shared cache never serves stale past these (§5.2.2.2, §5.2.2.8, §5.2.2.10).
    if response.must_revalidate || response.proxy_revalidate || response.s_maxage.is_some() {
        return Verdict::Revalidate;
    }
    let staleness = age - lifetime;
    match request.max_stale {
        Some(None) => return Verdict::StaleAccepted,
        Some(Some(limit)) if staleness <= limit.seconds() => return Verdict::StaleAccepted,
        _ => {}
    }
    if response
        .stale_while_revalidate
        .is_some_and(|w| staleness <= w.seconds())
    {
        return Verdict::StaleWhileRevalidate;
    }
    Verdict::Revalidate
}

/// When revalidation failed (an error or 5xx from the origin), may the stale response
/// be served instead (RFC 5861 stale-if-error, from the response or the request)?
pub fn usable_on_error(
    request: &CacheControl,
    response: &CacheControl,
    lifetime: u64,
    age: u64,
) -> bool {
    if response.must_revalidate || response.proxy_revalidate || response.s_maxage.is_some() {
        return false;
    }
    let staleness = age.saturating_sub(lifetime);
    [request.stale_if_error, response.stale_if_error]
        .into_iter()
        .flatten()
        .any(|w| staleness <= w.seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_heuristics_saturate_at_the_extremes() {
        assert_eq!(ttl(u64::MAX, 0), i64::MAX);
        assert_eq!(ttl(0, u64::MAX), -i64::MAX);
        assert_eq!(ttl(60, 100), -40);
        let t = Times {
            response_time: u64::MAX,
            last_modified: Some(0),
            ..Times::default()
        };
        let h = Heuristic {
            percent: 100,
            max_secs: u64::MAX,
        };
        assert_eq!(
            lifetime(&CacheControl::default(), &t, 200, h),
            u64::MAX / 100
        );
    }
    use proptest::prelude::*;

    fn cc(v: &str) -> CacheControl {
        let mut c = CacheControl::default();
        c.add(v.as_bytes());
        c
    }

    const T0: u64 = 1_800_000_000;

    fn times() -> Times {
        Times {
            request_time: T0,
            response_time: T0,
            date: Some(T0),
            ..Times::default()
        }
    }

    #[test]
    fn lifetime_priority() {
        let h = Heuristic::default();
        let mut t = times();
        t.expires = Some(Some(T0 + 500));
        t.last_modified = Some(T0 - 100_000);
        assert_eq!(lifetime(&cc("s-maxage=10, max-age=20"), &t, 200, h), 10);
        assert_eq!(lifetime(&cc("max-age=20"), &t, 200, h), 20);
        assert_eq!(lifetime(&cc(""), &t, 200, h), 500);
        t.expires = Some(None);
        assert_eq!(
            lifetime(&cc(""), &t, 200, h),
            0,
            "invalid Expires = expired"
        );
        t.expires = None;
        assert_eq!(
            lifetime(&cc(""), &t, 200, h),
            10_000,
            "10% of the time since Last-Modified"
        );
        assert_eq!(
            lifetime(&cc(""), &t, 302, h),
            0,
            "302 is not heuristically cacheable"
        );
        assert_eq!(lifetime(&cc("public"), &t, 302, h), 10_000, "unless public");
        assert_eq!(lifetime(&cc("public"), &t, 503, h), 0, "but not an error");
        for status in HEURISTICALLY_CACHEABLE {
            assert_eq!(lifetime(&cc(""), &t, status, h), 10_000, "{status}");
        }
        t.last_modified = Some(T0 - 100 * 24 * 3600);
        assert_eq!(lifetime(&cc(""), &t, 200, h), 24 * 3600, "capped");
    }

    #[test]
    fn a_targeted_field_makes_expires_ignored() {
        let h = Heuristic::default();
        let mut t = times();
        t.expires = Some(Some(T0 + 500));
        let mut targeted = cc("stale-if-error=60");
        targeted.targeted = true;
        assert_eq!(lifetime(&cc("stale-if-error=60"), &t, 200, h), 500);
        assert_eq!(lifetime(&targeted, &t, 200, h), 0);
        let none = cc("");
        assert!(
            storable("GET", 302, &none, &cc(""), &t, false).is_ok(),
            "Expires is explicit"
        );
        assert_eq!(
            storable("GET", 302, &none, &targeted, &t, false),
            Err(NotStorable::NoFreshness),
            "not with a targeted field"
        );
    }

    #[test]
    fn age_arithmetic() {
        let t = Times {
            request_time: T0,
            response_time: T0 + 2,
            date: Some(T0 - 3),
            age: Some(10),
            ..Times::default()
        };
        // apparent 5, corrected 10 + 2 = 12 → initial 12; resident 8
        assert_eq!(current_age(&t, T0 + 10), 20);
    }

    #[test]
    fn storability() {
        let t = times();
        let none = cc("");
        assert_eq!(
            storable("POST", 200, &none, &cc("max-age=5"), &t, false),
            Err(NotStorable::Method)
        );
        assert_eq!(
            storable("GET", 200, &none, &cc("no-store"), &t, false),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable("GET", 200, &cc("no-store"), &none, &t, false),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable("GET", 200, &none, &cc("private, max-age=5"), &t, false),
            Err(NotStorable::Private)
        );
        assert_eq!(
            storable("GET", 200, &none, &cc("max-age=5"), &t, true),
            Err(NotStorable::Authorization)
        );
        assert!(storable("GET", 200, &none, &cc("max-age=5, public"), &t, true).is_ok());
        assert!(storable("GET", 200, &none, &cc("s-maxage=5"), &t, true).is_ok());
        assert_eq!(
            storable("GET", 302, &none, &none, &t, false),
            Err(NotStorable::NoFreshness)
        );
        assert!(storable("GET", 302, &none, &cc("max-age=5"), &t, false).is_ok());
        assert!(storable("GET", 404, &none, &none, &t, false).is_ok());
        assert_eq!(
            storable("GET", 206, &none, &cc("max-age=5"), &t, false),
            Err(NotStorable::Status(206))
        );
    }

    #[test]
    fn verdicts() {
        let none = cc("");
        assert_eq!(verdict(&none, &cc("max-age=60"), 60, 59), Verdict::Fresh);
        assert_eq!(
            verdict(&none, &cc("max-age=60"), 60, 60),
            Verdict::Revalidate
        );
        assert_eq!(verdict(&cc("no-cache"), &none, 60, 0), Verdict::Revalidate);
        assert_eq!(verdict(&none, &cc("no-cache"), 60, 0), Verdict::Revalidate);
        assert_eq!(
            verdict(&cc("max-age=10"), &none, 60, 11),
            Verdict::Revalidate
        );
        assert_eq!(
            verdict(&cc("min-fresh=30"), &none, 60, 31),
            Verdict::Revalidate
        );
        assert_eq!(verdict(&cc("min-fresh=30"), &none, 60, 30), Verdict::Fresh);
        assert_eq!(
            verdict(&cc("max-stale"), &none, 60, 1000),
            Verdict::StaleAccepted
        );
        assert_eq!(
            verdict(&cc("max-stale=5"), &none, 60, 65),
            Verdict::StaleAccepted
        );
        assert_eq!(
            verdict(&cc("max-stale=5"), &none, 60, 66),
            Verdict::Revalidate
        );
        assert_eq!(
            verdict(&cc("max-stale"), &cc("must-revalidate"), 60, 61),
            Verdict::Revalidate
        );
        assert_eq!(
            verdict(&cc("max-stale"), &cc("s-maxage=60"), 60, 61),
            Verdict::Revalidate
        );
        let swr = cc("max-age=60, stale-while-revalidate=30");
        assert_eq!(verdict(&none, &swr, 60, 90), Verdict::StaleWhileRevalidate);
        assert_eq!(verdict(&none, &swr, 60, 91), Verdict::Revalidate);
    }

    #[test]
    fn stale_if_error() {
        let none = cc("");
        assert!(usable_on_error(&none, &cc("stale-if-error=100"), 60, 160));
        assert!(!usable_on_error(&none, &cc("stale-if-error=100"), 60, 161));
        assert!(usable_on_error(&cc("stale-if-error=10"), &none, 60, 70));
        assert!(!usable_on_error(
            &cc("stale-if-error=10"),
            &cc("must-revalidate"),
            60,
            61
        ));
        assert!(!usable_on_error(&none, &none, 60, 61));
    }

    proptest! {
        #[test]
        fn age_grows_with_time_and_never_undercounts(
            req in 0u64..1_000, delay in 0u64..100, date_skew in -50i64..50, age in proptest::option::of(0u64..10_000),
            wait in 0u64..100_000, more in 0u64..1000,
        ) {
            let response_time = T0 + req + delay;
            let t = Times {
                request_time: T0 + req,
                response_time,
                date: Some((response_time as i64 + date_skew) as u64),
                age,
                ..Times::default()
            };
            let now = response_time + wait;
            let a = current_age(&t, now);
            prop_assert!(current_age(&t, now + more) == a + more);
            prop_assert!(a >= age.unwrap_or(0) + wait, "at least the Age field plus the time held");
        }

        #[test]
        fn fresh_exactly_while_younger_than_the_lifetime(lifetime in 0u64..10_000, age in 0u64..20_000) {
            let v = verdict(&CacheControl::default(), &CacheControl::default(), lifetime, age);
            prop_assert_eq!(v == Verdict::Fresh, age < lifetime);
        }
    }
}
