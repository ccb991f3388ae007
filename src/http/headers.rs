//! Header-field rules shared by requests and responses: hop-by-hop removal, framing
//! headers (Content-Length, Transfer-Encoding) validated the strict way, because a proxy
//! that reads a length differently from the origin is a request-smuggling proxy.

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the
/// framing fields the proxy rewrites itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The comma-separated elements of a list-valued field, trimmed, empties skipped.
/// (A byte loop: these values are short, and memchr's setup per call cost a browser's
/// Accept more than it saved.)
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|s| !s.is_empty())
}

/// A list element's value (trimmed) and its parameters, all that follows its first
/// `;` (as sent): `image/webp;q=0.8` is `image/webp` and `q=0.8`.
pub fn value_and_params(item: &[u8]) -> (&[u8], &[u8]) {
    match item.iter().position(|&b| b == b';') {
        Some(i) => (trim(&item[..i]), &item[i + 1..]),
        None => (trim(item), &[]),
    }
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses a Content-Length value: ASCII digits only, no sign, no overflow. A list of
/// equal values ("5, 5") is accepted as one (RFC 9110 §8.6); differing values are not.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for item in list_items(value) {
        let n = parse_decimal(item)?;
        match result {
            Some(prev) if prev != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// A Content-Length that is not a number or disagrees with another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidLength;

/// Merges the Content-Length fields of one message.
pub fn merge_content_length(
    current: Option<u64>,
    value: &[u8],
) -> Result<Option<u64>, InvalidLength> {
    let n = parse_content_length(value).ok_or(InvalidLength)?;
    match current {
        Some(prev) if prev != n => Err(InvalidLength),
        _ => Ok(Some(n)),
    }
}

/// True when the last transfer coding of a Transfer-Encoding value is `chunked`.
pub fn chunked_is_last(value: &[u8]) -> bool {
    list_items(value)
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// What a Connection field says.
#[derive(Debug, Default, Clone)]
pub struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    /// Lower-cased names of further fields the sender marked hop-by-hop.
    pub named: Vec<String>,
}

impl ConnectionOptions {
    pub fn add(&mut self, value: &[u8]) {
        for token in list_items(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if let Ok(t) = std::str::from_utf8(token) {
                self.named.push(t.to_ascii_lowercase());
            }
        }
    }

    /// Heap bytes the list of names holds (a Connection field can name thousands).
    pub fn held_bytes(&self) -> usize {
        self.named.capacity() * std::mem::size_of::<String>()
            + self.named.iter().map(String::capacity).sum::<usize>()
    }

    /// Empty again, keeping the list's memory.
    pub fn clear(&mut self) {
        self.close = false;
        self.keep_alive = false;
        self.named.clear();
    }

    /// True when the field must not be forwarded: fixed hop-by-hop or named here.
    pub fn drops(&self, name: &str) -> bool {
        is_hop_by_hop(name) || self.named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Appends `name: value\r\n`.
pub fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number without allocating.
pub fn write_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `write_decimal` into a String.
pub fn push_decimal(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// `value_and_params` splits an element at its first `;`, the value trimmed.
        #[test]
        fn an_element_s_parameters_follow_its_first_semicolon(
            item in proptest::collection::vec(
                proptest::sample::select(b" ;\tq=a\"".to_vec()),
                0..40,
            )
        ) {
            let mut parts = item.splitn(2, |&b| b == b';');
            let first = trim(parts.next().unwrap_or_default());
            let rest = parts.next().unwrap_or_default();
            proptest::prop_assert_eq!(value_and_params(&item), (first, rest));
        }
    }

    #[test]
    fn content_length_is_strict() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(parse_content_length(b"5, 5"), Some(5));
        assert_eq!(parse_content_length(b"5, 6"), None);
        assert_eq!(parse_content_length(b"+5"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"0x10"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"18446744073709551616"), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn merge_detects_disagreement() {
        assert_eq!(merge_content_length(None, b"3"), Ok(Some(3)));
        assert_eq!(merge_content_length(Some(3), b"3"), Ok(Some(3)));
        assert_eq!(merge_content_length(Some(3), b"4"), Err(InvalidLength));
    }

    #[test]
    fn connection_names_extra_hop_by_hop_fields() {
        let mut c = ConnectionOptions::default();
        c.add(b"close, X-Secret , keep-alive");
        assert!(c.close && c.keep_alive);
        assert!(c.drops("x-secret"));
        assert!(c.drops("Upgrade"));
        assert!(!c.drops("Accept"));
    }

    #[test]
    fn chunked_must_be_last() {
        assert!(chunked_is_last(b"gzip, chunked"));
        assert!(chunked_is_last(b"Chunked"));
        assert!(!chunked_is_last(b"chunked, gzip"));
        assert!(!chunked_is_last(b""));
    }

    #[test]
    fn decimal_writer() {
        let mut v = Vec::new();
        write_decimal(&mut v, 0);
        v.push(b' ');
        write_decimal(&mut v, u64::MAX);
        assert_eq!(v, b"0 18446744073709551615");
    }
}
