//! Distillation profiles and how one is chosen for a request: refinement (the original,
//! asked for explicitly) first, then the user's own preference (cookie), then the
//! operator's rules (client address, User-Agent), then what the client says of its link
//! (`Save-Data`, `ECT`, `Downlink`), then the default.

use std::net::IpAddr;

use crate::access::prefix::in_prefix;
pub use crate::access::prefix::parse_prefix;

use crate::http::headers::{list_items, trim, value_and_params};

/// How hard to distill.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// Longest edge of an image after distillation, pixels.
    pub max_edge: u32,
    /// JPEG quality, 1..=100.
    pub quality: u8,
    /// WebP quality, 1..=100, for clients that accept WebP: chosen so its median
    /// SSIMULACRA2 on the corpus is at least the JPEG quality's (bench/run.sh webp).
    pub webp_quality: u8,
    /// Lossy still WebP through libwebp's sharp RGB->YUV conversion: smaller at equal
    /// SSIMULACRA2, 1.34x the CPU of the WebP job (bench/README.md, webp). Off in every
    /// built-in profile, so the WebP path keeps its lead over libvips.
    pub webp_sharp_yuv: bool,
    pub grayscale: bool,
    /// Animated GIFs become their first frame (else they pass unchanged).
    pub flatten_animation: bool,
    /// Compress text (zstd / br / gzip, by Accept-Encoding).
    pub compress_text: bool,
}

impl Clone for Profile {
    fn clone(&self) -> Profile {
        let mut p = Profile {
            name: String::new(),
            ..*self
        };
        p.name.clone_from(&self.name);
        p
    }

    /// A copy in this one's memory (the name's buffer reused).
    fn clone_from(&mut self, source: &Profile) {
        let mut name = std::mem::take(&mut self.name);
        name.clone_from(&source.name);
        *self = Profile { name, ..*source };
    }
}

impl Profile {
    pub fn is_off(&self) -> bool {
        self.name == "off"
    }
}

/// The built-in profiles; config may redefine any of them or add more.
pub fn builtin() -> Vec<Profile> {
    let p = |name: &str,
             max_edge,
             (quality, webp_quality),
             grayscale,
             flatten_animation,
             compress_text| Profile {
        name: name.into(),
        max_edge,
        quality,
        webp_quality,
        webp_sharp_yuv: false,
        grayscale,
        flatten_animation,
        compress_text,
    };
    vec![
        // Measured on the corpus (2026-12-01, bench/run.sh webp and jpeg-variants), median
        // SSIMULACRA2: the JPEG qualities (MS-SSIM tables) give what the standard tables
        // gave at 80, 65 and 45 (opaque stills: 79.1, 71.5, 63.5 before; 79.4 at 80,
        // about 71.5 at 63, about 63.6 at 42 now), and each WebP quality at least that
        // (light 85: 81.5 against 81.0; medium 75: 75.7 against 75.6; aggressive 45:
        // 67.2 against 65.9, over all stills).
        p("off", 0, (100, 100), false, false, true), // lossless compression only
        p("light", 1920, (80, 85), false, false, true),
        p("medium", 1024, (63, 75), false, false, true),
        p("aggressive", 640, (42, 45), false, true, true),
    ]
}

/// An operator's rule: clients matching every given condition get `profile`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub client: Option<(IpAddr, u8)>,
    pub user_agent: Option<String>,
    pub profile: String,
}

impl Rule {
    fn matches(&self, peer: IpAddr, user_agent: Option<&[u8]>) -> bool {
        let addr_ok = self
            .client
            .is_none_or(|(net, bits)| in_prefix(peer, net, bits));
        let ua_ok = self.user_agent.as_ref().is_none_or(|want| {
            user_agent.is_some_and(|ua| memchr::memmem::find(ua, want.as_bytes()).is_some())
        });
        addr_ok && ua_ok
    }
}

/// The name of the cookie the preference page sets.
pub const COOKIE: &str = "distilld_profile";
/// A request header asking for the original (refinement), like the URL marker.
pub const ORIGINAL_HEADER: &str = "x-distill-original";

/// What the request says about itself, read once.
#[derive(Debug, Default)]
pub struct Signals<'a> {
    pub original: bool,
    pub cookie: Option<&'a str>,
    /// As sent: a rule's text is looked for in its bytes (a browser's is 100-200 bytes,
    /// read on every request, and no rule needs it as text).
    pub user_agent: Option<&'a [u8]>,
    pub save_data: bool,
    /// Effective connection type (`ECT`): slow-2g, 2g, 3g, 4g.
    pub ect: Option<&'a [u8]>,
    /// `Downlink`, Mbit/s.
    pub downlink: Option<f64>,
}

impl<'a> Signals<'a> {
    pub fn read(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Signals<'a> {
        let mut s = Signals::default();
        // Only the values of the fields read here are trimmed: a browser sends a dozen
        // fields, most of them none of these.
        for (name, value) in fields {
            if name.eq_ignore_ascii_case("save-data") {
                s.save_data = trim(value).eq_ignore_ascii_case(b"on");
            } else if name.eq_ignore_ascii_case("ect") {
                s.ect = Some(trim(value));
            } else if name.eq_ignore_ascii_case("downlink") {
                s.downlink = std::str::from_utf8(trim(value))
                    .ok()
                    .and_then(|d| d.parse().ok());
            } else if name.eq_ignore_ascii_case("user-agent") {
                s.user_agent = Some(trim(value));
            } else if name.eq_ignore_ascii_case(ORIGINAL_HEADER) {
                let v = trim(value);
                s.original = !v.is_empty() && v != b"0";
            } else if name.eq_ignore_ascii_case("cookie") {
                s.cookie = s.cookie.or_else(|| cookie_value(trim(value)));
            }
        }
        s
    }
}

/// `distilld_profile=NAME` among `a=b; c=d` pairs.
fn cookie_value(header: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(header).ok()?;
    text.split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

/// The profile settings the chooser reads (from `[distill]`).
#[derive(Debug, Clone)]
pub struct Choice {
    pub profiles: Vec<Profile>,
    pub rules: Vec<Rule>,
    pub default: String,
    pub save_data: String,
    /// For `ECT: slow-2g / 2g`, or a Downlink under 1 Mbit/s.
    pub slow_link: String,
    /// For `ECT: 3g`, or a Downlink under 5 Mbit/s.
    pub medium_link: String,
}

impl Choice {
    pub fn find(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The profile for a request, and why it was chosen (for the X-Distill header).
    pub fn choose(&self, s: &Signals<'_>, peer: IpAddr) -> (&Profile, &'static str) {
        let off = || self.find("off");
        if s.original
            && let Some(p) = off()
        {
            return (p, "original");
        }
        if let Some(p) = s.cookie.and_then(|name| self.find(name)) {
            return (p, "preference");
        }
        if let Some(r) = self.rules.iter().find(|r| r.matches(peer, s.user_agent))
            && let Some(p) = self.find(&r.profile)
        {
            return (p, "rule");
        }
        let by_link = match (s.ect, s.downlink) {
            (Some(e), _) if e.eq_ignore_ascii_case(b"slow-2g") || e.eq_ignore_ascii_case(b"2g") => {
                Some(&self.slow_link)
            }
            (Some(e), _) if e.eq_ignore_ascii_case(b"3g") => Some(&self.medium_link),
            (_, Some(d)) if d < 1.0 => Some(&self.slow_link),
            (_, Some(d)) if d < 5.0 => Some(&self.medium_link),
            _ => None,
        };
        if let Some(p) = by_link.and_then(|n| self.find(n)) {
            return (p, "client-hints");
        }
        if s.save_data
            && let Some(p) = self.find(&self.save_data)
        {
            return (p, "save-data");
        }
        match self.find(&self.default) {
            Some(p) => (p, "default"),
            None => (&self.profiles[0], "default"),
        }
    }
}

/// True when the client's Accept names `image/webp` itself with q > 0. `image/*` and
/// `*/*` do not count: a client that did not name WebP may not decode it.
pub fn accepts_webp<'a>(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> bool {
    let mut named = false;
    for (_, v) in fields.filter(|(n, _)| n.eq_ignore_ascii_case("accept")) {
        for item in list_items(v) {
            let (media_type, params) = value_and_params(item);
            if !media_type.eq_ignore_ascii_case(b"image/webp") {
                continue;
            }
            // RFC 9110 §12.4.2: a weight of 0 means "not acceptable"; a weight we cannot
            // read is taken as not acceptable too.
            let weight = params.split(|&b| b == b';').map(trim).find_map(|p| {
                (p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=")).then(|| {
                    std::str::from_utf8(&p[2..])
                        .ok()?
                        .trim()
                        .parse::<f32>()
                        .ok()
                })
            });
            match weight {
                None => named = true,
                Some(Some(q)) if q > 0.0 && q <= 1.0 => named = true,
                Some(_) => return false,
            }
        }
    }
    named
}

/// Which of zstd, br, gzip the client accepts (q > 0), in that order of preference.
pub fn accepted_encoding<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Option<&'static str> {
    let mut ok = [false; 3];
    for (_, v) in fields.filter(|(n, _)| n.eq_ignore_ascii_case("accept-encoding")) {
        for item in list_items(v) {
            let (coding, params) = value_and_params(item);
            let q_zero = params.split(|&b| b == b';').any(|p| {
                let p = trim(p);
                p.len() >= 2
                    && p[..2].eq_ignore_ascii_case(b"q=")
                    && std::str::from_utf8(&p[2..])
                        .ok()
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        == Some(0.0)
            });
            if q_zero {
                continue;
            }
            for (i, name) in ["zstd", "br", "gzip"].iter().enumerate() {
                if coding.eq_ignore_ascii_case(name.as_bytes()) {
                    ok[i] = true;
                }
            }
        }
    }
    ["zstd", "br", "gzip"]
        .into_iter()
        .zip(ok)
        .find(|(_, y)| *y)
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_image_webp_with_weight_above_zero_asks_for_webp() {
        let accepts = |v: &'static str| accepts_webp([("Accept", v.as_bytes())].into_iter());
        assert!(accepts("image/avif,image/webp,image/apng,*/*;q=0.8"));
        assert!(accepts("IMAGE/WEBP;q=0.5"));
        assert!(accepts("text/html, image/webp ; q=1"));
        assert!(!accepts("*/*"));
        assert!(!accepts("image/*"));
        assert!(!accepts("image/webp;q=0"));
        assert!(!accepts("image/webp;q=0.000"));
        assert!(!accepts("image/webp;q=abc"));
        assert!(!accepts("image/webpx, image/web"));
        assert!(!accepts_webp(std::iter::empty()));
    }

    fn choice() -> Choice {
        Choice {
            profiles: builtin(),
            rules: vec![Rule {
                client: parse_prefix("10.0.0.0/8"),
                user_agent: Some("Opera Mini".into()),
                profile: "aggressive".into(),
            }],
            default: "off".into(),
            save_data: "medium".into(),
            slow_link: "aggressive".into(),
            medium_link: "medium".into(),
        }
    }

    fn pick(fields: &[(&'static str, &'static str)], peer: &str) -> (String, &'static str) {
        let c = choice();
        let s = Signals::read(fields.iter().map(|(n, v)| (*n, v.as_bytes())));
        let (p, why) = c.choose(&s, peer.parse().unwrap());
        (p.name.clone(), why)
    }

    /// A rule's User-Agent text is found in the field's bytes, whatever else they hold.
    #[test]
    fn a_user_agent_rule_reads_the_bytes_sent() {
        let rule = &choice().rules[0];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let read = |ua: &'static [u8]| Signals::read([("User-Agent", ua)].into_iter());
        for (ua, want) in [
            (&b"Opera Mini/9"[..], true),
            (b" Mozilla/5.0 (\xff) Opera Mini/9 ", true),
            (b"Opera Min", false),
            (b"opera mini/9", false),
        ] {
            let s = read(ua);
            assert_eq!(rule.matches(peer, s.user_agent), want, "{ua:?}");
        }
        assert_eq!(read(b"  Opera Mini  ").user_agent, Some(&b"Opera Mini"[..]));
    }

    #[test]
    fn precedence() {
        let lan = "127.0.0.1";
        assert_eq!(pick(&[], lan), ("off".into(), "default"));
        assert_eq!(
            pick(&[("Save-Data", "on")], lan),
            ("medium".into(), "save-data")
        );
        assert_eq!(
            pick(&[("ECT", "2g"), ("Save-Data", "on")], lan).0,
            "aggressive"
        );
        assert_eq!(pick(&[("Downlink", "3.5")], lan).0, "medium");
        assert_eq!(
            pick(
                &[("User-Agent", "Opera Mini/9"), ("Save-Data", "on")],
                "10.1.2.3"
            ),
            ("aggressive".into(), "rule")
        );
        assert_eq!(pick(&[("User-Agent", "Opera Mini/9")], lan).0, "off");
        assert_eq!(
            pick(
                &[
                    ("Cookie", "a=b; distilld_profile=light"),
                    ("Save-Data", "on")
                ],
                lan
            ),
            ("light".into(), "preference")
        );
        assert_eq!(
            pick(
                &[
                    ("Cookie", "distilld_profile=light"),
                    ("X-Distill-Original", "1")
                ],
                lan
            ),
            ("off".into(), "original")
        );
        assert_eq!(pick(&[("Cookie", "distilld_profile=bogus")], lan).0, "off");
    }

    #[test]
    fn encodings_by_our_preference_and_q_zero_refused() {
        let enc =
            |v: &'static str| accepted_encoding([("Accept-Encoding", v.as_bytes())].into_iter());
        assert_eq!(enc("gzip, deflate, br, zstd"), Some("zstd"));
        assert_eq!(enc("gzip, br;q=0.5"), Some("br"));
        assert_eq!(enc("gzip;q=1.0, zstd;q=0"), Some("gzip"));
        assert_eq!(enc("identity"), None);
        assert_eq!(enc(" ZSTD ; q=0 ,, BR ; level=1 "), Some("br"));
        assert_eq!(enc("zstd;foo;q=0.000, gzip;"), Some("gzip"));
        assert_eq!(enc("zstd;q=abc"), Some("zstd"));
        assert_eq!(enc(";q=1, gzipx, gzi"), None);
    }
}
