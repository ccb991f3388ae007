//! What the image targets share: a distillation job's whole image path (decode, resize,
//! encode, both as JPEG/PNG and as WebP, animations included) with limits small enough
//! for many runs a second. Inputs that do not start
//! with the format's magic get it in front, so every run reaches the decoder.

use distilld::distill::image::{Limits, Output, transcode_to};

pub fn transcode_as(magic: &[u8], data: &[u8]) {
    let input;
    let data = if data.starts_with(magic) {
        data
    } else {
        input = [magic, data].concat();
        &input
    };
    let limits = Limits {
        input_bytes_max: 1 << 20,
        pixels_max: 4_000_000,
        memory_bytes_max: 64 << 20,
        jpeg_scans_max: 64,
        animation_pixels_max: 4_000_000,
        time_max: std::time::Duration::from_secs(2),
    };
    let profile = distilld::distill::profile::builtin()
        .into_iter()
        .find(|p| p.name == "medium")
        .expect("the medium profile");
    for output in [Output::Classic, Output::Webp] {
        let _ = transcode_to(data, &profile, &limits, output);
    }
}
