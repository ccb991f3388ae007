//! Which client addresses may use the proxy, and the log of those refused: a line per
//! address at most once a minute, in a table of bounded size, so a client that keeps
//! knocking (or many addresses) cannot flood the log or grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::prefix::{Prefix, in_prefix};

/// The forward proxy's clients by default: loopback and the private ranges.
pub const DEFAULT_CLIENTS: [&str; 6] = [
    "127.0.0.0/8",
    "::1",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
];

/// A list of allowed client prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientList {
    prefixes: Vec<Prefix>,
}

impl ClientList {
    pub fn new(prefixes: Vec<Prefix>) -> ClientList {
        ClientList { prefixes }
    }

    /// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is its IPv4 address.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.prefixes
            .iter()
            .any(|&(net, bits)| in_prefix(client, net, bits))
    }
}

/// How often one address's refusals are logged, at most.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered at once; past it, old ones are forgotten first, and when all are
/// recent the refusal goes unlogged (it is still counted).
const REMEMBERED_MAX: usize = 4096;

/// When each refused address was last logged.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: Mutex<HashMap<IpAddr, Instant>>,
}

impl RefusalLog {
    /// Whether a refusal of `client` at `now` gets a log line.
    pub fn should_log(&self, client: IpAddr, now: Instant) -> bool {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(at) = last.get(&client)
            && now.saturating_duration_since(*at) < LOG_EVERY
        {
            return false;
        }
        if last.len() >= REMEMBERED_MAX && !last.contains_key(&client) {
            last.retain(|_, at| now.saturating_duration_since(*at) < LOG_EVERY);
            if last.len() >= REMEMBERED_MAX {
                return false;
            }
        }
        last.insert(client, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::prefix::parse_prefix;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_default_list_is_loopback_and_private_ranges() {
        let list = ClientList::new(
            DEFAULT_CLIENTS
                .iter()
                .filter_map(|p| parse_prefix(p))
                .collect(),
        );
        for ok in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "10.1.2.3",
            "172.31.255.1",
            "192.168.0.7",
            "fd00::5",
            "::ffff:10.0.0.1",
        ] {
            assert!(list.allows(ip(ok)), "{ok}");
        }
        for no in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "2001:db8::1",
            "169.254.1.1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!list.allows(ip(no)), "{no}");
        }
    }

    #[test]
    fn a_refused_address_is_logged_once_a_minute_in_bounded_memory() {
        let log = RefusalLog::default();
        let t = Instant::now();
        assert!(log.should_log(ip("198.51.100.1"), t));
        assert!(!log.should_log(ip("198.51.100.1"), t + Duration::from_secs(59)));
        assert!(log.should_log(ip("198.51.100.1"), t + Duration::from_secs(61)));
        // Many addresses at once: the table stops at its bound.
        let flood = RefusalLog::default();
        for i in 0..(REMEMBERED_MAX as u32 + 100) {
            flood.should_log(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()), t);
        }
        let len = flood.last.lock().map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, REMEMBERED_MAX);
        // A minute on, old entries make room again.
        assert!(flood.should_log(ip("203.0.113.9"), t + Duration::from_secs(61)));
    }
}
