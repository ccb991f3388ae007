//! The field a forwarded request carries: which node forwarded it, the placement it
//! used (a digest of the node list), and the client it came from. A request that
//! carries it is served where it arrives: a forwarded request is never forwarded again,
//! so loops and A -> B -> A waits cannot happen, whatever each node believes.

use std::net::IpAddr;

pub const FIELD: &str = "X-Distilld-Hop";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub node: String,
    pub digest: u64,
    pub client: Option<IpAddr>,
}

impl Hop {
    /// `node=a; digest=00ff...; client=192.0.2.1`
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(FIELD.as_bytes());
        out.extend_from_slice(b": node=");
        out.extend_from_slice(self.node.as_bytes());
        out.extend_from_slice(format!("; digest={:016x}", self.digest).as_bytes());
        if let Some(ip) = self.client {
            out.extend_from_slice(format!("; client={ip}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The hop of a request, from its field's value; None when it does not parse (the
    /// request is then served here all the same: it carried the field).
    pub fn parse(value: &[u8]) -> Option<Hop> {
        let text = std::str::from_utf8(value).ok()?;
        let (mut node, mut digest, mut client) = (None, None, None);
        for part in text.split(';') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "node" if !v.is_empty() => node = Some(v.to_string()),
                "digest" => digest = u64::from_str_radix(v, 16).ok(),
                "client" => client = v.parse().ok(),
                _ => {}
            }
        }
        Some(Hop {
            node: node?,
            digest: digest?,
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_reads_back_as_written() {
        let hop = Hop {
            node: "b".into(),
            digest: 0xdead_beef,
            client: "2001:db8::1".parse().ok(),
        };
        let mut out = Vec::new();
        hop.write(&mut out);
        let text = String::from_utf8(out).unwrap();
        let value = text.trim_end().split_once(": ").unwrap().1;
        assert_eq!(Hop::parse(value.as_bytes()), Some(hop));
        assert_eq!(Hop::parse(b"node=; digest=1"), None);
        assert_eq!(Hop::parse(b"garbage"), None);
    }
}
