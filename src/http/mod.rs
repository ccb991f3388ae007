//! Sans-IO HTTP/1.1: request and response heads (parsed with `httparse`), body framing
//! (length, chunked, close-delimited) and the hop-by-hop header rules a proxy applies.
//!
//! Nothing here touches a socket or a clock: bytes in, parsed values or bytes out.

pub mod body;
pub mod date;
pub mod error;
pub mod headers;
pub mod range;
pub mod request;
pub mod response;
pub mod target;

pub use error::HttpError;
