//! Where the forward proxy may connect: the destination rules, checked on the address
//! a request is about to be connected to (after DNS, so a name that resolves to
//! loopback or a rebinding answer cannot slip past), and the ports it may use. Without
//! them a forward proxy is an SSRF gadget: the cloud metadata service, the node's own
//! admin listener and every service bound to loopback would be one request away.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::prefix::{Prefix, in_prefix};

/// Denied unless `destinations_allowed` makes an exception: loopback, "this host",
/// link-local, the cloud metadata services, multicast and broadcast.
pub const DEFAULT_DENIED: [&str; 13] = [
    "127.0.0.0/8",
    "::1",
    "0.0.0.0/8",
    "::",
    "169.254.0.0/16",
    "fe80::/10",
    "169.254.169.254",
    "fd00:ec2::254",
    "100.100.100.200",
    "224.0.0.0/4",
    "ff00::/8",
    "255.255.255.255",
    "240.0.0.0/4",
];

/// The web's ports and the unprivileged ones; not SSH, SMTP, and the like.
pub const DEFAULT_PORTS: [&str; 3] = ["80", "443", "1025-65535"];

/// An inclusive range of ports.
pub type PortRange = (u16, u16);

/// Parses `"8080"` or `"1025-65535"` (no port 0, low end first).
pub fn parse_port_range(s: &str) -> Option<PortRange> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

/// Why a destination is refused: the rule, and the config key that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Port(u16),
    /// A CONNECT tunnel to a port not in `connect_ports`.
    ConnectPort(u16),
    Address {
        to: SocketAddr,
        rule: Prefix,
    },
    /// The proxy's own listener (a loop), whatever the lists say.
    Own(SocketAddr),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Port(port) => write!(f, "port {port} is not in forward.ports_allowed"),
            Denied::ConnectPort(port) => {
                write!(f, "port {port} is not in forward.connect_ports (CONNECT)")
            }
            Denied::Address {
                to,
                rule: (net, bits),
            } => write!(
                f,
                "{to} is in {net}/{bits} of forward.destinations_denied \
                 (forward.destinations_allowed makes exceptions)"
            ),
            Denied::Own(to) => write!(f, "{to} is this proxy's own listener (a request loop)"),
        }
    }
}

/// The rules of `[forward]` about destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRules {
    denied: Vec<Prefix>,
    allowed: Vec<Prefix>,
    ports: Vec<PortRange>,
}

impl DestinationRules {
    pub fn new(denied: Vec<Prefix>, allowed: Vec<Prefix>, ports: Vec<PortRange>) -> Self {
        DestinationRules {
            denied,
            allowed,
            ports,
        }
    }

    pub fn check_port(&self, port: u16) -> Result<(), Denied> {
        match self.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)) {
            true => Ok(()),
            false => Err(Denied::Port(port)),
        }
    }

    /// The address `to` about to be connected to (its port was checked when the request
    /// was routed: `check_port`, or `connect_ports` for a tunnel). `own`: the proxy's
    /// listening addresses (an unspecified IP stands for every local one).
    pub fn check(&self, to: SocketAddr, own: &[SocketAddr]) -> Result<(), Denied> {
        let forms = forms_of(to.ip());
        if own
            .iter()
            .any(|o| o.port() == to.port() && is_own(o.ip(), &forms))
        {
            return Err(Denied::Own(to));
        }
        for ip in forms.iter().flatten() {
            if self.allowed.iter().any(|&(n, b)| in_prefix(*ip, n, b)) {
                continue;
            }
            if let Some(&rule) = self.denied.iter().find(|&&(n, b)| in_prefix(*ip, n, b)) {
                return Err(Denied::Address { to, rule });
            }
        }
        Ok(())
    }
}

/// `to` (in its `forms`) is the listener address `own`: the same address, or any
/// loopback or unspecified one when the listener is a wildcard (it answers on all).
fn is_own(own: IpAddr, forms: &[Option<IpAddr>; 2]) -> bool {
    let own = own.to_canonical();
    forms
        .iter()
        .flatten()
        .any(|ip| *ip == own || (own.is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
}

/// The address and the IPv4 address it carries, if any: `::ffff:a.b.c.d` (mapped),
/// `::a.b.c.d` (the old "compatible" form) and `64:ff9b::a.b.c.d` (NAT64) all reach an
/// IPv4 host, so both forms must pass.
fn forms_of(ip: IpAddr) -> [Option<IpAddr>; 2] {
    let IpAddr::V6(v6) = ip else {
        return [Some(ip), None];
    };
    let [a, b, c, d, e, f, _, _] = v6.segments();
    let embedded = match (a, b, c, d, e, f) {
        (0, 0, 0, 0, 0, 0xffff) | (0x64, 0xff9b, 0, 0, 0, 0) => Some(low_v4(v6)),
        // `::` and `::1` are IPv6's own; anything else with 96 zero bits is compatible.
        (0, 0, 0, 0, 0, 0) if u128::from(v6) > 1 => Some(low_v4(v6)),
        _ => None,
    };
    [Some(ip), embedded.map(IpAddr::V4)]
}

fn low_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// The listening addresses as destinations: a listener on `0.0.0.0` or `::` is
/// reachable at every address of the machine, so each becomes one entry per local
/// address (`local`: the machine's interface addresses).
pub fn own_addresses(listening: &[SocketAddr], local: &[IpAddr]) -> Vec<SocketAddr> {
    let mut own = Vec::new();
    for l in listening {
        if l.ip().is_unspecified() {
            own.push(*l);
            own.extend(local.iter().map(|ip| SocketAddr::new(*ip, l.port())));
        } else {
            own.push(SocketAddr::new(l.ip().to_canonical(), l.port()));
        }
    }
    own.sort();
    own.dedup();
    own
}

/// The machine's interface addresses (and loopback, which every machine answers on).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list it allocates; it is only read here
    // and freed once below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(
            "cannot list the interface addresses: {}",
            std::io::Error::last_os_error()
        );
        return out;
    }
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*at };
        // SAFETY: ifa_addr, when not null, points to a sockaddr of the family it names.
        if let Some(ip) = unsafe { sockaddr_ip(ifa.ifa_addr) } {
            out.push(ip);
        }
        at = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    out
}

/// # Safety
/// `sa` is null or points to a valid sockaddr whose family field tells its size.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid sockaddr; the family says which one it is.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let v4 = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let v6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
