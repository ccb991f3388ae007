//! Who may use the proxy: the client lists a request is checked against before any
//! upstream work (`clients`), over address prefixes (`prefix`).

pub mod clients;
pub mod prefix;
