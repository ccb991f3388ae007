//! Cache-Control (and the fields read with it) as an origin may send them: the input
//! is split into field values at newlines.
#![no_main]
use distilld::cache::control::CacheControl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = ["cache-control", "pragma", "expires", "cache-control"];
    let fields = data
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, v)| (names[i % names.len()], v));
    let _ = CacheControl::from_fields(fields);
});
