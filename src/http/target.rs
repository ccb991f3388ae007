//! Request targets (RFC 9112 §3.2): origin-form for reverse proxying, absolute-form for
//! forward proxying, authority-form for CONNECT.

use super::HttpError;
use super::headers::push_decimal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/path?query`
    Origin(&'a str),
    /// `http://host:port/path?query`
    Absolute {
        https: bool,
        authority: AuthorityRef<'a>,
        path: &'a str,
    },
    /// `host:port` (CONNECT)
    AuthorityForm(Authority),
    /// `*` (OPTIONS)
    Asterisk,
}

/// An authority as the request wrote it, checked: the host without brackets, in the
/// case it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityRef<'a> {
    pub host: &'a str,
    pub port: u16,
}

impl AuthorityRef<'_> {
    /// This authority in `dst`, the host lower-cased, reusing `dst`'s memory.
    pub fn write_into(&self, dst: &mut Authority) {
        dst.host.clear();
        dst.host.push_str(self.host);
        dst.host.make_ascii_lowercase();
        dst.port = self.port;
    }

    pub fn to_owned(&self) -> Authority {
        let mut a = Authority::default();
        self.write_into(&mut a);
        a
    }
}

/// Where to send a request upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Destination {
    pub origin: Authority,
    /// Origin-form target sent upstream.
    pub path: String,
    /// Value of the Host field sent upstream.
    pub host_field: String,
    /// Named by the client (the forward proxy): the address it is connected to must
    /// pass `[forward]`'s destination rules. An origin from the config is exempt.
    pub screened: bool,
}

impl Destination {
    /// Heap bytes its strings hold (what keeping it for the next request costs).
    pub fn held_bytes(&self) -> usize {
        self.origin.host.capacity() + self.path.capacity() + self.host_field.capacity()
    }
}

/// A host (lower-cased; IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// Parses `host[:port]` (RFC 3986 §3.2.2: a reg-name, an IPv4 address, or an IPv6
    /// literal in brackets; RFC 9110 §4.2.1: an optional non-zero port), the port
    /// defaulting to `default_port`. Anything else, userinfo included, is refused.
    pub fn parse(s: &str, default_port: u16) -> Result<Authority, HttpError> {
        let (host, port) = Authority::split(s, default_port)?;
        Ok(Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Checks `host[:port]` as `parse` does and returns the host as written (without
    /// brackets) and the port, allocating nothing: for checks on every request.
    pub fn split(s: &str, default_port: u16) -> Result<(&str, u16), HttpError> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or(HttpError::Malformed("invalid IPv6 literal"))?;
            let host = &rest[..end];
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| HttpError::Malformed("invalid IPv6 literal"))?;
            (host, &rest[end + 1..])
        } else {
            let end = s.bytes().position(|b| b == b':').unwrap_or(s.len());
            let host = &s[..end];
            if !is_reg_name(host) {
                return Err(HttpError::Malformed("invalid host"));
            }
            if host == "." {
                return Err(HttpError::Malformed("invalid host"));
            }
            (host, &s[end..])
        };
        let port = match port {
            // RFC 3986 §3.2.3: an empty port is the scheme's default.
            "" | ":" => default_port,
            p => p
                .strip_prefix(':')
                .and_then(parse_port)
                .ok_or(HttpError::Malformed("invalid port"))?,
        };
        Ok((host, port))
    }

    /// The form written into a Host field: brackets around IPv6, port only if not 80.
    pub fn host_field(&self) -> String {
        let mut s = String::new();
        self.write_host_field(&mut s);
        s
    }

    /// `host_field` into `dst` (emptied first), reusing its memory.
    pub fn write_host_field(&self, dst: &mut String) {
        dst.clear();
        if self.host.bytes().any(|b| b == b':') {
            dst.push('[');
            dst.push_str(&self.host);
            dst.push(']');
        } else {
            dst.push_str(&self.host);
        }
        if self.port != 80 {
            dst.push(':');
            push_decimal(dst, self.port);
        }
    }

    /// What `Display` writes (`host:port`, brackets around IPv6), appended to `dst`
    /// without the formatting machinery: a cache key is built on every request.
    pub fn push_to(&self, dst: &mut String) {
        let v6 = self.host.bytes().any(|b| b == b':');
        if v6 {
            dst.push('[');
        }
        dst.push_str(&self.host);
        if v6 {
            dst.push(']');
        }
        dst.push(':');
        push_decimal(dst, self.port);
    }

    /// A copy of `other` in this one's memory.
    pub fn set_from(&mut self, other: &Authority) {
        self.host.clone_from(&other.host);
        self.port = other.port;
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

/// 1 to 5 digits making a port other than 0.
fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    let mut n: u32 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    u16::try_from(n).ok().filter(|&p| p != 0)
}

/// The bytes a reg-name takes as they are: unreserved characters and sub-delims.
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// RFC 3986 reg-name (which an IPv4 address also is): unreserved characters,
/// sub-delims and `%HH`; never empty here (an authority names a host).
fn is_reg_name(host: &str) -> bool {
    let b = host.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            c if REG_NAME[usize::from(c)] => i += 1,
            _ => return false,
        }
    }
    !b.is_empty()
}

pub fn parse_target<'a>(target: &'a str, method: &str) -> Result<Target<'a>, HttpError> {
    // RFC 9112 §3.2.3: CONNECT takes the authority form, and only CONNECT does (a
    // CONNECT with a path would otherwise reach a route and become a tunnel to it).
    if method == "CONNECT" {
        return Authority::parse(target, 443).map(Target::AuthorityForm);
    }
    if target.starts_with('/') {
        return Ok(Target::Origin(target));
    }
    if target == "*" {
        return Ok(Target::Asterisk);
    }
    let (https, rest) =
        split_scheme(target).ok_or(HttpError::Malformed("invalid request target"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, port) = Authority::split(&rest[..end], if https { 443 } else { 80 })?;
    let authority = AuthorityRef { host, port };
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

/// The path part of an origin-form target as a server reads it (RFC 3986 §6.2.2):
/// percent-encoded unreserved characters decoded, dot segments removed, runs of `/`
/// taken as one; the query kept as it is. Borrowed when there is nothing to do.
pub fn path_for_matching(target: &str) -> std::borrow::Cow<'_, str> {
    let (path, query) = target.split_at(query_start(target));
    if is_normal_path(path) {
        return std::borrow::Cow::Borrowed(target);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/').skip(1) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let ends_open = matches!(decoded.rsplit('/').next(), Some("" | "." | ".."));
    let mut out = String::with_capacity(target.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if ends_open || segments.is_empty() {
        out.push('/');
    }
    out.push_str(query);
    std::borrow::Cow::Owned(out)
}

/// Where a target's query begins (its `?`), or its length. A plain scan: targets are
/// short, and `str::find`'s setup costs more than the search on every request.
pub fn query_start(target: &str) -> usize {
    target
        .bytes()
        .position(|b| b == b'?')
        .unwrap_or(target.len())
}

/// No `%`, `//` or `/.` in `path`: nothing for `path_for_matching` to do (one pass, as
/// every request's path is checked).
fn is_normal_path(path: &str) -> bool {
    let mut after_slash = false;
    for &b in path.as_bytes() {
        if b == b'%' || (after_slash && (b == b'/' || b == b'.')) {
            return false;
        }
        after_slash = b == b'/';
    }
    true
}

/// `%XX` that encodes an unreserved character (ALPHA, DIGIT, `-._~`) decoded; any other
/// escape (`%2F` among them) kept as it is.
fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        let byte = (b[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c));
        match byte {
            Some(c) => {
                out.push(char::from(c));
                i += 3;
            }
            None => {
                let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
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
                authority: AuthorityRef {
                    host: "Example.TEST",
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
        let authority = authority.to_owned();
        assert_eq!(authority.to_string(), "[::1]:81");
        assert_eq!(authority.host_field(), "[::1]:81");
    }

    #[test]
    fn push_to_writes_what_display_writes() {
        for s in ["h", "h:8080", "[::1]:81", "127.0.0.1:65535", "x.test:1"] {
            let a = Authority::parse(s, 80).unwrap();
            let mut pushed = String::from("k ");
            a.push_to(&mut pushed);
            assert_eq!(pushed, format!("k {a}"), "{s}");
        }
    }

    #[test]
    fn a_path_is_normal_only_without_escapes_or_dot_and_empty_segments() {
        for p in ["/", "/a/b.c", "/a.b/c", "", "/a-b_c~d"] {
            assert!(is_normal_path(p), "{p}");
            assert!(matches!(
                path_for_matching(p),
                std::borrow::Cow::Borrowed(_)
            ));
        }
        // Every string of up to five of the bytes that matter reads as the three
        // searches it replaced read it.
        let mut paths = vec![String::new()];
        let mut last = paths.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|p| ['/', '.', '%', 'a'].map(|c| format!("{p}{c}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        assert_eq!(paths.len(), 1365);
        for p in &paths {
            let expected = p.contains('%') || p.contains("//") || p.contains("/.");
            assert_eq!(!is_normal_path(p), expected, "{p}");
        }
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
    fn authorities_are_reg_names_ipv4_or_bracketed_ipv6_with_a_port() {
        let ok = |s: &str| Authority::parse(s, 80).map(|a| a.to_string());
        assert_eq!(ok("Example.TEST").as_deref(), Ok("example.test:80"));
        assert_eq!(ok("a-b_c~d.e:8080").as_deref(), Ok("a-b_c~d.e:8080"));
        assert_eq!(ok("127.0.0.1:81").as_deref(), Ok("127.0.0.1:81"));
        assert_eq!(ok("[::1]").as_deref(), Ok("[::1]:80"));
        assert_eq!(ok("[2001:db8::2]:443").as_deref(), Ok("[2001:db8::2]:443"));
        assert_eq!(ok("caf%C3%A9.test").as_deref(), Ok("caf%c3%a9.test:80"));
        assert_eq!(
            ok("Example.Test.:8080").as_deref(),
            Ok("example.test.:8080")
        );
        assert_eq!(ok("a:").as_deref(), Ok("a:80"), "empty port: the default");
        assert_eq!(ok("[::1]:").as_deref(), Ok("[::1]:80"));
        for bad in [
            "",
            ":80",
            "a:80/x",
            "a/x",
            "a:b:80",
            ".",
            "a:0",
            "a:65536",
            "a:000080",
            "u@h",
            "a b",
            "a\tb",
            "a%2",
            "a%zz",
            "[::1",
            "[::1]x",
            "[v1.x]",
            "[1.2.3.4]",
            "a?b",
            "a#b",
            "h:80:80",
            "[::1]:80:1",
        ] {
            assert!(Authority::parse(bad, 80).is_err(), "{bad:?} was accepted");
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
