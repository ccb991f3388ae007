//! The destination rules as a pure function: address in, verdict out. No packet is
//! sent to any of these addresses (they are the ones a proxy must never reach).

use super::*;
use crate::access::numeric::numeric_host;
use crate::access::prefix::parse_prefix;

fn prefixes(list: &[&str]) -> Vec<Prefix> {
    list.iter()
        .map(|p| parse_prefix(p).expect("prefix"))
        .collect()
}

fn shipped() -> DestinationRules {
    DestinationRules::new(
        prefixes(&DEFAULT_DENIED),
        Vec::new(),
        DEFAULT_PORTS
            .iter()
            .map(|p| parse_port_range(p).expect("ports"))
            .collect(),
    )
}

fn at(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(numeric_host(host).expect("numeric"), port)
}

#[test]
fn the_shipped_rules_deny_loopback_link_local_metadata_and_multicast() {
    let rules = shipped();
    for host in [
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "127.1",
        "127.255.0.9",
        "::1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "0.0.0.0",
        "0",
        "::",
        "169.254.169.254",
        "0xa9fea9fe",
        "169.254.1.1",
        "fe80::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "::ffff:169.254.169.254",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
    ] {
        let verdict = rules.check(at(host, 80), &[]);
        assert!(
            matches!(verdict, Err(Denied::Address { .. })),
            "{host}: {verdict:?}"
        );
    }
}

#[test]
fn public_and_private_addresses_pass_the_shipped_rules() {
    let rules = shipped();
    for host in [
        "93.184.215.14",
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",
        "2001:db8::1",
        "::ffff:93.184.215.14",
        "fd00::1",
    ] {
        assert_eq!(rules.check(at(host, 443), &[]), Ok(()), "{host}");
    }
}

#[test]
fn ports_outside_the_list_are_denied() {
    let rules = shipped();
    for port in [22, 25, 1, 1024] {
        assert_eq!(rules.check_port(port), Err(Denied::Port(port)));
    }
    for port in [80, 443, 1025, 8080, 65535] {
        assert_eq!(rules.check_port(port), Ok(()));
    }
    for bad in ["0", "70000", "9-8", "x", "", "1-"] {
        assert_eq!(parse_port_range(bad), None, "{bad}");
    }
    assert_eq!(parse_port_range("1025-65535"), Some((1025, 65535)));
}

#[test]
fn allowed_prefixes_are_exceptions_to_the_denied_ones() {
    let rules = DestinationRules::new(
        prefixes(&DEFAULT_DENIED),
        prefixes(&["127.0.0.0/8"]),
        vec![(1, 65535)],
    );
    assert_eq!(rules.check(at("127.0.0.1", 8080), &[]), Ok(()));
    assert_eq!(rules.check(at("::ffff:127.0.0.1", 8080), &[]), Ok(()));
    // The exception is for loopback only: the metadata service stays out.
    assert!(rules.check(at("169.254.169.254", 80), &[]).is_err());
    assert!(rules.check(at("::1", 80), &[]).is_err());
}

#[test]
fn the_proxy_s_own_listener_is_denied_even_when_allowed() {
    let rules = DestinationRules::new(
        prefixes(&DEFAULT_DENIED),
        prefixes(&["0.0.0.0/0"]),
        vec![(1, 65535)],
    );
    let own = own_addresses(&["127.0.0.1:3128".parse().expect("addr")], &[]);
    let to = at("127.0.0.1", 3128);
    assert_eq!(rules.check(to, &own), Err(Denied::Own(to)));
    assert!(rules.check(at("::ffff:127.0.0.1", 3128), &own).is_err());
    assert_eq!(rules.check(at("127.0.0.1", 3129), &own), Ok(()));
    // A wildcard listener is every local address at its port.
    let local = ["192.0.2.7".parse().expect("ip")];
    let own = own_addresses(&["0.0.0.0:3128".parse().expect("addr")], &local);
    assert!(matches!(
        rules.check(at("192.0.2.7", 3128), &own),
        Err(Denied::Own(_))
    ));
    assert_eq!(rules.check(at("192.0.2.8", 3128), &own), Ok(()));
    // ... and every loopback address, whichever the interfaces listed.
    for host in ["127.0.0.2", "::1", "::ffff:127.9.9.9", "0.0.0.0"] {
        assert!(
            matches!(rules.check(at(host, 3128), &own), Err(Denied::Own(_))),
            "{host}"
        );
    }
}

#[test]
fn a_denial_names_the_rule_and_the_key() {
    let rules = shipped();
    let text = rules
        .check(at("169.254.169.254", 80), &[])
        .expect_err("denied")
        .to_string();
    assert!(text.contains("169.254.0.0/16"), "{text}");
    assert!(text.contains("forward.destinations_denied"), "{text}");
    let text = rules.check_port(22).expect_err("denied").to_string();
    assert!(text.contains("forward.ports_allowed"), "{text}");
}

#[test]
fn local_addresses_include_loopback() {
    let local = local_addresses();
    assert!(local.contains(&"127.0.0.1".parse().expect("ip")));
}
