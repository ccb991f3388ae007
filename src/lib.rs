//! distilld: an HTTP proxy appliance that caches, distills and clusters.
//!
//! The crate is the engine; `src/main.rs` is the daemon's command line and
//! `tools/` holds the bundled origin simulator. See ARCHITECTURE.md for the codemap.

pub mod access;
pub mod appliance;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod distill;
pub mod histogram;
pub mod http;
#[cfg(test)]
pub(crate) mod peak_alloc;
pub mod proxy;
pub mod shard;
