//! The response head parser: any bytes an origin (or a peer) sends back.
#![no_main]
use distilld::http::request::HeadLimits;
use distilld::http::response::parse_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits {
        header_bytes_max: 65536,
        headers_count_max: 100,
    };
    let is_head = data.first().is_some_and(|b| b & 1 == 1);
    if let Ok(Some((_, n))) = parse_response(data, limits, is_head) {
        assert!(n <= data.len());
    }
});
