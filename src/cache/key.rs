//! Cache keys: the primary key names the resource as requested from the origin; a
//! response that varies is stored under a secondary key that adds the values of the
//! request fields it varies on (RFC 9111 §4.1).

use std::sync::Arc;

use crate::http::headers::trim;
use crate::proxy::route::Destination;

/// The origin connected to, the Host it was sent and the target: what the origin saw.
pub fn primary(dest: &Destination) -> Arc<str> {
    format!("{}|{}{}", dest.origin, dest.host_field, dest.path).into()
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
                key.push_str(&String::from_utf8_lossy(trim(item)));
            }
        }
    }
    key.into()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            k(&[("Accept-Encoding", "gzip"), ("Accept-Encoding", "br")]),
            k(&[("Accept-Encoding", "gzip, br")])
        );
    }
}
