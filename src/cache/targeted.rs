//! Targeted cache control (RFC 9213): a response field such as `CDN-Cache-Control`,
//! aimed at a class of caches, replaces Cache-Control (and Expires) for the caches it
//! targets. Its value is a structured-field dictionary (RFC 9651), parsed by `sfv`; a
//! field that does not parse, or is empty, is ignored and the next one (or
//! Cache-Control) applies.

use sfv::{BareItem, Dictionary, ListEntry, Parser};

use super::control::{CacheControl, DELTA_SECONDS_MAX, Delta};

/// This cache's directives for a response: from the first of `targeted` (lower-cased
/// names, in precedence order) present with a valid, non-empty value, else from
/// Cache-Control. A targeted field's directives are the whole caching policy (§2.2), but
/// no-transform is not caching policy: Cache-Control's still binds every intermediary.
pub fn response_control<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    targeted: &[String],
) -> CacheControl {
    let general = CacheControl::from_fields(fields.clone());
    for name in targeted {
        if let Some(mut cc) = parse_field(fields.clone(), name) {
            cc.no_transform |= general.no_transform;
            return cc;
        }
    }
    general
}

/// The directives of every line of field `name`, joined as one dictionary (RFC 9651
/// §4.2); None when it is absent, empty or not a valid dictionary.
fn parse_field<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    name: &str,
) -> Option<CacheControl> {
    let mut joined: Vec<u8> = Vec::new();
    for (_, v) in fields.filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(v);
    }
    if joined.iter().all(|b| matches!(b, b' ' | b'\t' | b',')) {
        return None;
    }
    let dict: Dictionary = Parser::new(&joined).parse().ok()?;
    Some(from_dictionary(&dict))
}

/// Directives whose value is not what their definition infers (an integer for the
/// delta-seconds ones) are not used (RFC 9213 §2.1).
fn from_dictionary(dict: &Dictionary) -> CacheControl {
    let seconds = |key: &str| match dict.get(key)? {
        ListEntry::Item(item) => match item.bare_item {
            BareItem::Integer(n) => {
                let n = i64::from(n);
                (n >= 0).then(|| Delta::Seconds((n as u64).min(DELTA_SECONDS_MAX)))
            }
            _ => None,
        },
        ListEntry::InnerList(_) => None,
    };
    // A flag is set by a bare key (true) or, like Cache-Control's field-qualified
    // private and no-cache, by any value but false.
    let flag = |key: &str| match dict.get(key) {
        None => false,
        Some(ListEntry::Item(item)) => !matches!(item.bare_item, BareItem::Boolean(false)),
        Some(ListEntry::InnerList(_)) => true,
    };
    CacheControl {
        max_age: seconds("max-age"),
        s_maxage: seconds("s-maxage"),
        stale_while_revalidate: seconds("stale-while-revalidate"),
        stale_if_error: seconds("stale-if-error"),
        no_cache: flag("no-cache"),
        no_store: flag("no-store"),
        no_transform: flag("no-transform"),
        public: flag("public"),
        private: flag("private"),
        must_revalidate: flag("must-revalidate"),
        proxy_revalidate: flag("proxy-revalidate"),
        must_understand: flag("must-understand"),
        immutable: flag("immutable"),
        targeted: true,
        ..CacheControl::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(list: &[(&'static str, &'static str)]) -> CacheControl {
        let names = [
            "distilld-cache-control".to_string(),
            "cdn-cache-control".to_string(),
        ];
        response_control(list.iter().map(|(n, v)| (*n, v.as_bytes())), &names)
    }

    #[test]
    fn the_first_valid_targeted_field_replaces_cache_control() {
        let c = control(&[
            ("Cache-Control", "no-store, no-transform"),
            ("CDN-Cache-Control", "max-age=600, must-revalidate"),
        ]);
        assert!(c.targeted && !c.no_store && c.must_revalidate && c.no_transform);
        assert_eq!(c.max_age, Some(Delta::Seconds(600)));
        let c = control(&[
            ("CDN-Cache-Control", "max-age=600"),
            ("Distilld-Cache-Control", "no-store"),
        ]);
        assert!(c.no_store && c.max_age.is_none(), "ours comes first");
        let c = control(&[
            ("cdn-cache-control", "private=(\"set-cookie\")"),
            ("CDN-Cache-Control", "s-maxage=5"),
        ]);
        assert!(c.private, "field-qualified private is private");
        assert_eq!(c.s_maxage, Some(Delta::Seconds(5)), "lines joined");
    }

    #[test]
    fn an_invalid_or_empty_targeted_field_is_ignored() {
        for bad in ["max-age=600 junk", "Max-Age=600", "", "  ", "max-age=\"600"] {
            let c = control(&[("Cache-Control", "max-age=5"), ("CDN-Cache-Control", bad)]);
            assert!(!c.targeted, "{bad:?}");
            assert_eq!(c.max_age, Some(Delta::Seconds(5)), "{bad:?}");
        }
        let c = control(&[
            ("Distilld-Cache-Control", "max-age=??"),
            ("CDN-Cache-Control", "max-age=7"),
        ]);
        assert_eq!(c.max_age, Some(Delta::Seconds(7)), "the next valid one");
    }

    #[test]
    fn values_of_the_wrong_type_are_not_used() {
        let c = control(&[(
            "CDN-Cache-Control",
            "max-age=1.5, s-maxage=\"9\", stale-if-error=-1, no-store=?0, none",
        )]);
        assert!(c.targeted);
        assert_eq!(
            (c.max_age, c.s_maxage, c.stale_if_error),
            (None, None, None)
        );
        assert!(!c.no_store);
        let c = control(&[("CDN-Cache-Control", "max-age=99999999999")]);
        assert_eq!(c.max_age, Some(Delta::Seconds(DELTA_SECONDS_MAX)));
    }
}
