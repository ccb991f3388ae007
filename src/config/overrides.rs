//! Where a running node's config comes from: the file (or the embedded default) and the
//! command line's overrides, kept so that a reload reads the file again and applies the
//! same overrides over it.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::routes::{OriginUrl, Route};
use super::{Config, IoChoice};

/// The command line's part of the config.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub path: Option<PathBuf>,
    pub listen: Option<String>,
    pub origin: Option<String>,
    pub workers: Option<usize>,
    pub io: Option<String>,
    /// `--admin ADDR` or `--admin off`.
    pub admin: Option<String>,
}

impl Source {
    /// Reads and validates the file (or the embedded default) and applies the overrides.
    pub fn load(&self) -> Result<Config, String> {
        let mut cfg = match &self.path {
            Some(p) => Config::from_file(p),
            None => Config::embedded_default(),
        }
        .map_err(|e| e.to_string())?;
        if let Some(l) = &self.listen {
            cfg.listen = l
                .parse()
                .map_err(|e| format!("--listen {l:?} is not an IP:port address ({e})"))?;
        }
        if let Some(o) = &self.origin {
            let origin = OriginUrl::parse(o).map_err(|e| format!("--origin: {e}"))?;
            cfg.routes.push(Route {
                host: None,
                path_prefix: "/".into(),
                origin,
                preserve_host: false,
                clients_allowed: None,
            });
        }
        if let Some(io) = &self.io {
            cfg.io = IoChoice::parse(io)
                .ok_or_else(|| format!("--io {io:?} is not one of auto, uring, epoll"))?;
        }
        if let Some(w) = self.workers {
            if w == 0 || w > 1024 {
                return Err(format!("--workers {w} is outside 1..=1024"));
            }
            cfg.workers = w;
        }
        if let Some(a) = &self.admin {
            cfg.admin = match a.as_str() {
                "off" => None,
                addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
                    format!("--admin {addr:?} is neither an IP:port address nor off ({e})")
                })?),
            };
        }
        Ok(cfg)
    }
}
