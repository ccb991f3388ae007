//! The request pipeline, sans-IO: a client connection's state machine, routing, the
//! header rewriting a proxy owes both sides, and the upstream keep-alive pool.
//!
//! See LIFECYCLE.md beside this file for one request walked end to end.

pub mod buf;
pub mod conn;
pub mod heads;
pub mod held;
pub mod local;
pub mod out;
pub mod pool;
pub mod prefs;
pub mod route;
pub mod shard_local;
pub mod stats;

pub use conn::{Action, Conn, Now, UpstreamFailure};
