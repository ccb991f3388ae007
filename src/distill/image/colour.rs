//! Colour conversion to sRGB through the image's embedded ICC profile (qcms, the colour
//! engine Firefox uses, so a distilled image shows the colours the original would).

use qcms::DataType;

/// Converts RGB or RGBA pixels described by an RGB profile to sRGB in place. A profile
/// qcms cannot read leaves the pixels as they are (taken as sRGB).
pub fn rgb_to_srgb(data: &mut [u8], channels: u8, icc: &[u8]) {
    let ty = match channels {
        3 => DataType::RGB8,
        4 => DataType::RGBA8,
        _ => return,
    };
    with_transform(icc, ty, ty, |t| t.apply(data));
}

/// Converts ink values (0 = no ink; four bytes per pixel) to RGB through a CMYK profile.
/// None when the profile is not a CMYK profile qcms can use.
pub fn cmyk_to_srgb(cmyk: &[u8], icc: &[u8]) -> Option<Vec<u8>> {
    if !is_cmyk_profile(icc) {
        return None;
    }
    let mut rgb = vec![0u8; cmyk.len() / 4 * 3];
    let mut done = false;
    with_transform(icc, DataType::CMYK, DataType::RGB8, |t| {
        t.convert(&cmyk[..rgb.len() / 3 * 4], &mut rgb);
        done = true;
    });
    done.then_some(rgb)
}

/// Header colour space 'CMYK' and an AToB0 table: qcms builds CMYK transforms only from
/// the lookup table, and would otherwise fall back to a three-channel path.
pub fn is_cmyk_profile(icc: &[u8]) -> bool {
    if icc.get(16..20) != Some(b"CMYK") {
        return false;
    }
    let count = icc
        .get(128..132)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    (0..count.min(100)).any(|i| icc.get(132 + 12 * i..136 + 12 * i) == Some(b"A2B0"))
}

/// Transforms to sRGB, built once per profile and pixel layout and kept per thread:
/// building one (reading the profile, filling its tables) costs more than applying it
/// to a small image, and the same few camera and display profiles come back again and
/// again. `apply` is not called for a profile qcms cannot read.
fn with_transform(icc: &[u8], from: DataType, to: DataType, apply: impl FnOnce(&qcms::Transform)) {
    use std::collections::HashMap;
    use std::hash::{DefaultHasher, Hash, Hasher};
    const KEPT: usize = 16;
    type Key = (u64, u8, u8);
    thread_local! {
        static SRGB: Box<qcms::Profile> = {
            let mut p = qcms::Profile::new_sRGB();
            // 8-bit output tables: the fast path of the transform.
            p.precache_output_transform();
            p
        };
        static TRANSFORMS: std::cell::RefCell<HashMap<Key, Option<qcms::Transform>>> =
            std::cell::RefCell::default();
    }
    let mut h = DefaultHasher::new();
    icc.hash(&mut h);
    let key = (h.finish(), from as u8, to as u8);
    TRANSFORMS.with_borrow_mut(|cache| {
        if !cache.contains_key(&key) {
            if cache.len() >= KEPT {
                cache.clear();
            }
            // qcms reads the AToB0 (perceptual) table whatever the intent, as browsers do;
            // for matrix profiles the intents agree anyway.
            let t = qcms::Profile::new_from_slice(icc, false).and_then(|input| {
                SRGB.with(|srgb| {
                    qcms::Transform::new_to(&input, srgb, from, to, qcms::Intent::Perceptual)
                })
            });
            cache.insert(key, t);
        }
        if let Some(Some(t)) = cache.get(&key) {
            apply(t);
        }
    });
}
