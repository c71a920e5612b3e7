//! Pieces of HTML: escaping, the page frame, sizes and times, paths in URLs. Everything that
//! came from a repository (names, tags, hosts, file text) goes through [`esc`] before it
//! reaches a page.

use std::fmt::Write;

use chrono::{DateTime, Utc};

/// Escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes in a URL query value: unreserved characters as they are, every other byte
/// percent-encoded, so that names that are not UTF-8 survive the round trip.
pub fn url_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
            out.push(c as char);
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
    out
}

/// The inverse of [`url_bytes`] for one query value (`+` is a space, as forms send it).
pub fn decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' => match (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The raw bytes of one parameter of a query string, if present.
pub fn query_param(query: Option<&str>, name: &str) -> Option<Vec<u8>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode_bytes(v))
    })
}

/// A query parameter as text (lossy), for ids, formats and the like.
pub fn query_text(query: Option<&str>, name: &str) -> Option<String> {
    query_param(query, name).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn size(bytes: u64) -> String {
    hoard_core::progress::human_size(bytes, 1)
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn time_ns(ns: i64) -> String {
    DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

/// `rwxr-x---` from permission bits.
pub fn mode(m: u32) -> String {
    let mut s = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (m >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#222}\
header{background:#234;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}\
header a{color:#fff;text-decoration:none}header b{font-size:1.1em}\
main{padding:1em 1.2em}table{border-collapse:collapse;width:100%}\
td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.crumbs{margin:.3em 0 .8em}.muted{color:#777}.err{color:#a00}.tag{background:#e8eef6;border-radius:3px;padding:0 .3em;margin-right:.3em}\
pre{background:#f7f7f7;padding:.8em;overflow:auto;max-height:40em}\
.day{margin-top:1em;font-weight:bold}form.inline{display:inline}\
.mod-add{color:#070}.mod-del{color:#a00}.mod-mod{color:#a60}";

/// The page frame: header with navigation, then `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content='width=device-width'><title>{} · hoard</title>\
<style>{STYLE}</style></head><body><header><b>hoard</b>\
<a href='/'>Snapshots</a><a href='/diff'>Diff</a><a href='/health'>Health</a></header>\
<main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_url_bytes_round_trip() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let odd = b"/dir/name-\xff\xfe &?#%+.txt";
        let enc = url_bytes(odd);
        assert!(enc.is_ascii() && !enc.contains('&') && !enc.contains('#'));
        assert_eq!(decode_bytes(&enc), odd);
        let q = format!("a=1&path={enc}&b=2");
        assert_eq!(query_param(Some(&q), "path").unwrap(), odd);
        assert_eq!(query_text(Some("format=zip"), "format").unwrap(), "zip");
        assert_eq!(mode(0o750), "rwxr-x---");
    }
}
