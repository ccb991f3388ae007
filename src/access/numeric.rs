//! Numeric hosts in every spelling a resolver accepts: `inet_aton`'s decimal, octal
//! (`0177.0.0.1`) and hex (`0x7f.1`) parts, its short forms (`127.1`, `2130706433`), and
//! IPv6 literals. getaddrinfo turns each of them into an address without asking DNS, so
//! the destination rules must see the address they mean, not the text.

use std::net::{IpAddr, Ipv4Addr};

/// The address `host` spells, if it is numeric; None for a name (which DNS resolves).
pub fn numeric_host(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    inet_aton(host).map(IpAddr::V4)
}

/// 1 to 4 parts: the last fills the bytes the others leave (`a`, `a.b` with b 24 bits,
/// `a.b.c` with c 16 bits, `a.b.c.d`), each part decimal, `0x` hex or `0` octal.
fn inet_aton(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = host.split('.').map(part).collect::<Option<_>>()?;
    let (last, lead) = parts.split_last()?;
    if lead.len() > 3 || lead.iter().any(|&p| p > 0xff) {
        return None;
    }
    let room = 8 * (4 - lead.len() as u32);
    if room < 32 && *last >> room != 0 {
        return None;
    }
    let high = lead
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &p)| acc | p << (24 - 8 * i as u32));
    Some(Ipv4Addr::from(high | last))
}

/// One part: `0x1f` hex, `017` octal, `17` decimal; anything else is not a number.
fn part(s: &str) -> Option<u32> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    // `0x` alone is 0 to inet_aton; an empty part ("1..2") is not a number.
    if digits.is_empty() {
        return (radix == 16).then_some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<IpAddr> {
        Some(IpAddr::V4(s.parse().expect("v4")))
    }

    #[test]
    fn every_spelling_of_loopback_is_loopback() {
        for spelled in [
            "127.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "0177.0.0.01",
            "0x7f.0.0.1",
            "0x7F000001",
            "0x7f.1",
            "127.1",
            "127.0.1",
            "0x7f.0x0.0x0.0x1",
            "017700000001",
        ] {
            assert_eq!(numeric_host(spelled), v4("127.0.0.1"), "{spelled}");
        }
        assert_eq!(numeric_host("0xa9fea9fe"), v4("169.254.169.254"));
        assert_eq!(numeric_host("169.254.43518"), v4("169.254.169.254"));
        assert_eq!(numeric_host("0"), v4("0.0.0.0"));
        assert_eq!(
            numeric_host("::ffff:127.0.0.1"),
            Some("::ffff:127.0.0.1".parse().expect("v6"))
        );
    }

    #[test]
    fn names_and_out_of_range_numbers_are_not_addresses() {
        for name in [
            "example.test",
            "deadbeef",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "08.0.0.1",
            "0x1g",
            "1..2",
            "",
            "127.0.0.1.",
            "-1",
            "+1",
        ] {
            assert_eq!(numeric_host(name), None, "{name}");
        }
    }
}
