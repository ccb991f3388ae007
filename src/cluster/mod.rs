//! Clustering: N nodes as one cache. Each URL has one owner node (weighted rendezvous
//! hashing over the primary cache key, `ring`); a node that does not own a request's
//! key forwards it to the owner, once (`hop`), and keeps the hottest of those answers a
//! few seconds (`near`).

pub mod auth;
pub mod hop;
pub mod near;
pub mod ring;
pub mod swim;
