//! Distillation: lossy, per-client transcoding on the request path. Images are decoded,
//! downscaled and re-encoded (`image`), text is compressed (`text`), and `profile` says
//! how hard for which client. All of it is plain functions over bytes: the proxy decides
//! when to call them (`proxy::conn`), and where (inline, or on the job pool for large
//! inputs, `pool`).

pub mod image;
pub mod pool;
pub mod profile;
pub mod text;

pub use profile::Profile;
