//! What to send: targets parsed from URLs, requests serialised once up front, and the
//! rule that picks the next target (one URL, round robin over a list, or Zipf).

use std::net::{SocketAddr, ToSocketAddrs};

use distilld::http::target::{Authority, Target, parse_target};
use thiserror::Error;

use crate::zipf::{Rng, Zipf};

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("{0:?} is not an http:// URL")]
    BadUrl(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("without --proxy every URL must name the same host:port ({0} and {1} differ)")]
    MixedOrigins(String, String),
    #[error("no URL given")]
    NoUrl,
    #[error("bad header {0:?}: expected 'Name: value'")]
    BadHeader(String),
}

/// How requests are built.
#[derive(Debug, Clone)]
pub struct RequestShape {
    pub method: String,
    pub headers: Vec<String>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
    pub proxy: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Targets {
    /// One serialised request per URL.
    pub requests: Vec<Vec<u8>>,
    pub head_only: bool,
    /// Where connections go: the proxy, or the one origin.
    pub connect_to: SocketAddr,
}

pub fn build(urls: &[String], shape: &RequestShape) -> Result<Targets, PlanError> {
    let first = urls.first().ok_or(PlanError::NoUrl)?;
    for h in &shape.headers {
        if !h.contains(':') || h.contains('\r') || h.contains('\n') {
            return Err(PlanError::BadHeader(h.clone()));
        }
    }
    let mut origin: Option<Authority> = None;
    let mut requests = Vec::with_capacity(urls.len());
    for url in urls {
        let (authority, path) = split_url(url)?;
        if shape.proxy.is_none() {
            match &origin {
                Some(o) if *o != authority => {
                    return Err(PlanError::MixedOrigins(
                        o.to_string(),
                        authority.to_string(),
                    ));
                }
                _ => origin = Some(authority.clone()),
            }
        }
        requests.push(serialise(&authority, &path, shape));
    }
    let connect_to = match shape.proxy {
        Some(p) => p,
        None => {
            let (a, _) = split_url(first)?;
            resolve(&a)?
        }
    };
    Ok(Targets {
        requests,
        head_only: shape.method.eq_ignore_ascii_case("HEAD"),
        connect_to,
    })
}

fn split_url(url: &str) -> Result<(Authority, String), PlanError> {
    match parse_target(url, "GET") {
        Ok(Target::Absolute {
            https: false,
            authority,
            path,
        }) => Ok((
            authority.to_owned(),
            if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
        )),
        _ => Err(PlanError::BadUrl(url.to_string())),
    }
}

pub fn resolve(a: &Authority) -> Result<SocketAddr, PlanError> {
    (a.host.as_str(), a.port)
        .to_socket_addrs()
        .map_err(|e| PlanError::Resolve(a.to_string(), e.to_string()))?
        .next()
        .ok_or_else(|| PlanError::Resolve(a.to_string(), "no address".into()))
}

fn serialise(a: &Authority, path: &str, shape: &RequestShape) -> Vec<u8> {
    let target = match shape.proxy {
        Some(_) => format!("http://{}{path}", a.host_field()),
        None => path.to_string(),
    };
    let mut s = format!(
        "{} {target} HTTP/1.1\r\nHost: {}\r\n",
        shape.method,
        a.host_field()
    );
    for h in &shape.headers {
        s.push_str(h.trim());
        s.push_str("\r\n");
    }
    if !shape.body.is_empty() {
        s.push_str(&format!("Content-Length: {}\r\n", shape.body.len()));
    }
    if !shape.keep_alive {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    let mut bytes = s.into_bytes();
    bytes.extend_from_slice(&shape.body);
    bytes
}

/// Picks the index of the next request.
#[derive(Debug, Clone)]
pub enum Chooser {
    One,
    RoundRobin { n: usize, next: usize },
    Zipf { zipf: Zipf, rng: Rng },
}

impl Chooser {
    pub fn new(n: usize, zipf_s: Option<f64>, seed: u64) -> Chooser {
        match (n, zipf_s) {
            (0 | 1, _) => Chooser::One,
            (n, Some(s)) => Chooser::Zipf {
                zipf: Zipf::new(n, s),
                rng: Rng::new(seed),
            },
            (n, None) => Chooser::RoundRobin {
                n,
                next: seed as usize % n,
            },
        }
    }

    pub fn next(&mut self) -> usize {
        match self {
            Chooser::One => 0,
            Chooser::RoundRobin { n, next } => {
                let i = *next;
                *next = (*next + 1) % *n;
                i
            }
            Chooser::Zipf { zipf, rng } => zipf.sample(rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(proxy: Option<&str>) -> RequestShape {
        RequestShape {
            method: "GET".into(),
            headers: vec!["Save-Data: on".into()],
            body: Vec::new(),
            keep_alive: true,
            proxy: proxy.map(|p| p.parse().unwrap()),
        }
    }

    #[test]
    fn origin_and_proxy_forms() {
        let t = build(&["http://127.0.0.1:8080/a?b".into()], &shape(None)).unwrap();
        assert_eq!(
            String::from_utf8(t.requests[0].clone()).unwrap(),
            "GET /a?b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nSave-Data: on\r\n\r\n"
        );
        let t = build(
            &["http://127.0.0.1:8080/a".into()],
            &shape(Some("127.0.0.1:3128")),
        )
        .unwrap();
        assert!(t.requests[0].starts_with(b"GET http://127.0.0.1:8080/a HTTP/1.1\r\n"));
        assert_eq!(t.connect_to.to_string(), "127.0.0.1:3128");
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            build(&["ftp://x/".into()], &shape(None)),
            Err(PlanError::BadUrl(_))
        ));
        assert!(matches!(
            build(
                &["http://127.0.0.1:1/".into(), "http://127.0.0.1:2/".into()],
                &shape(None)
            ),
            Err(PlanError::MixedOrigins(..))
        ));
        let mut bad = shape(None);
        bad.headers = vec!["NoColon".into()];
        assert!(matches!(
            build(&["http://127.0.0.1:1/".into()], &bad),
            Err(PlanError::BadHeader(_))
        ));
    }

    #[test]
    fn round_robin_cycles() {
        let mut c = Chooser::new(3, None, 0);
        assert_eq!(
            (0..6).map(|_| c.next()).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2]
        );
    }
}
