//! Request targets (RFC 9112 §3.2): origin-form for reverse proxying, absolute-form for
//! forward proxying, authority-form for CONNECT.

use super::HttpError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/path?query`
    Origin(&'a str),
    /// `http://host:port/path?query`
    Absolute {
        https: bool,
        authority: Authority,
        path: &'a str,
    },
    /// `host:port` (CONNECT)
    AuthorityForm(Authority),
    /// `*` (OPTIONS)
    Asterisk,
}

/// A host (lower-cased; IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// Parses `host[:port]`, the port defaulting to `default_port`.
    pub fn parse(s: &str, default_port: u16) -> Result<Authority, HttpError> {
        if s.is_empty() || s.contains('@') {
            return Err(HttpError::Malformed("invalid authority"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or(HttpError::Malformed("invalid IPv6 literal"))?;
            let host = &rest[..end];
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| HttpError::Malformed("invalid IPv6 literal"))?;
            (host, &rest[end + 1..])
        } else {
            match s.rfind(':') {
                Some(i) => (&s[..i], &s[i..]),
                None => (s, ""),
            }
        };
        let port = match port {
            "" => default_port,
            p => p
                .strip_prefix(':')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or(HttpError::Malformed("invalid port"))?,
        };
        if host.is_empty() || !host.bytes().all(is_host_byte) {
            return Err(HttpError::Malformed("invalid host"));
        }
        Ok(Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The form written into a Host field: brackets around IPv6, port only if not 80.
    pub fn host_field(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:".contains(&b)
}

pub fn parse_target<'a>(target: &'a str, method: &str) -> Result<Target<'a>, HttpError> {
    if target.starts_with('/') {
        return Ok(Target::Origin(target));
    }
    if target == "*" {
        return Ok(Target::Asterisk);
    }
    if method == "CONNECT" {
        return Authority::parse(target, 443).map(Target::AuthorityForm);
    }
    let (https, rest) =
        split_scheme(target).ok_or(HttpError::Malformed("invalid request target"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = Authority::parse(&rest[..end], if https { 443 } else { 80 })?;
    let path = &rest[end..];
    if path.contains('#') {
        return Err(HttpError::Malformed("fragment in request target"));
    }
    Ok(Target::Absolute {
        https,
        authority,
        path,
    })
}

fn split_scheme(target: &str) -> Option<(bool, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    if scheme.eq_ignore_ascii_case("http") {
        Some((false, rest))
    } else if scheme.eq_ignore_ascii_case("https") {
        Some((true, rest))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form() {
        let t = parse_target("http://Example.TEST:8080/a?b", "GET").unwrap();
        assert_eq!(
            t,
            Target::Absolute {
                https: false,
                authority: Authority {
                    host: "example.test".into(),
                    port: 8080
                },
                path: "/a?b"
            }
        );
        let Target::Absolute {
            authority, path, ..
        } = parse_target("http://h", "GET").unwrap()
        else {
            panic!()
        };
        assert_eq!((authority.port, path), (80, ""));
        let Target::Absolute { authority, .. } = parse_target("http://[::1]:81/", "GET").unwrap()
        else {
            panic!()
        };
        assert_eq!(authority.to_string(), "[::1]:81");
        assert_eq!(authority.host_field(), "[::1]:81");
    }

    #[test]
    fn bad_targets() {
        for t in [
            "http://u@h/",
            "http://h:0/",
            "http://h:99999/",
            "http://:80/",
            "ftp://h/",
            "h/",
            "http://h/#f",
            "http://h:x/",
        ] {
            assert!(parse_target(t, "GET").is_err(), "{t}");
        }
    }

    #[test]
    fn other_forms() {
        assert_eq!(parse_target("/x", "GET").unwrap(), Target::Origin("/x"));
        assert_eq!(parse_target("*", "OPTIONS").unwrap(), Target::Asterisk);
        assert!(matches!(
            parse_target("h:443", "CONNECT").unwrap(),
            Target::AuthorityForm(_)
        ));
    }
}
