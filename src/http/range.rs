//! Byte ranges (RFC 9110 §14) as plain arithmetic: which bytes of a representation of
//! `len` bytes a `Range` field asks for, after the rules a server applies — an invalid
//! field is ignored, ranges that overlap or touch are merged (§14.2 allows it), parts
//! keep the order they were asked in, and a request for more pieces than allowed, or for
//! overlapping pieces out of order, gets the whole representation (§14.2 allows that).

/// One satisfiable range: bytes `start..end` (end exclusive, never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// What to answer a `Range` field with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// Not a byte range, invalid, or too many pieces: the whole representation (200).
    Whole,
    /// No range overlaps the representation: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
    /// These ranges (206), neither overlapping nor touching, in the order asked.
    Parts(Vec<ByteRange>),
}

/// The ranges of a `len`-byte representation that `value` (a Range field) selects;
/// more than `parts_max` range-specs are answered with the whole representation.
pub fn select(value: &[u8], len: u64, parts_max: usize) -> Ranges {
    let Some(specs) = strip_unit(value) else {
        return Ranges::Whole;
    };
    if len == 0 {
        // Nothing to cut, and no 206 can say so (§14.1.1): the whole, empty response.
        return Ranges::Whole;
    }
    let mut parts = Vec::new();
    let mut count = 0;
    for spec in specs.split(|&b| b == b',').map(super::headers::trim) {
        if spec.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1)
        }
        count += 1;
        if count > parts_max {
            return Ranges::Whole;
        }
        match parse_spec(spec) {
            None => return Ranges::Whole, // one invalid spec invalidates the field
            Some(spec) => parts.extend(spec.satisfiable(len)),
        }
    }
    if count == 0 {
        return Ranges::Whole;
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    match coalesce(parts) {
        Some(parts) => Ranges::Parts(parts),
        None => Ranges::Whole,
    }
}

/// The range-specs after `bytes=` (the unit is case-insensitive, §14.1).
fn strip_unit(value: &[u8]) -> Option<&[u8]> {
    let value = super::headers::trim(value);
    let eq = value.iter().position(|&b| b == b'=')?;
    super::headers::trim(&value[..eq])
        .eq_ignore_ascii_case(b"bytes")
        .then_some(&value[eq + 1..])
}

#[derive(Debug, Clone, Copy)]
enum Spec {
    /// `first-last` or `first-`.
    From { first: u64, last: Option<u64> },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl Spec {
    fn satisfiable(self, len: u64) -> Option<ByteRange> {
        let (start, end) = match self {
            Spec::From { first, .. } if first >= len => return None,
            Spec::From { first, last } => (first, last.map_or(len, |l| l.min(len - 1) + 1)),
            Spec::Suffix(0) => return None,
            Spec::Suffix(n) => (len.saturating_sub(n), len),
        };
        (start < end).then_some(ByteRange { start, end })
    }
}

fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (digits(first), digits(last)) {
        (None, Some(n)) if first.is_empty() => Some(Spec::Suffix(n)),
        (Some(first), None) if last.is_empty() => Some(Spec::From { first, last: None }),
        (Some(first), Some(last)) if last >= first => Some(Spec::From {
            first,
            last: Some(last),
        }),
        _ => None,
    }
}

/// 1*DIGIT; a number too large for u64 is read as u64::MAX (past any representation).
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Overlapping and adjacent ranges merged. Ranges asked in ascending order are merged
/// in place; ranges out of order are kept in their order when none overlaps or touches
/// another, and otherwise (None) are not worth a 206.
fn coalesce(parts: Vec<ByteRange>) -> Option<Vec<ByteRange>> {
    let ascending = parts.windows(2).all(|w| w[0].start <= w[1].start);
    let mut sorted = parts.clone();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match merged.last_mut() {
            Some(prev) if r.start <= prev.end => prev.end = prev.end.max(r.end),
            _ => merged.push(r),
        }
    }
    match (ascending, merged.len() == parts.len()) {
        (true, _) => Some(merged),
        (false, true) => Some(parts),
        (false, false) => None,
    }
}

/// RFC 9110 §13.1.5: does an `If-Range` value still name the stored representation?
/// An entity tag must match the stored ETag strongly; a date must equal a stored
/// Last-Modified that is strong, i.e. (§8.8.2.2, as an intermediate cache compares it)
/// at least 60 seconds older than the stored Date.
pub fn if_range_holds(
    value: &[u8],
    etag: Option<&[u8]>,
    last_modified: Option<&[u8]>,
    date: Option<&[u8]>,
) -> bool {
    let value = super::headers::trim(value);
    if value.first() == Some(&b'"') || value.starts_with(b"W/") {
        let strong = |t: &[u8]| t.first() == Some(&b'"');
        return strong(value) && etag.map(super::headers::trim) == Some(value);
    }
    use super::date::parse_http_date;
    let (Some(asked), Some(lm), Some(date)) = (
        parse_http_date(value),
        last_modified.and_then(parse_http_date),
        date.and_then(parse_http_date),
    ) else {
        return false;
    };
    asked == lm && date >= lm.saturating_add(60)
}

#[cfg(test)]
mod tests;
