//! The config loader: any text in a config file is refused with errors or accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = distilld::config::Config::from_toml_str(text, "fuzz");
    }
});
