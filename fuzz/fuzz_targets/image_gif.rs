//! The gif decoder path of a distillation job (decode, resize, encode), with limits
//! small enough for many runs a second. Inputs that do not start with the format's
//! magic get it in front, so every run reaches the decoder.
#![no_main]
use distilld::distill::image::{Limits, transcode};
use libfuzzer_sys::fuzz_target;

const MAGIC: &[u8] = b"GIF89a";

fuzz_target!(|data: &[u8]| {
    let input;
    let data = if data.starts_with(MAGIC) {
        data
    } else {
        input = [MAGIC, data].concat();
        &input
    };
    let limits = Limits {
        input_bytes_max: 1 << 20,
        pixels_max: 4_000_000,
        memory_bytes_max: 64 << 20,
        jpeg_scans_max: 64,
        time_max: std::time::Duration::from_secs(2),
    };
    let profile = distilld::distill::profile::builtin()
        .into_iter()
        .find(|p| p.name == "medium")
        .expect("the medium profile");
    let _ = transcode(data, &profile, &limits);
});
