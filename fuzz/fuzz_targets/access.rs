//! What the forward proxy's rules read from a request: numeric hosts in every spelling,
//! Basic credentials, and the prefixes of a config's lists.
#![no_main]
use distilld::access::auth::basic_credentials;
use distilld::access::numeric::numeric_host;
use distilld::access::prefix::parse_prefix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = basic_credentials(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(ip) = numeric_host(text) {
            // An address it reads is one the standard parser agrees with once spelled out.
            assert_eq!(ip.to_string().parse::<std::net::IpAddr>().ok(), Some(ip));
        }
        let _ = parse_prefix(text);
    }
});
