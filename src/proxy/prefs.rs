//! The page where a user picks how hard distilld distils for them, as TranSend's users
//! set a quality slider: `GET /.distilld/profile` on any host shows the choices,
//! `?set=NAME` remembers one in a cookie (a year), `?set=` forgets it.

use crate::distill::profile::{COOKIE, Choice};

/// Status, extra header lines and HTML body for a request to the page.
pub fn answer(choice: &Choice, query: &str, current: Option<&str>) -> (u16, Vec<u8>, String) {
    let wanted = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "set")
        .map(|(_, v)| v);
    let mut extra = Vec::new();
    let mut now = current.map(str::to_string);
    let mut note = String::new();
    match wanted {
        Some("") => {
            extra.extend_from_slice(
                format!("Set-Cookie: {COOKIE}=; Path=/; Max-Age=0; SameSite=Lax\r\n").as_bytes(),
            );
            now = None;
            note = "Preference cleared.".into();
        }
        Some(name) if choice.find(name).is_some() => {
            extra.extend_from_slice(
                format!("Set-Cookie: {COOKIE}={name}; Path=/; Max-Age=31536000; SameSite=Lax\r\n")
                    .as_bytes(),
            );
            now = Some(name.to_string());
            note = format!("Saved: {name}.");
        }
        Some(_) => {
            return (
                400,
                Vec::new(),
                page(choice, now.as_deref(), "No such profile."),
            );
        }
        None => {}
    }
    (200, extra, page(choice, now.as_deref(), &note))
}

fn page(choice: &Choice, current: Option<&str>, note: &str) -> String {
    let mut rows = String::new();
    for p in &choice.profiles {
        let mark = if current == Some(p.name.as_str()) {
            " (current)"
        } else {
            ""
        };
        let what = if p.is_off() {
            "originals, unchanged".to_string()
        } else {
            format!(
                "images at most {} px, JPEG quality {}{}",
                p.max_edge,
                p.quality,
                if p.grayscale { ", grayscale" } else { "" }
            )
        };
        rows.push_str(&format!(
            "<li><a href=\"?set={0}\">{0}</a>{mark}: {what}</li>\n",
            p.name
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>distilld: your profile</title></head>\n\
         <body><h1>How much should distilld shrink pages for you?</h1>\n<p>{note}</p>\n<ul>\n{rows}</ul>\n\
         <p><a href=\"?set=\">Forget my choice</a> (the proxy decides from Save-Data and your link).</p>\n\
         <p>Any distilled image is one request away from its original: send \
         <code>X-Distill-Original: 1</code>.</p></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice() -> Choice {
        Choice {
            profiles: crate::distill::profile::builtin(),
            rules: Vec::new(),
            default: "off".into(),
            save_data: "medium".into(),
            slow_link: "aggressive".into(),
            medium_link: "medium".into(),
        }
    }

    #[test]
    fn sets_clears_and_refuses() {
        let (s, extra, body) = answer(&choice(), "set=aggressive", None);
        assert_eq!(s, 200);
        assert!(String::from_utf8_lossy(&extra).contains("distilld_profile=aggressive; Path=/"));
        assert!(body.contains("aggressive</a> (current)"));
        let (_, extra, _) = answer(&choice(), "set=", Some("light"));
        assert!(String::from_utf8_lossy(&extra).contains("Max-Age=0"));
        assert_eq!(answer(&choice(), "set=bogus", None).0, 400);
        let (s, extra, body) = answer(&choice(), "", Some("light"));
        assert!(s == 200 && extra.is_empty() && body.contains("light</a> (current)"));
    }
}
