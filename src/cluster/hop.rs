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
    /// With a cluster secret: the tag over the hop and the request line (`vouch`).
    pub mac: Option<String>,
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
        if let Some(mac) = &self.mac {
            out.extend_from_slice(format!("; mac={mac}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// What the tag covers: the hop's fields and the request line, so a hop cannot be
    /// lifted onto another request.
    fn parts(&self, method: &str, target: &str) -> String {
        let client = self.client.map(|c| c.to_string()).unwrap_or_default();
        format!(
            "{} {:016x} {client} {method} {target}",
            self.node, self.digest
        )
    }

    /// Tags the hop for `method target` with the cluster's secret.
    pub fn vouch(&mut self, secret: &[u8], method: &str, target: &str) {
        let tag = super::auth::tag(secret, &[self.parts(method, target).as_bytes()]);
        self.mac = Some(tag.iter().map(|b| format!("{b:02x}")).collect());
    }

    /// The tag is right for `method target` under `secret`.
    pub fn vouched(&self, secret: &[u8], method: &str, target: &str) -> bool {
        let Some(hex) = self.mac.as_deref() else {
            return false;
        };
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        bytes.is_some_and(|tag| {
            super::auth::verify(secret, &[self.parts(method, target).as_bytes()], &tag)
        })
    }

    /// The hop of a request, from its field's value; None when it does not parse (the
    /// request is then served here all the same: it carried the field).
    pub fn parse(value: &[u8]) -> Option<Hop> {
        let text = std::str::from_utf8(value).ok()?;
        let (mut node, mut digest, mut client, mut mac) = (None, None, None, None);
        for part in text.split(';') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "node" if !v.is_empty() => node = Some(v.to_string()),
                "digest" => digest = u64::from_str_radix(v, 16).ok(),
                "client" => client = v.parse().ok(),
                "mac" => mac = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Hop {
            node: node?,
            digest: digest?,
            client,
            mac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_reads_back_as_written() {
        let mut hop = Hop {
            node: "b".into(),
            digest: 0xdead_beef,
            client: "2001:db8::1".parse().ok(),
            mac: None,
        };
        hop.vouch(b"0123456789abcdef", "GET", "/x");
        assert!(hop.vouched(b"0123456789abcdef", "GET", "/x"));
        assert!(
            !hop.vouched(b"0123456789abcdef", "GET", "/y"),
            "another request"
        );
        assert!(
            !hop.vouched(b"fedcba9876543210", "GET", "/x"),
            "another secret"
        );
        let mut out = Vec::new();
        hop.write(&mut out);
        let text = String::from_utf8(out).unwrap();
        let value = text.trim_end().split_once(": ").unwrap().1;
        assert_eq!(Hop::parse(value.as_bytes()), Some(hop));
        assert_eq!(Hop::parse(b"node=; digest=1"), None);
        assert_eq!(Hop::parse(b"garbage"), None);
    }
}
