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
    use std::fmt::Write as _;
    key.clear();
    if dest.screened {
        key.push_str(FORWARD);
    }
    let _ = write!(key, "{}", dest.origin);
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

/// A value's bytes, all of them kept apart: visible ASCII as it is, anything else (and
/// `%`, and the separators) as `%XX`, so two different values never give one key.
fn push_escaped(key: &mut String, value: &[u8]) {
    for &b in value {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b',' | b'=') || b == b' ' {
            key.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            key.push('%');
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 15)]));
        }
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
