//! Cache keys: the primary key names the resource as requested from the origin; a
//! response that varies is stored under a secondary key that adds the values of the
//! request fields it varies on (RFC 9111 §4.1).

use std::sync::Arc;

use crate::http::headers::trim;
use crate::http::target::Destination;

/// The origin connected to, the Host it was sent and the target: what the origin saw.
/// A space separates them: it cannot occur in any of the three (an authority and a
/// request target have none), so two different requests never share a key. A
/// destination the client named (the forward proxy) is kept apart from one the config
/// names, even for the same origin: a forward request must never be answered with what
/// a reverse route fetched (from a place the destination rules may deny, for clients
/// its route may not allow).
pub fn primary(dest: &Destination) -> Arc<str> {
    let mut key = String::new();
    write_primary(dest, &mut key);
    key.into()
}

/// `primary` into `key` (emptied first), reusing its memory: a lookup needs no new
/// string.
pub fn write_primary(dest: &Destination, key: &mut String) {
    key.clear();
    if dest.screened {
        key.push_str(FORWARD);
    }
    dest.origin.push_to(key);
    key.push(SEP);
    key.push_str(&dest.host_field);
    key.push(SEP);
    key.push_str(&dest.path);
}

/// The mark of a forward-proxy key: `^` occurs in no host name, so no origin's own
/// key can begin with it.
const FORWARD: &str = "fwd^";

const SEP: char = ' ';

/// The same URL's key in the other namespace (forward proxy and reverse routes keep
/// apart; what invalidates one copy invalidates the other).
pub fn twin(primary: &str) -> String {
    match primary.strip_prefix(FORWARD) {
        Some(rest) => rest.to_string(),
        None => format!("{FORWARD}{primary}"),
    }
}

/// The Host part of a primary key.
pub fn host_of(primary: &str) -> &str {
    primary.split(SEP).nth(1).unwrap_or("")
}

/// The primary key of another target (origin-form `path`) on the same origin and Host.
pub fn with_path(primary: &str, path: &str) -> Option<String> {
    if !path.starts_with('/') || path.contains(SEP) {
        return None;
    }
    let end = primary.rfind(SEP)?;
    Some(format!("{}{path}", &primary[..=end]))
}

/// The key of the variant selected by a request's values of `names` (lower-cased).
/// Values are normalised as §4.1 allows: fields of one name joined by commas, the
/// whitespace around list commas dropped. An absent field and an empty one differ.
pub fn variant<'a>(
    primary: &str,
    names: &[Box<str>],
    request: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Arc<str> {
    let mut key = String::with_capacity(primary.len() + 32 * names.len());
    write_variant(primary, names, request, &mut key);
    key.into()
}

/// `variant` into `key` (emptied first), reusing its memory.
pub fn write_variant<'a>(
    primary: &str,
    names: &[Box<str>],
    request: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    key: &mut String,
) {
    key.clear();
    key.push_str(primary);
    for name in names {
        key.push('\n');
        key.push_str(name);
        let values = request
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        let ordered = &**name == "accept-language";
        if is_preference_list(name) && write_preferences(values, ordered, key) {
            continue;
        }
        let mut present = false;
        for (_, v) in request
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            key.push(if present { ',' } else { '=' });
            present = true;
            for (i, item) in v.split(|&b| b == b',').enumerate() {
                if i > 0 {
                    key.push(',');
                }
                push_escaped(key, trim(item));
            }
        }
    }
}

/// Fields whose value is a list of case-insensitive tokens weighted by `q`, where
/// neither case, nor spaces, nor where an item stands among items of other weights, nor
/// the spelling of a weight (`q=1`, `q=1.000`) changes what the client prefers (RFC 9110
/// §12.4.2, §12.5.3–12.5.4): requests that differ only so share one variant. Equally
/// weighted languages keep their order, which many servers read as a preference
/// (§12.5.4); equally weighted codings and charsets are put in order of name.
fn is_preference_list(name: &str) -> bool {
    matches!(
        name,
        "accept-language" | "accept-encoding" | "accept-charset"
    )
}

/// At most this many items are normalised; a longer list is keyed as sent.
const PREFERENCES_MAX: usize = 32;

/// The items of `values` as `token;q=N` (N in thousandths), lower-cased, heaviest first,
/// equals in the request's order (`ordered`) or by name, a repeated token once, after a
/// `~` (a raw value follows `=`, so the two forms never meet). False, with nothing
/// written, when an item is not of the form (an
/// invalid weight, a parameter other than q) or there are too many: the caller keys
/// the value as sent.
fn write_preferences<'a>(
    values: impl Iterator<Item = &'a [u8]> + Clone,
    ordered: bool,
    key: &mut String,
) -> bool {
    if values.clone().next().is_none() {
        return true; // absent: only the name, as for any field
    }
    let mut items: [(&[u8], u16); PREFERENCES_MAX] = [(&[], 0); PREFERENCES_MAX];
    let mut n = 0;
    for item in values.flat_map(|v| v.split(|&b| b == b',')).map(trim) {
        if item.is_empty() {
            continue;
        }
        let Some(parsed) = preference(item) else {
            return false;
        };
        if n == PREFERENCES_MAX {
            return false;
        }
        items[n] = parsed;
        n += 1;
    }
    let items = &mut items[..n];
    // Heaviest first, equals in the request's order: an insertion sort, stable and
    // without the allocation a library stable sort may make (this runs on hits).
    let before = |a: (&[u8], u16), b: (&[u8], u16)| {
        let (la, lb) = (
            a.0.iter().map(u8::to_ascii_lowercase),
            b.0.iter().map(u8::to_ascii_lowercase),
        );
        a.1 > b.1 || (!ordered && a.1 == b.1 && la.lt(lb))
    };
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && before(items[j], items[j - 1]) {
            items.swap(j - 1, j);
            j -= 1;
        }
    }
    key.push('~');
    for (i, &(token, q)) in items.iter().enumerate() {
        if items[..i]
            .iter()
            .any(|(t, _)| t.eq_ignore_ascii_case(token))
        {
            continue;
        }
        if i > 0 {
            key.push(',');
        }
        for &b in token {
            push_escaped_byte(key, b.to_ascii_lowercase());
        }
        key.push_str(";q=");
        push_decimal(key, q);
    }
    true
}

/// One `token[;q=weight]` item: the token and the weight in thousandths.
fn preference(item: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = item.split(|&b| b == b';').map(trim);
    let token = parts.next().filter(|t| !t.is_empty())?;
    let mut q = 1000;
    for param in parts {
        let (name, value) = param.split_at(param.iter().position(|&b| b == b'=')?);
        if !trim(name).eq_ignore_ascii_case(b"q") {
            return None;
        }
        q = qvalue(trim(&value[1..]))?;
    }
    Some((token, q))
}

/// RFC 9110 §12.4.2 `qvalue` in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn push_decimal(key: &mut String, n: u16) {
    use std::fmt::Write as _;
    let _ = write!(key, "{n}");
}

/// A value's bytes, all of them kept apart: visible ASCII as it is, anything else (and
/// `%`, and the separators) as `%XX`, so two different values never give one key.
fn push_escaped(key: &mut String, value: &[u8]) {
    for &b in value {
        push_escaped_byte(key, b);
    }
}

fn push_escaped_byte(key: &mut String, b: u8) {
    if b.is_ascii_graphic() && !matches!(b, b'%' | b',' | b'=' | b';' | b'~') || b == b' ' {
        key.push(char::from(b));
    } else {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        key.push('%');
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 15)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::target::Authority;

    #[test]
    fn values_that_are_not_utf8_select_different_variants() {
        let names: Vec<Box<str>> = vec!["cookie".into()];
        let key = |v: &'static [u8]| variant("p", &names, [("Cookie", v)].into_iter());
        assert_ne!(key(b"\xff"), key(b"\xfe"));
        assert_ne!(key(b"\xff"), key("\u{fffd}".as_bytes()));
    }

    #[test]
    fn a_forward_request_never_shares_a_key_with_a_route() {
        let dest = |screened| Destination {
            origin: Authority {
                host: "localhost".into(),
                port: 8080,
            },
            host_field: "localhost:8080".into(),
            path: "/admin/x".into(),
            screened,
        };
        assert_ne!(primary(&dest(true)), primary(&dest(false)));
        assert_eq!(twin(&primary(&dest(true))), &*primary(&dest(false)));
        assert_eq!(twin(&primary(&dest(false))), &*primary(&dest(true)));
        assert_eq!(host_of(&primary(&dest(true))), "localhost:8080");
    }

    #[test]
    fn primary_keys_of_different_requests_differ() {
        let key = |host_field: &str, path: &str| {
            primary(&Destination {
                origin: Authority {
                    host: "o".into(),
                    port: 80,
                },
                host_field: host_field.into(),
                path: path.into(),
                screened: true,
            })
        };
        assert_ne!(key("a:80/x", "/y"), key("a:80", "/x/y"));
        assert_ne!(key("a", "?q"), key("a?q", ""));
        let k = key("a:8080", "/x?y");
        assert_eq!(host_of(&k), "a:8080");
        assert_eq!(with_path(&k, "/z").as_deref(), Some(&*key("a:8080", "/z")));
        assert_eq!(with_path(&k, "z"), None);
    }

    fn k(fields: &[(&'static str, &'static str)]) -> Arc<str> {
        let names: Vec<Box<str>> = vec!["accept-encoding".into(), "accept-language".into()];
        variant("p", &names, fields.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn preference_lists_match_whatever_their_case_order_and_weight_spelling() {
        let lang = |v: &'static str| k(&[("Accept-Language", v)]);
        assert_eq!(lang("en-US, fr;q=0.5"), lang("FR; Q=0.500 ,en-us;q=1.0"));
        assert_ne!(lang("de, en"), lang("en,de"), "equals keep their order");
        assert_eq!(lang("de;q=0.5, en"), lang("en, de;q=0.5"));
        assert_eq!(lang("en, de"), lang("en, de, en"));
        assert_eq!(
            k(&[("Accept-Language", "de"), ("Accept-Language", "en")]),
            lang("de, en")
        );
        assert_ne!(lang("de;q=0.9, en"), lang("de, en;q=0.9"));
        assert_ne!(lang("de"), lang("de;q=0"));
        assert_ne!(lang("de"), lang(""));
        assert_ne!(k(&[]), lang(""));
        // Not of the form: keyed as sent (case and all), never as a normalised list.
        assert_ne!(lang("de;q=2"), lang("DE;q=2"));
        assert_ne!(lang("de;q=2"), lang("de"));
        assert_ne!(lang("de;x=1"), lang("de"));
        assert_eq!(
            k(&[("Accept-Encoding", "GZIP, br;q=0.8")]),
            k(&[("Accept-Encoding", "br;q=0.80,gzip")])
        );
        assert_ne!(lang("de;q=.8"), lang("de;q=0.8"), "not a qvalue");
    }

    #[test]
    fn variants_match_on_normalised_values() {
        assert_eq!(
            k(&[("Accept-Encoding", "gzip, br")]),
            k(&[("accept-encoding", "gzip,br"), ("X-Other", "1")])
        );
        assert_ne!(
            k(&[("Accept-Encoding", "gzip")]),
            k(&[("Accept-Encoding", "br")])
        );
        assert_ne!(k(&[]), k(&[("Accept-Encoding", "")]));
        assert_ne!(
            k(&[("Accept-Encoding", "a,b")]),
            k(&[("Accept-Encoding", "a%2Cb")])
        );
        assert_eq!(
            k(&[("Accept-Encoding", "gzip"), ("Accept-Encoding", "br")]),
            k(&[("Accept-Encoding", "gzip, br")])
        );
    }
}
