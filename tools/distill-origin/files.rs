//! Files under --root, with the headers a real origin sends and conditional requests.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use crate::Options;
use crate::endpoints::{send, simple, write_head};
use crate::exchange::{Request, piece_bytes, write_paced};

pub fn serve(req: &mut Request<'_>, opts: &Options, keep_alive: bool) -> std::io::Result<bool> {
    if !matches!(req.head.method(), "GET" | "HEAD") {
        return simple(req.stream(), 405, "only GET and HEAD\n", keep_alive);
    }
    let target = req
        .head
        .target()
        .split('?')
        .next()
        .unwrap_or("")
        .to_string();
    let Some(path) = opts.root.as_deref().and_then(|root| resolve(root, &target)) else {
        return simple(req.stream(), 404, "not found\n", keep_alive);
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return simple(req.stream(), 404, "not found\n", keep_alive);
    };
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let secs = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{:x}-{:x}\"", meta.len(), secs);
    let last_modified = httpdate::fmt_http_date(mtime);
    let validators = vec![
        ("ETag", etag.clone()),
        ("Last-Modified", last_modified),
        ("Cache-Control", opts.cache_control.clone()),
    ];
    if not_modified(req, &etag, secs) {
        return send(req.stream(), 304, &validators, b"", keep_alive);
    }
    let mut fields = validators;
    fields.push(("Content-Type", content_type(&path).to_string()));
    fields.push(("Content-Length", meta.len().to_string()));
    let head_only = req.head.is_head();
    let s = req.stream();
    write_head(s, 200, &fields, keep_alive)?;
    if !head_only {
        let mut file = File::open(&path)?;
        let mut piece = vec![0u8; piece_bytes(opts.rate_kbps)];
        let start = Instant::now();
        let mut sent = 0u64;
        loop {
            let n = file.read(&mut piece)?;
            if n == 0 {
                break;
            }
            write_paced(s, &piece[..n], opts.rate_kbps, sent, start)?;
            sent += n as u64;
        }
    }
    Ok(keep_alive)
}

/// Maps a URL path under `root`, refusing anything that would leave it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = Path::new(url_path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || url_path.contains('\0') {
        return None;
    }
    let full = root.join(rel);
    let canonical = full.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    (canonical.starts_with(&root) && canonical.is_file()).then_some(canonical)
}

fn not_modified(req: &Request<'_>, etag: &str, mtime_secs: u64) -> bool {
    let field = |name: &str| {
        req.head
            .fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    if let Some(inm) = field("if-none-match") {
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    if let Some(ims) = field("if-modified-since")
        && let Ok(t) = httpdate::parse_http_date(&ims)
    {
        let since = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return mtime_secs <= since;
    }
    false
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "xml" => "application/xml",
        "txt" | "tsv" | "md" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}
