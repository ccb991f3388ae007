//! The `[[route]]` tables of the config: which origin serves which host and path
//! (matched per request in `proxy::route`).

use thiserror::Error;

use crate::http::target::Authority;

/// An origin a route points at: `http://host[:port]` (TLS to origins comes later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    pub authority: Authority,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OriginUrlError {
    #[error("{0:?} is not an http:// URL")]
    Scheme(String),
    #[error("{0:?} has an invalid host or port")]
    Authority(String),
    #[error("{0:?} must not have a path")]
    Path(String),
}

impl OriginUrl {
    pub fn parse(url: &str) -> Result<OriginUrl, OriginUrlError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| OriginUrlError::Scheme(url.to_string()))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !(path.is_empty() || path == "/") {
            return Err(OriginUrlError::Path(url.to_string()));
        }
        let authority = Authority::parse(authority, 80)
            .map_err(|_| OriginUrlError::Authority(url.to_string()))?;
        Ok(OriginUrl { authority })
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Lower-cased host to match (without port); `None` matches any.
    pub host: Option<String>,
    pub path_prefix: String,
    pub origin: OriginUrl,
    pub preserve_host: bool,
    /// Who may use this route (None: anyone who reaches the listener).
    pub clients_allowed: Option<crate::access::clients::ClientList>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls() {
        assert!(OriginUrl::parse("http://127.0.0.1:8080").is_ok());
        assert!(OriginUrl::parse("http://h/").is_ok());
        assert!(OriginUrl::parse("https://h").is_err());
        assert!(OriginUrl::parse("http://h/x").is_err());
        assert!(OriginUrl::parse("http://h:0").is_err());
    }
}
