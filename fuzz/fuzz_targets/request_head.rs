//! The request head parser and the target parser behind it: any bytes a client sends.
#![no_main]
use distilld::http::request::{HeadLimits, parse_request};
use distilld::http::target::parse_target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits {
        header_bytes_max: 32768,
        headers_count_max: 100,
    };
    if let Ok(Some((head, n))) = parse_request(data, limits) {
        assert!(n <= data.len());
        let _ = parse_target(head.target(), head.method());
        let _ = head.wants_keep_alive();
        let _ = head.host();
        let _ = head.fields().count();
    }
});
