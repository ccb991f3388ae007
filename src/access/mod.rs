//! Who may use the proxy and where it may go: the client lists a request is checked
//! against before any upstream work (`clients`), the destination rules checked on the
//! address about to be connected to (`destinations`), numeric hosts in every spelling
//! (`numeric`), over address prefixes (`prefix`); per-client limits on connections and
//! requests per second (`limits`).

pub mod auth;
pub mod clients;
pub mod destinations;
pub mod limits;
pub mod numeric;
pub mod prefix;
