//! HTTP dates as a recipient must read them (RFC 9110 §5.6.7): all three formats
//! (IMF-fixdate, the obsolete RFC 850 and asctime forms), with day and month names in
//! any letter case, since senders that get the case wrong exist and an unreadable
//! Expires would count as "already expired".

/// Longest date accepted (an RFC 850 date with the longest day name is 33 bytes).
const DATE_BYTES_MAX: usize = 40;

/// Seconds since the UNIX epoch, or None when `value` is not an HTTP date.
pub fn parse_http_date(value: &[u8]) -> Option<u64> {
    let value = crate::http::headers::trim(value);
    if value.len() > DATE_BYTES_MAX || !value.is_ascii() {
        return None;
    }
    let mut canonical = [0u8; DATE_BYTES_MAX];
    let canonical = &mut canonical[..value.len()];
    canonicalise_case(value, canonical);
    let text = std::str::from_utf8(canonical).ok()?;
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

/// Every run of letters as the grammar spells it: `GMT` in capitals, names with a
/// capital first letter.
fn canonicalise_case(value: &[u8], out: &mut [u8]) {
    let mut run_start = 0;
    for (i, &b) in value.iter().enumerate() {
        if !b.is_ascii_alphabetic() {
            out[i] = b;
            run_start = i + 1;
            continue;
        }
        out[i] = if i == run_start {
            b.to_ascii_uppercase()
        } else {
            b.to_ascii_lowercase()
        };
    }
    for run in out.split_mut(|b| !b.is_ascii_alphabetic()) {
        if run.eq_ignore_ascii_case(b"gmt") {
            run.copy_from_slice(b"GMT");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    #[test]
    fn all_three_formats_in_any_case() {
        for v in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUNDAY, 06-NOV-94 08:49:37 GMT",
            "SUN NOV  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse_http_date(v.as_bytes()), Some(T), "{v}");
        }
    }

    #[test]
    fn what_is_not_a_date_is_none() {
        for v in [
            "0",
            "-1",
            "",
            "Mon, 06 Nov 1994 08:49:37 GMT", // the wrong day of the week
            "Sun, 06 Nov 1994 08:49:37 GMT and more text that runs on",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sün, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(v.as_bytes()), None, "{v}");
        }
    }
}
