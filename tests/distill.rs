//! Distillation over real sockets: corpus images and text from distill-origin, through
//! distilld, chosen per client, cached per variant, with the original one request away.

mod common;

use std::io::Read;

use common::{Mode, Response, Setup, corpus_dir, temp_path};
use distilld::distill::image::decode::{Format, decode};
use distilld::distill::image::{Limits, Pixels};

in_both_modes!(
    save_data_gets_a_smaller_upright_jpeg_and_others_the_original,
    refinement_and_no_transform_get_the_original,
    distilled_variants_are_cached_per_profile,
    text_is_compressed_by_accept_encoding,
    transparency_and_animation_survive,
    corrupt_and_oversized_images_pass_unchanged,
    preference_page_sets_a_cookie_profile,
    a_revalidated_original_is_distilled,
    webp_goes_only_to_clients_that_name_it_and_is_stored_once,
);

fn limits() -> Limits {
    Limits {
        input_bytes_max: 64 << 20,
        pixels_max: 100_000_000,
        memory_bytes_max: 1 << 30,
        jpeg_scans_max: 1000,
        animation_pixels_max: 100_000_000,
        time_max: std::time::Duration::from_secs(60),
    }
}

/// A fixture's bytes; a missing one fails the test.
fn corpus(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn get(s: &Setup, path: &str, extra: &[&str]) -> Response {
    let mut c = s.client();
    c.send(s.head("GET", path, extra).as_bytes());
    c.response(false)
}

fn pixels(body: &[u8]) -> Pixels {
    match decode(body, &limits()) {
        Ok(d) => d.pixels,
        Err(e) => panic!("response is not a decodable image: {e}"),
    }
}

fn x_distill(r: &Response) -> &str {
    r.header("x-distill").unwrap_or("")
}

fn save_data_gets_a_smaller_upright_jpeg_and_others_the_original(mode: Mode) {
    let s = Setup::new(mode);
    // Large (pool) and small (inline) inputs.
    for name in ["LadyBird.jpg", "hopper_orientation_6.jpg", "coffee.png"] {
        let original = corpus(name);
        let plain = get(&s, &format!("/{name}"), &[]);
        assert_eq!(plain.body, original, "{name}: no hint, no change");
        assert!(!plain.has("x-distill"));
        let r = get(&s, &format!("/{name}"), &["Save-Data: on"]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("image/jpeg"), "{name}");
        assert!(
            r.body.len() * 10 <= original.len() * 9,
            "{name}: {} of {}",
            r.body.len(),
            original.len()
        );
        assert_eq!(Format::sniff(&r.body), Some(Format::Jpeg));
        let p = pixels(&r.body);
        assert!(
            p.width.max(p.height) <= 1024,
            "{name}: {}x{}",
            p.width,
            p.height
        );
        let note = x_distill(&r);
        assert!(
            note.contains(&format!("original-bytes={}", original.len())),
            "{note}"
        );
        assert!(
            note.contains("profile=medium") && note.contains("reason=save-data"),
            "{note}"
        );
        assert!(r.header("vary").is_some_and(|v| v.contains("Save-Data")));
        assert!(
            r.header("etag").is_none_or(|e| e.starts_with("W/")),
            "{r:?}"
        );
    }
    // The EXIF-rotated one comes out upright: 128x128 either way, so check the tag is gone.
    let r = get(&s, "/hopper_orientation_6.jpg", &["Save-Data: on"]);
    assert_eq!(
        decode(&r.body, &limits()).map(|d| d.orientation).ok(),
        Some(1)
    );
    // Client hints choose harder profiles.
    let r = get(&s, "/LadyBird.jpg", &["ECT: 2g"]);
    let p = pixels(&r.body);
    assert_eq!(p.width.max(p.height), 640);
    assert!(x_distill(&r).contains("profile=aggressive"));
}

fn refinement_and_no_transform_get_the_original(mode: Mode) {
    let s = Setup::new(mode);
    let original = corpus("GreenMeadow.jpg");
    let distilled = get(&s, "/GreenMeadow.jpg", &["Save-Data: on"]);
    assert!(distilled.body.len() < original.len());
    let refined = get(
        &s,
        "/GreenMeadow.jpg",
        &["Save-Data: on", "X-Distill-Original: 1"],
    );
    assert_eq!(
        refined.body, original,
        "the original, never the distilled variant"
    );
    let asked = get(
        &s,
        "/GreenMeadow.jpg",
        &["Save-Data: on", "Cache-Control: no-transform"],
    );
    assert_eq!(asked.body, original);
    // An origin that forbids transformation.
    let s = Setup::with(
        mode,
        "",
        &["--cache-control", "public, max-age=60, no-transform"],
    );
    let r = get(&s, "/GreenMeadow.jpg", &["Save-Data: on"]);
    assert_eq!(r.body, original);
    assert!(!r.has("x-distill"));
}

fn distilled_variants_are_cached_per_profile(mode: Mode) {
    let s = Setup::new(mode);
    let (_, before) = s.origin_stats();
    let medium = get(&s, "/LadyBird.jpg", &["Save-Data: on"]);
    let again = get(&s, "/LadyBird.jpg", &["Save-Data: on"]);
    assert_eq!(again.body, medium.body);
    assert!(
        again
            .header("cache-status")
            .is_some_and(|c| c.contains("hit")),
        "{again:?}"
    );
    let aggressive = get(&s, "/LadyBird.jpg", &["ECT: slow-2g"]);
    assert!(aggressive.body.len() < medium.body.len());
    let original = get(&s, "/LadyBird.jpg", &[]);
    assert_eq!(original.body, corpus("LadyBird.jpg"));
    let (_, after) = s.origin_stats();
    assert_eq!(
        after - before - 1,
        1,
        "one origin fetch served every variant"
    );
}

fn text_is_compressed_by_accept_encoding(mode: Mode) {
    let s = Setup::new(mode);
    let original = corpus("bootstrap.css");
    for (accept, coding) in [
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("gzip", "gzip"),
    ] {
        let r = get(
            &s,
            "/bootstrap.css",
            &[&format!("Accept-Encoding: {accept}")],
        );
        assert_eq!(r.header("content-encoding"), Some(coding), "{accept}");
        assert!(
            r.header("vary")
                .is_some_and(|v| v.contains("Accept-Encoding"))
        );
        assert!(
            r.body.len() * 4 < original.len(),
            "{coding}: {}",
            r.body.len()
        );
        let mut back = Vec::new();
        match coding {
            "zstd" => back = zstd::decode_all(&r.body[..]).unwrap_or_default(),
            "br" => {
                brotli::Decompressor::new(&r.body[..], 4096)
                    .read_to_end(&mut back)
                    .ok();
            }
            _ => {
                flate2::read::GzDecoder::new(&r.body[..])
                    .read_to_end(&mut back)
                    .ok();
            }
        }
        assert_eq!(back, original, "{coding} decodes to the original");
    }
    let plain = get(&s, "/bootstrap.css", &[]);
    assert_eq!(plain.body, original);
    assert!(!plain.has("content-encoding"));
    // Already compressed or binary: untouched.
    let png = get(&s, "/camera.png", &["Accept-Encoding: gzip"]);
    assert_eq!(png.body, corpus("camera.png"));
}

fn transparency_and_animation_survive(mode: Mode) {
    let s = Setup::new(mode);
    let r = get(
        &s,
        "/Arc-Colors-Transparent-Wallpaper.png",
        &["Save-Data: on"],
    );
    assert_eq!(r.header("content-type"), Some("image/png"));
    let p = pixels(&r.body);
    assert_eq!((p.width, p.channels), (1024, 4));
    assert!(p.data.chunks_exact(4).any(|px| px[3] < 255), "alpha kept");
    let gif = corpus("iss634.gif");
    let r = get(&s, "/iss634.gif", &["Save-Data: on"]);
    assert_eq!(
        r.body, gif,
        "an animated GIF passes unless the profile flattens"
    );
    let r = get(&s, "/iss634.gif", &["ECT: 2g"]);
    assert_eq!(
        r.header("content-type"),
        Some("image/jpeg"),
        "aggressive flattens"
    );
}

fn corrupt_and_oversized_images_pass_unchanged(mode: Mode) {
    let dir = temp_path("corrupt-root");
    std::fs::create_dir_all(&dir).ok();
    let mut broken = corpus("GreenMeadow.jpg");
    broken.truncate(broken.len() / 3);
    broken.extend(std::iter::repeat_n(0x55, 5000));
    std::fs::write(dir.join("broken.jpg"), &broken).ok();
    std::fs::write(dir.join("notreally.png"), b"this is not a PNG at all").ok();
    // 2560x1600: over this proxy's pixel limit (and distilled under the default one, in
    // save_data_gets_a_smaller_upright_jpeg_and_others_the_original).
    let big = corpus("LadyBird.jpg");
    let p = pixels(&big);
    assert!(p.width * p.height > 1_000_000, "{}x{}", p.width, p.height);
    std::fs::write(dir.join("big.jpg"), &big).ok();
    let s = Setup::with_root(mode, "[distill]\npixels_max = 1000000\n", &dir, &[]);
    for name in ["broken.jpg", "notreally.png", "big.jpg"] {
        let r = get(&s, &format!("/{name}"), &["Save-Data: on"]);
        let want = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((r.status, r.body.len()), (200, want.len()), "{name}");
        assert_eq!(r.body, want, "{name} passes unchanged");
    }
    // The connection and the proxy are fine afterwards.
    let r = get(&s, "/big.jpg", &[]);
    assert_eq!(r.status, 200);
}

fn preference_page_sets_a_cookie_profile(mode: Mode) {
    let s = Setup::new(mode);
    let r = get(&s, "/.distilld/profile?set=aggressive", &[]);
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap_or("").to_string();
    assert!(
        cookie.starts_with("distilld_profile=aggressive"),
        "{cookie}"
    );
    assert!(r.text().contains("aggressive</a> (current)"));
    let value = cookie.split(';').next().unwrap_or("");
    let r = get(&s, "/rocket.jpg", &[&format!("Cookie: {value}")]);
    assert!(
        x_distill(&r).contains("profile=aggressive; reason=preference"),
        "{r:?}"
    );
    let p = pixels(&r.body);
    assert!(p.width.max(p.height) <= 640);
    assert_eq!(get(&s, "/.distilld/profile?set=nonsense", &[]).status, 400);
}

fn a_revalidated_original_is_distilled(mode: Mode) {
    let s = Setup::with(mode, "", &["--cache-control", "public, max-age=1"]);
    let original = corpus("rocket.jpg");
    assert_eq!(get(&s, "/rocket.jpg", &[]).body, original);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Stale now: the origin answers the revalidation with 304, and the refreshed stored
    // original is distilled for this client.
    let r = get(&s, "/rocket.jpg", &["Save-Data: on"]);
    assert!(x_distill(&r).contains("profile=medium"), "{r:?}");
    assert!(r.body.len() < original.len());
    assert_eq!(Format::sniff(&r.body), Some(Format::Jpeg));
}

fn webp_goes_only_to_clients_that_name_it_and_is_stored_once(mode: Mode) {
    use distilld::distill::image::webp::decode_rgba;
    let s = Setup::new(mode);
    let (_, before) = s.origin_stats();
    let chrome = "Accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
    let webp = get(&s, "/LadyBird.jpg", &["Save-Data: on", chrome]);
    assert_eq!(webp.header("content-type"), Some("image/webp"), "{webp:?}");
    let (w, h, _) = decode_rgba(&webp.body).expect("a WebP that decodes");
    assert!(
        webp.header("vary").is_some_and(|v| v.contains("Accept")),
        "{webp:?}"
    );
    assert!(
        webp.header("etag").is_some_and(|e| e.ends_with("-webp\"")),
        "{webp:?}"
    );
    // Another WebP client's Accept, spelled otherwise: the same stored copy.
    let other = get(
        &s,
        "/LadyBird.jpg",
        &["Save-Data: on", "Accept: image/webp;q=0.9"],
    );
    assert!(
        other
            .header("cache-status")
            .is_some_and(|c| c.contains("hit")),
        "{other:?}"
    );
    assert_eq!(other.body, webp.body);
    // Clients that did not name WebP never get it.
    for accept in [
        "Accept: */*",
        "Accept: image/*",
        "Accept: image/webp;q=0",
        "",
    ] {
        let extra: Vec<&str> = ["Save-Data: on", accept]
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect();
        let r = get(&s, "/LadyBird.jpg", &extra);
        assert_eq!(
            r.header("content-type"),
            Some("image/jpeg"),
            "{accept}: {r:?}"
        );
        let p = pixels(&r.body);
        assert_eq!(
            (p.width, p.height),
            (w, h),
            "{accept}: the same size as the WebP"
        );
    }
    let (_, after) = s.origin_stats();
    // (The second stats request counts itself.)
    assert_eq!(
        after - before - 1,
        1,
        "one origin fetch served every variant"
    );
    // Transparency survives in WebP too.
    let r = get(
        &s,
        "/Arc-Colors-Transparent-Wallpaper.png",
        &["Save-Data: on", chrome],
    );
    assert_eq!(r.header("content-type"), Some("image/webp"));
    let (w, _, rgba) = decode_rgba(&r.body).expect("decodes");
    assert_eq!(w, 1024);
    assert!(rgba.chunks_exact(4).any(|px| px[3] < 255), "alpha kept");
}
