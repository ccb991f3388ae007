//! Where a request goes: answered here (health), to an origin named by the request
//! (forward proxy, absolute-form), or to an origin named by a route (reverse proxy).

use std::net::IpAddr;

use thiserror::Error;

use crate::config::Config;
use crate::http::request::RequestHead;
use crate::http::target::{
    Authority, Destination, Target, parse_target, path_for_matching, query_start,
};

/// Where the page that lets a user choose a distillation profile lives, on every host
/// (so the cookie it sets is sent with that host's requests).
pub const PREFERENCES_PATH: &str = "/.distilld/profile";

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Health,
    /// The profile preference page; the query (after `?`) is kept.
    Preferences(String),
    Proxy(Destination),
    /// A CONNECT tunnel to the destination's origin.
    Tunnel(Destination),
}

/// The start of the reason a client outside the forward proxy's list is given.
pub const CLIENT_DENIED: &str = "this client may not use the forward proxy";
/// The start of the reason a client outside a route's own list is given.
pub const ROUTE_CLIENT_DENIED: &str = "this client may not use this route";
/// The start of the reason a destination the rules deny is given.
pub const DESTINATION_DENIED: &str = "the forward proxy may not connect there";

/// A request that cannot be routed: the status and the reason the client is told.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{status}: {reason}")]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// `client`: the address the request comes from (checked against the forward proxy's
/// client list before anything else is done for it).
pub fn route(config: &Config, head: &RequestHead, client: IpAddr) -> Result<Decision, Refusal> {
    route_reusing(config, head, client, Destination::default())
}

/// `route`, the destination written into `reuse`'s memory (a keep-alive connection's
/// previous one), so routing a request in steady state allocates nothing.
pub fn route_reusing(
    config: &Config,
    head: &RequestHead,
    client: IpAddr,
    reuse: Destination,
) -> Result<Decision, Refusal> {
    let target =
        parse_target(head.target(), head.method()).map_err(|e| refuse(400, e.to_string()))?;
    if let Target::Origin(path) | Target::Absolute { path, .. } = &target
        && let Some(rest) = path.strip_prefix(PREFERENCES_PATH)
        && (rest.is_empty() || rest.starts_with('?'))
        && matches!(head.method(), "GET" | "HEAD")
    {
        return Ok(Decision::Preferences(
            rest.trim_start_matches('?').to_string(),
        ));
    }
    match target {
        Target::Origin(path) => route_origin_form(config, head, path, client, reuse),
        Target::Absolute {
            https,
            authority,
            path,
        } => {
            may_use_forward_proxy(config, client)?;
            if https {
                return Err(refuse(
                    501,
                    "distilld does not fetch https:// itself: send it through a CONNECT tunnel",
                ));
            }
            let mut d = reuse;
            authority.write_into(&mut d.origin);
            d.origin.write_host_field(&mut d.host_field);
            let port_ok = config.forward.destinations.check_port(d.origin.port);
            screen(config, &mut d.origin, port_ok)?;
            d.path.clear();
            d.path.push_str(if path.is_empty() { "/" } else { path });
            d.screened = true;
            Ok(Decision::Proxy(d))
        }
        Target::AuthorityForm(authority) => {
            may_use_forward_proxy(config, client)?;
            let port = authority.port;
            let port_ok = match config.forward.connect_ports.contains(&port) {
                true => Ok(()),
                false => Err(crate::access::destinations::Denied::ConnectPort(port)),
            };
            let host_field = authority.host_field();
            let mut origin = authority;
            screen(config, &mut origin, port_ok)?;
            Ok(Decision::Tunnel(Destination {
                host_field,
                origin,
                path: String::new(),
                screened: true,
            }))
        }
        Target::Asterisk => Err(refuse(400, "asterisk-form is not proxied")),
    }
}

/// The forward proxy is on and `client` may use it.
fn may_use_forward_proxy(config: &Config, client: IpAddr) -> Result<(), Refusal> {
    if !config.forward_proxy {
        return Err(refuse(403, "forward proxying is turned off"));
    }
    if !config.forward.clients_allowed.allows(client) {
        return Err(refuse(
            403,
            format!("{CLIENT_DENIED}: {client} is not in forward.clients_allowed"),
        ));
    }
    Ok(())
}

/// A client-named destination, checked before any upstream work: its port (`port`,
/// the verdict of the list that applies), and its address when the host is numeric (in
/// any spelling a resolver takes: the host is rewritten to the address it means, so the
/// connection goes where the check looked). A name is checked again on the address it
/// resolves to, when it is connected to.
fn screen(
    config: &Config,
    authority: &mut Authority,
    port: Result<(), crate::access::destinations::Denied>,
) -> Result<(), Refusal> {
    let rules = &config.forward.destinations;
    let deny =
        |d: crate::access::destinations::Denied| refuse(403, format!("{DESTINATION_DENIED}: {d}"));
    port.map_err(deny)?;
    let Some(ip) = crate::access::numeric::numeric_host(&authority.host) else {
        return Ok(());
    };
    let to = std::net::SocketAddr::new(ip, authority.port);
    rules.check(to, &[]).map_err(deny)?;
    authority.host = ip.to_string();
    Ok(())
}

/// A route with a client list that `client` is not on, whose prefix the path meets
/// in any spelling some origin reads the same: case folded, `%2F`, `%5C` and `\` as
/// `/`, `;parameters` dropped, the prefix's closing `/` optional. Such a request is
/// refused even when, spelled as it is, it would match an open route behind it.
fn guarded_route_near(config: &Config, host: &str, path: &str, client: IpAddr) -> Option<usize> {
    let mut loose_path = None;
    config.routes.iter().enumerate().find_map(|(i, r)| {
        let list = r.clients_allowed.as_ref()?;
        let host_ok = r
            .host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host));
        if !host_ok || list.allows(client) {
            return None;
        }
        let p = loose_path.get_or_insert_with(|| loose(path));
        let prefix = loose(&r.path_prefix);
        let bare = prefix.strip_suffix('/').unwrap_or(&prefix);
        let near = p.starts_with(&prefix) || p.split('?').next() == Some(bare);
        near.then_some(i)
    })
}

/// `path_for_matching`, then the spellings that only some origins read alike folded.
fn loose(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let folded = path_for_matching(path)
        .to_ascii_lowercase()
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    let mut out = String::with_capacity(folded.len());
    for seg in folded.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg.split(';').next().unwrap_or(seg));
    }
    if folded.ends_with('/') || out.is_empty() {
        out.push('/');
    }
    out
}

fn route_origin_form(
    config: &Config,
    head: &RequestHead,
    path: &str,
    client: IpAddr,
    reuse: Destination,
) -> Result<Decision, Refusal> {
    if let Some(health) = &config.healthz_path {
        let bare = &path[..query_start(path)];
        if bare == health && matches!(head.method(), "GET" | "HEAD") {
            return Ok(Decision::Health);
        }
    }
    // The Host field was checked (and its host found) when the head was parsed; empty
    // matches no host.
    let host = head.host_name();
    // "img.test." is the fully qualified spelling of "img.test".
    let host = host.strip_suffix('.').unwrap_or(host);
    // Routes match the path as the origin will read it: `/%61dmin/` and `/./admin/` must
    // not slip past a route's client list to an open route behind it.
    let matched = path_for_matching(path);
    let found = config.routes.iter().enumerate().find(|(_, r)| {
        r.host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host))
            && matched.starts_with(&r.path_prefix)
    });
    if let Some(i) = guarded_route_near(config, host, path, client) {
        return Err(refuse(
            403,
            format!("{ROUTE_CLIENT_DENIED}: {client} is not in route[{i}].clients_allowed"),
        ));
    }
    match found.map(|(_, r)| r) {
        Some(r) => {
            let mut d = reuse;
            d.origin.set_from(&r.origin.authority);
            d.path.clear();
            d.path.push_str(path);
            match (r.preserve_host, head.host()) {
                (true, Some(h)) => {
                    d.host_field.clear();
                    d.host_field.push_str(h);
                }
                _ => r.origin.authority.write_host_field(&mut d.host_field),
            }
            d.screened = false;
            Ok(Decision::Proxy(d))
        }
        None if config.routes.is_empty() => Err(refuse(
            400,
            "this is a forward proxy: send absolute-form requests (http://host/path)",
        )),
        None => Err(refuse(404, "no route matches this host and path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{HeadLimits, parse_request};

    fn head(s: &str) -> RequestHead {
        let limits = HeadLimits {
            header_bytes_max: 4096,
            headers_count_max: 32,
        };
        parse_request(s.as_bytes(), limits).unwrap().unwrap().0
    }

    const LAN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 20));

    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml, "t").unwrap()
    }

    #[test]
    fn forward_and_health() {
        let c = config("");
        let d = route(
            &c,
            &head("GET http://a.test:8081/x HTTP/1.1\r\nHost: zz\r\n\r\n"),
            LAN,
        )
        .unwrap();
        assert_eq!(
            d,
            Decision::Proxy(Destination {
                origin: Authority {
                    host: "a.test".into(),
                    port: 8081
                },
                path: "/x".into(),
                host_field: "a.test:8081".into(),
                screened: true,
            })
        );
        assert_eq!(
            route(&c, &head("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"), LAN).unwrap(),
            Decision::Health
        );
        assert_eq!(
            route(&c, &head("GET /other HTTP/1.1\r\nHost: a\r\n\r\n"), LAN)
                .unwrap_err()
                .status,
            400
        );
        assert!(matches!(
            route(&c, &head("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), LAN),
            Ok(Decision::Tunnel(Destination { screened: true, .. }))
        ));
    }

    #[test]
    fn only_listed_clients_may_use_the_forward_proxy() {
        let get = head("GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let outsider: IpAddr = "203.0.113.7".parse().unwrap();
        let c = config("");
        assert!(route(&c, &get, LAN).is_ok(), "private ranges by default");
        let refused = route(&c, &get, outsider).unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(
            refused.reason.starts_with(CLIENT_DENIED),
            "{}",
            refused.reason
        );
        assert!(
            refused.reason.contains("forward.clients_allowed"),
            "names the key"
        );
        // The list is the operator's: here only one network.
        let c = config("[forward]\nclients_allowed = [\"203.0.113.0/24\"]\n");
        assert!(route(&c, &get, outsider).is_ok());
        assert_eq!(route(&c, &get, LAN).unwrap_err().status, 403);
        // Reverse-proxy routes and the health check are not the forward proxy's.
        let health = head("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(route(&c, &health, LAN), Ok(Decision::Health));
        assert!(
            Config::from_toml_str("[forward]\nclients_allowed = [\"10.0.0.0/40\"]\n", "t").is_err()
        );
    }

    #[test]
    fn denied_destinations_are_refused_before_any_upstream_work() {
        let get = |target: &str| head(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
        let c = config("");
        for target in [
            "http://127.0.0.1:8080/",
            "http://2130706433:8080/",
            "http://0177.0.0.1:8080/",
            "http://0x7f.1:8080/",
            "http://127.1:8080/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0xa9fea9fe/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://0/",
            "http://a.test:22/",
            "http://10.0.0.1:25/",
        ] {
            let refused = route(&c, &get(target), LAN).unwrap_err();
            assert_eq!(refused.status, 403, "{target}");
            assert!(
                refused.reason.starts_with(DESTINATION_DENIED),
                "{target}: {}",
                refused.reason
            );
            assert!(
                refused.reason.contains("forward."),
                "names the key: {}",
                refused.reason
            );
        }
        // A name passes here: its address is checked when it is connected to.
        assert!(route(&c, &get("http://localhost:8080/"), LAN).is_ok());
        // Loopback allowed: a numeric host is rewritten to the address it means.
        let c = config(
            "[forward]\ndestinations_allowed = [\"127.0.0.0/8\"]\nports_allowed = [\"8080\"]\n",
        );
        match route(&c, &get("http://0x7f.1:8080/a"), LAN) {
            Ok(Decision::Proxy(d)) => {
                assert_eq!(d.origin.host, "127.0.0.1");
                assert!(d.screened);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            route(&c, &get("http://127.0.0.1:8081/"), LAN)
                .unwrap_err()
                .status,
            403
        );
        for bad in [
            "[forward]\nports_allowed = [\"0\"]\n",
            "[forward]\nports_allowed = [\"9-8\"]\n",
            "[forward]\ndestinations_denied = [\"nope\"]\n",
            "[forward]\ndestinations_allowed = [\"::/200\"]\n",
        ] {
            let e = Config::from_toml_str(bad, "t").unwrap_err().to_string();
            assert!(e.contains("forward."), "{e}");
        }
    }

    #[test]
    fn connect_goes_only_to_connect_ports_and_allowed_addresses() {
        let connect = |a: &str| head(&format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n"));
        let c = config("");
        assert!(matches!(
            route(&c, &connect("a.test:443"), LAN),
            Ok(Decision::Tunnel(_))
        ));
        for (target, says) in [
            ("a.test:22", "forward.connect_ports"),
            ("a.test:8443", "forward.connect_ports"),
            ("127.0.0.1:443", "forward.destinations_denied"),
            ("0x7f.1:443", "forward.destinations_denied"),
            ("[::1]:443", "forward.destinations_denied"),
            ("169.254.169.254:443", "forward.destinations_denied"),
        ] {
            let refused = route(&c, &connect(target), LAN).unwrap_err();
            assert_eq!(refused.status, 403, "{target}");
            assert!(
                refused.reason.contains(says),
                "{target}: {}",
                refused.reason
            );
        }
        let outsider: IpAddr = "203.0.113.7".parse().unwrap();
        let refused = route(&c, &connect("a.test:443"), outsider).unwrap_err();
        assert!(refused.reason.starts_with(CLIENT_DENIED));
        let c = config("[forward]\nconnect_ports = [443, 8443]\n");
        assert!(route(&c, &connect("a.test:8443"), LAN).is_ok());
        assert!(Config::from_toml_str("[forward]\nconnect_ports = [0]\n", "t").is_err());
        // A CONNECT with a path is no tunnel to a route: malformed.
        let c = config("[[route]]\norigin = \"http://127.0.0.1:9001\"\n");
        let file =
            std::env::temp_dir().join(format!("distilld-route-htpasswd-{}", std::process::id()));
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&file, format!("ann:{hash}\n")).unwrap();
        let cluster = format!(
            "[forward]\nauth_file = \"{}\"\n[cluster]\nnode = \"a\"\n\
             [[cluster.nodes]]\nid = \"a\"\nhttp = \"127.0.0.1:3128\"\n",
            file.display()
        );
        let e = Config::from_toml_str(&cluster, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward.auth_file"), "{e}");
        std::fs::write(&file, vec![b'a'; 100]).unwrap();
        let alone = format!("[forward]\nauth_file = \"{}\"\n", file.display());
        let e = Config::from_toml_str(&alone, "t").unwrap_err().to_string();
        assert!(
            e.contains("forward.auth_file") && e.contains("line 1"),
            "{e}"
        );
        let _ = std::fs::remove_file(&file);
        let connect_path = head("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(route(&c, &connect_path, LAN).unwrap_err().status, 400);
    }

    #[test]
    fn a_route_with_its_own_client_list_refuses_others() {
        let c = config(
            "[[route]]\npath_prefix = \"/admin/\"\norigin = \"http://127.0.0.1:9001\"\n\
             clients_allowed = [\"192.168.1.0/24\"]\n\
             [[route]]\norigin = \"http://127.0.0.1:9002\"\n",
        );
        let admin = head("GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(route(&c, &admin, LAN).is_ok());
        let outsider: IpAddr = "203.0.113.7".parse().unwrap();
        let refused = route(&c, &admin, outsider).unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(
            refused.reason.contains("route[0].clients_allowed"),
            "{}",
            refused.reason
        );
        let other = head("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(
            route(&c, &other, outsider).is_ok(),
            "a route without a list is open"
        );
        // Other spellings of the same path meet the same list.
        for spelled in [
            "/%61dmin/x",
            "//admin/x",
            "/./admin/x",
            "/x/../admin/x",
            "/%61%64min/",
            "/admin/%2e/x",
        ] {
            let h = head(&format!("GET {spelled} HTTP/1.1\r\nHost: a\r\n\r\n"));
            assert_eq!(
                route(&c, &h, outsider).unwrap_err().status,
                403,
                "{spelled}"
            );
        }
        // The request goes on as the client wrote it.
        match route(
            &c,
            &head("GET /%61dmin/x?a=%2e HTTP/1.1\r\nHost: a\r\n\r\n"),
            LAN,
        ) {
            Ok(Decision::Proxy(d)) => assert_eq!(d.path, "/%61dmin/x?a=%2e"),
            other => panic!("{other:?}"),
        }
        // Spellings only some origins read alike are refused too, for the guarded route.
        for near in [
            "/ADMIN/x",
            "/admin",
            "/%2Fadmin/x",
            "/admin;jsessionid=1/y",
            "/Admin?x",
        ] {
            let h = head(&format!("GET {near} HTTP/1.1\r\nHost: a\r\n\r\n"));
            assert_eq!(route(&c, &h, outsider).unwrap_err().status, 403, "{near}");
        }
        let h = head("GET /administrator HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(route(&c, &h, outsider).is_ok(), "another path altogether");
        // A prefix is read in the same form as the paths it meets.
        let c2 =
            config("[[route]]\npath_prefix = \"/%7Ejoe/\"\norigin = \"http://127.0.0.1:9001\"\n");
        let h = head("GET /~joe/x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(route(&c2, &h, outsider).is_ok());
        assert_eq!(
            path_for_matching("/a/b/../c/./d//e?x=/../"),
            "/a/c/d/e?x=/../"
        );
        assert_eq!(path_for_matching("/a/.."), "/");
        assert_eq!(path_for_matching("/a/%2Fb"), "/a/%2Fb");
        assert_eq!(path_for_matching("/%zz/%e2%82%ac"), "/%zz/%e2%82%ac");
        assert!(
            Config::from_toml_str(
                "[[route]]\norigin = \"http://127.0.0.1:1\"\nclients_allowed = [\"x\"]\n",
                "t"
            )
            .unwrap_err()
            .to_string()
            .contains("route[0].clients_allowed[0]")
        );
    }

    #[test]
    fn reverse_routes_in_order() {
        let c = config(
            "[[route]]\nhost = \"img.test\"\norigin = \"http://127.0.0.1:9001\"\n\
             [[route]]\npath_prefix = \"/api/\"\norigin = \"http://127.0.0.1:9002\"\npreserve_host = true\n",
        );
        let port = |s: &str| match route(&c, &head(s), LAN) {
            Ok(Decision::Proxy(d)) => (d.origin.port, d.host_field),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            port("GET /a HTTP/1.1\r\nHost: IMG.test:80\r\n\r\n"),
            (9001, "127.0.0.1:9001".into())
        );
        assert_eq!(
            port("GET /api/x HTTP/1.1\r\nHost: w.test\r\n\r\n"),
            (9002, "w.test".into())
        );
        assert_eq!(
            port("GET /a HTTP/1.1\r\nHost: img.test:8080\r\n\r\n"),
            (9001, "127.0.0.1:9001".into())
        );
        assert_eq!(
            port("GET /a HTTP/1.1\r\nHost: img.test.\r\n\r\n"),
            (9001, "127.0.0.1:9001".into())
        );
        assert_eq!(
            route(&c, &head("GET /b HTTP/1.1\r\nHost: w.test\r\n\r\n"), LAN)
                .unwrap_err()
                .status,
            404
        );
    }
}
