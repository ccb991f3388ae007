//! Address prefixes (`10.0.0.0/8`, `fc00::/7`, a bare address) and membership.

use std::net::IpAddr;

/// A network and its prefix length.
pub type Prefix = (IpAddr, u8);

/// Parses `10.0.0.0/8` (or a bare address) into a network and prefix length.
pub fn parse_prefix(s: &str) -> Option<Prefix> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, b.parse().ok()?),
        None => (s, if s.contains(':') { 128 } else { 32 }),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

/// `addr` is inside `net/bits` (IPv4 against IPv4, IPv6 against IPv6).
pub fn in_prefix(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(p), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(p) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(p), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(p) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_match() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let (net, bits) = parse_prefix("10.0.0.0/8").expect("v4");
        assert!(in_prefix(ip("10.200.1.1"), net, bits));
        assert!(!in_prefix(ip("11.0.0.1"), net, bits));
        let (net, bits) = parse_prefix("fc00::/7").expect("v6");
        assert!(in_prefix(ip("fd12::1"), net, bits));
        assert!(!in_prefix(ip("fe80::1"), net, bits));
        assert!(!in_prefix(ip("10.0.0.1"), net, bits), "families never mix");
        assert_eq!(parse_prefix("::1"), Some((ip("::1"), 128)));
        assert_eq!(parse_prefix("0.0.0.0/0").map(|p| p.1), Some(0));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert_eq!(parse_prefix(bad), None, "{bad}");
        }
    }
}
