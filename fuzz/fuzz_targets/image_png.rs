//! The png decoder path of a distillation job (`common/image.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common/image.rs"]
mod image;

fuzz_target!(|data: &[u8]| image::transcode_as(b"\x89PNG\r\n\x1a\n", data));
