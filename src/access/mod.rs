//! Who may use the proxy and where it may go: the client lists a request is checked
//! against before any upstream work (`clients`), the destination rules checked on the
//! address about to be connected to (`destinations`), numeric hosts in every spelling
//! (`numeric`), over address prefixes (`prefix`).

pub mod clients;
pub mod destinations;
pub mod numeric;
pub mod prefix;
