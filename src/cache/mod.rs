//! The cache (RFC 9111, shared). So far: the sans-IO rules — Cache-Control parsing and
//! the freshness arithmetic. The store, request collapsing and the wiring into the
//! proxy pipeline come with the rest of the cache issue.

pub mod control;
pub mod freshness;
pub mod s3fifo;
