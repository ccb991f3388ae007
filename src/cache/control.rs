//! Cache-Control (RFC 9111 §5.2), parsed once per message into the directives a shared
//! cache acts on. Names are case-insensitive; a value is a token or a quoted string.
//! An invalid or repeated delta-seconds makes the message count as stale (§4.2.1),
//! which is the safe reading.

use crate::http::headers::trim;

/// Largest delta-seconds honoured (RFC 9111 §1.2.2: 2^31).
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// A delta-seconds directive as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    Seconds(u64),
    /// Present but unusable (not a number, or given twice with different values).
    Invalid,
}

impl Delta {
    /// Seconds, with an unusable value read as zero (stale at once).
    pub fn seconds(self) -> u64 {
        match self {
            Delta::Seconds(s) => s,
            Delta::Invalid => 0,
        }
    }
}

/// The directives of one message's Cache-Control fields (all of them, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub max_age: Option<Delta>,
    pub s_maxage: Option<Delta>,
    pub max_stale: Option<Option<Delta>>,
    pub min_fresh: Option<Delta>,
    pub stale_while_revalidate: Option<Delta>,
    pub stale_if_error: Option<Delta>,
    pub no_cache: bool,
    pub no_store: bool,
    pub no_transform: bool,
    pub only_if_cached: bool,
    pub public: bool,
    pub private: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub immutable: bool,
    /// Read from a targeted field (RFC 9213), which also makes Expires ignored.
    pub targeted: bool,
}

impl CacheControl {
    /// Adds the directives of one Cache-Control field value.
    pub fn add(&mut self, value: &[u8]) {
        // A request's Cache-Control is read on every hit: names are lower-cased on the
        // stack, and one longer than any directive known here is one it ignores.
        let mut lower = [0u8; DIRECTIVE_NAME_MAX];
        for item in directives(value) {
            let (name, arg) = match item.iter().position(|&b| b == b'=') {
                Some(i) => (trim(&item[..i]), Some(unquote(trim(&item[i + 1..])))),
                None => (trim(item), None),
            };
            let name = match lower.get_mut(..name.len()) {
                Some(buf) => {
                    buf.copy_from_slice(name);
                    buf.make_ascii_lowercase();
                    &*buf
                }
                None => &[][..],
            };
            match name {
                b"max-age" => merge(&mut self.max_age, arg),
                b"s-maxage" => merge(&mut self.s_maxage, arg),
                b"min-fresh" => merge(&mut self.min_fresh, arg),
                b"stale-while-revalidate" => merge(&mut self.stale_while_revalidate, arg),
                b"stale-if-error" => merge(&mut self.stale_if_error, arg),
                b"max-stale" => {
                    self.max_stale = Some(arg.map(parse_delta));
                }
                // Field-qualified no-cache/private are treated as the unqualified
                // forms: stricter, and allowed by RFC 9111 §5.2.2.4 and §5.2.2.7.
                b"no-cache" => self.no_cache = true,
                b"no-store" => self.no_store = true,
                b"no-transform" => self.no_transform = true,
                b"only-if-cached" => self.only_if_cached = true,
                b"public" => self.public = true,
                b"private" => self.private = true,
                b"must-revalidate" => self.must_revalidate = true,
                b"proxy-revalidate" => self.proxy_revalidate = true,
                b"must-understand" => self.must_understand = true,
                b"immutable" => self.immutable = true,
                _ => {} // unknown directives are ignored (§5.2.3)
            }
        }
    }

    /// Parses every Cache-Control field among `fields`.
    pub fn from_fields<'a>(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> CacheControl {
        let mut cc = CacheControl::default();
        for (name, value) in fields {
            if name.eq_ignore_ascii_case("cache-control") {
                cc.add(value);
            }
        }
        cc
    }
}

/// The longest directive name `add` knows: a longer one is none of them.
const DIRECTIVE_NAME_MAX: usize = "stale-while-revalidate".len();

/// The directives of a field value: split on commas outside quoted strings (a
/// private="a, b" stays one directive), trimmed, empties skipped.
fn directives(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        loop {
            let v = rest?;
            let (item, after) = match unquoted_comma(v) {
                Some(i) => (&v[..i], Some(&v[i + 1..])),
                None => (v, None),
            };
            rest = after;
            let item = trim(item);
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

/// Where the first comma outside a quoted string is. A quote opens a string only where
/// an argument starts (after `=`), and only if it is closed: a stray or unclosed quote
/// must not hide the directives after it (`ext="x, no-store` still says no-store).
fn unquoted_comma(value: &[u8]) -> Option<usize> {
    // Only the directive's own `=` starts an argument: `x=y="a, no-store"` is malformed,
    // and its quote must not swallow the no-store.
    let (mut argument_starts, mut had_equals) = (false, false);
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        match b {
            b',' => return Some(i),
            b'"' if argument_starts => {
                if let Some(len) = quoted_len(&value[i + 1..]) {
                    i += len + 2;
                    argument_starts = false;
                    continue;
                }
                argument_starts = false;
            }
            b'=' => {
                argument_starts = !had_equals;
                had_equals = true;
            }
            b' ' | b'\t' => {}
            _ => argument_starts = false,
        }
        i += 1;
    }
    None
}

/// The length of a quoted string's content up to its closing quote (after the opening
/// one), with quoted-pairs (`\"`); `None` if it is not closed.
fn quoted_len(rest: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (i, &b) in rest.iter().enumerate() {
        match (b, escaped) {
            (_, true) => escaped = false,
            (b'\\', false) => escaped = true,
            (b'"', false) => return Some(i),
            _ => {}
        }
    }
    None
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

fn parse_delta(v: &[u8]) -> Delta {
    delta_seconds(v).map_or(Delta::Invalid, Delta::Seconds)
}

/// RFC 9111 §1.2.2 delta-seconds (Cache-Control arguments, Age): digits only, a value
/// past 2^31 (however long) read as 2^31, so later arithmetic cannot overflow.
pub fn delta_seconds(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v
        .iter()
        .try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .unwrap_or(u64::MAX);
    Some(n.min(DELTA_SECONDS_MAX))
}

fn merge(slot: &mut Option<Delta>, arg: Option<&[u8]>) {
    let new = arg.map_or(Delta::Invalid, parse_delta);
    *slot = match *slot {
        None => Some(new),
        Some(old) if old == new => Some(old),
        Some(_) => Some(Delta::Invalid),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(v: &str) -> CacheControl {
        let mut c = CacheControl::default();
        c.add(v.as_bytes());
        c
    }

    #[test]
    fn response_directives() {
        let c =
            cc("Public, max-age=60, s-maxage=\"120\", stale-while-revalidate=30, MUST-revalidate");
        assert!(c.public && c.must_revalidate);
        assert_eq!(c.max_age, Some(Delta::Seconds(60)));
        assert_eq!(c.s_maxage, Some(Delta::Seconds(120)));
        assert_eq!(c.stale_while_revalidate, Some(Delta::Seconds(30)));
    }

    #[test]
    fn quoted_commas_do_not_split() {
        let c = cc("private=\"set-cookie, x-a\", max-age=5");
        assert!(c.private);
        assert_eq!(c.max_age, Some(Delta::Seconds(5)));
        // What is quoted is an argument, never a directive of its own.
        let c = cc("no-cache=\"a, max-age=5\", ,, private");
        assert!(c.no_cache && c.private);
        assert_eq!(c.max_age, None);
        let c = cc("no-cache=\"a\\\", max-age=5\", public");
        assert!(c.no_cache && c.public);
        assert_eq!(c.max_age, None);
        // A quote that opens no argument, or is never closed, hides nothing after it.
        assert!(cc("ext=\"x, no-store").no_store);
        assert!(cc("foo=a\"b, private").private);
        assert!(cc("\"x, private, \"").private);
        assert!(cc("no-cache = \"a, b\" , no-store").no_store);
        assert!(cc("x=y=\"a, no-store, b\"").no_store);
        assert!(cc("no-cache=\"a\"=\"b, no-store, c\"").no_store);
    }

    #[test]
    fn names_are_read_in_any_case_and_long_ones_ignored() {
        let c = cc("STALE-WHILE-REVALIDATE=5, No-Store, stale-while-revalidatex=7");
        assert!(c.no_store);
        assert_eq!(c.stale_while_revalidate, Some(Delta::Seconds(5)));
        let c = cc(&format!("{}=1, immutable", "x".repeat(300)));
        assert!(c.immutable);
    }

    #[test]
    fn a_request_s_directives_are_read_without_allocating() {
        let (c, n) = crate::peak_alloc::allocations(|| {
            cc_fields("no-cache, max-stale=5, Min-Fresh=\"10\", private=\"a, b\"")
        });
        assert!(c.no_cache && c.private);
        assert_eq!(c.min_fresh, Some(Delta::Seconds(10)));
        assert_eq!(n, 0, "allocations");
    }

    fn cc_fields(v: &'static str) -> CacheControl {
        CacheControl::from_fields([("Cache-Control", v.as_bytes())].into_iter())
    }

    #[test]
    fn invalid_and_conflicting_values_are_stale() {
        assert_eq!(cc("max-age=abc").max_age.map(Delta::seconds), Some(0));
        assert_eq!(cc("max-age").max_age, Some(Delta::Invalid));
        assert_eq!(cc("max-age=5, max-age=6").max_age, Some(Delta::Invalid));
        assert_eq!(cc("max-age=5, max-age=5").max_age, Some(Delta::Seconds(5)));
        assert_eq!(
            cc("max-age=99999999999999999999").max_age,
            Some(Delta::Seconds(DELTA_SECONDS_MAX))
        );
        assert_eq!(
            delta_seconds(b"9223372036854775808"),
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(delta_seconds(b"+5"), None);
        assert_eq!(delta_seconds(b""), None);
        assert_eq!(delta_seconds(b"42"), Some(42));
    }

    #[test]
    fn request_directives() {
        let c = cc("no-cache, max-stale, min-fresh=10, only-if-cached");
        assert!(c.no_cache && c.only_if_cached);
        assert_eq!(c.max_stale, Some(None));
        assert_eq!(c.min_fresh, Some(Delta::Seconds(10)));
        assert_eq!(cc("max-stale=7").max_stale, Some(Some(Delta::Seconds(7))));
    }

    #[test]
    fn several_fields_merge() {
        let fields = [
            ("Cache-Control", &b"no-store"[..]),
            ("X", b"max-age=1"),
            ("cache-control", b"max-age=9"),
        ];
        let c = CacheControl::from_fields(fields.into_iter());
        assert!(c.no_store);
        assert_eq!(c.max_age, Some(Delta::Seconds(9)));
    }
}
