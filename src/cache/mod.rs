//! The cache (RFC 9111, shared by all shards of a node): Cache-Control parsing and the
//! freshness arithmetic (sans-IO), stored objects, the lock-free store with its S3-FIFO
//! policy, and request collapsing. `proxy::conn` decides per request what to do with it.

pub mod body;
pub mod control;
pub mod flight;
pub mod freshness;
pub mod key;
pub mod object;
pub mod s3fifo;
pub mod shard_refs;
pub mod store;
pub mod targeted;

pub use object::Object;
pub use store::Store;
