//! The console's pages, one handler each, in the order a person meets them: the snapshot
//! list, a snapshot's tree, a file, its download, the diff, health, and the actions.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hoard_core::dump::{dump_stream, Archive};
use hoard_core::repository::cache;
use hoard_core::walk::{find_path, Found};
use hoard_core::{Error, NodeType, SnapshotEntry};

use crate::html::{self, esc, page, query_param, query_text, url_bytes};
use crate::{auth, jobs, AppState};

/// Text files up to this size are shown inline.
const PREVIEW_MAX: u64 = 256 << 10;

/// An engine error as a page: not found, bad request, or a server error, in one line.
pub struct Failure(StatusCode, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::SnapshotNotFound(_) | Error::PathNotInSnapshot(_) => StatusCode::NOT_FOUND,
            Error::AmbiguousSnapshot(_) | Error::Invalid { .. } | Error::Share(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::Locked { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = format!("<p class=err>{}</p>", esc(&self.1));
        (self.0, Html(page("Error", &body))).into_response()
    }
}

type Page = Result<Html<String>, Failure>;

fn forbidden(what: &str) -> Failure {
    Failure(
        StatusCode::FORBIDDEN,
        format!("{what} is off: the console was started read-only (hoard serve --allow-restore allows restores, share links and checks)"),
    )
}

async fn snapshot(st: &AppState, id: &str) -> Result<SnapshotEntry, Failure> {
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "latest" {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no snapshot {id:?}"),
        ));
    }
    Ok(st.repo.find_snapshot(id).await?)
}

/// The path parameter as bytes, absolute, `/` when absent.
fn path_param(q: &Option<String>) -> Vec<u8> {
    let p = query_param(q.as_deref(), "path").unwrap_or_default();
    if p.first() == Some(&b'/') {
        p
    } else {
        [b"/".as_slice(), &p].concat()
    }
}

fn newest_first(mut all: Vec<SnapshotEntry>) -> Vec<SnapshotEntry> {
    all.sort_by_key(|s| std::cmp::Reverse(s.snapshot.time));
    all
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tags(t: &[String]) -> String {
    t.iter()
        .map(|t| format!("<span class=tag>{}</span>", esc(t)))
        .collect()
}

// ---- Snapshots --------------------------------------------------------------------------

/// Every snapshot, newest first, grouped by day (the timeline), filtered by host, tag or day.
pub async fn snapshots(State(st): State<AppState>, RawQuery(q): RawQuery) -> Page {
    // Later backups wrote index files this process has not loaded.
    st.repo.refresh_index().await?;
    let all = newest_first(st.repo.snapshots().await?);
    let host = query_text(q.as_deref(), "host");
    let tag = query_text(q.as_deref(), "tag");
    let day = query_text(q.as_deref(), "day");
    let mut hosts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tag_counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut days: BTreeMap<String, usize> = BTreeMap::new();
    for s in &all {
        *hosts.entry(&s.snapshot.hostname).or_default() += 1;
        for t in &s.snapshot.tags {
            *tag_counts.entry(t).or_default() += 1;
        }
        *days
            .entry(s.snapshot.time.format("%Y-%m-%d").to_string())
            .or_default() += 1;
    }
    let mut b = String::new();
    let filter = |k: &str, items: &BTreeMap<&str, usize>| {
        items
            .iter()
            .map(|(v, n)| {
                format!(
                    "<a href='/?{k}={}'>{}</a> ({n})",
                    url_bytes(v.as_bytes()),
                    esc(v)
                )
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let _ = write!(
        b,
        "<p>Hosts: {}<br>Tags: {}</p>{}",
        filter("host", &hosts),
        filter("tag", &tag_counts),
        calendar(&days)
    );
    if host.is_some() || tag.is_some() || day.is_some() {
        b.push_str("<p><a href='/'>show all</a></p>");
    }
    let shown: Vec<&SnapshotEntry> = all
        .iter()
        .filter(|s| host.as_ref().is_none_or(|h| &s.snapshot.hostname == h))
        .filter(|s| tag.as_ref().is_none_or(|t| s.snapshot.tags.contains(t)))
        .filter(|s| {
            day.as_ref()
                .is_none_or(|d| s.snapshot.time.format("%Y-%m-%d").to_string() == *d)
        })
        .collect();
    let _ = write!(b, "<p>{} of {} snapshots</p>", shown.len(), all.len());
    let mut current_day = String::new();
    for s in shown {
        let d = s.snapshot.time.format("%A %Y-%m-%d").to_string();
        if d != current_day {
            if !current_day.is_empty() {
                b.push_str("</table>");
            }
            let _ = write!(
                b,
                "<div class=day>{d}</div><table><tr><th>Snapshot</th><th>Time</th><th>Host</th><th>Tags</th><th>Paths</th><th>Files</th><th>Size</th></tr>"
            );
            current_day = d;
        }
        let (files, bytes) = s
            .snapshot
            .summary
            .as_ref()
            .map(|m| {
                (
                    m.total_files_processed.to_string(),
                    html::size(m.total_bytes_processed),
                )
            })
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr><td><a class=snap href='/s/{id}/tree'>{short}</a></td><td>{time}</td><td>{host}</td><td>{tags}</td><td>{paths}</td><td class=n>{files}</td><td class=n>{bytes}</td></tr>",
            id = s.id,
            short = s.short_id(),
            time = s.snapshot.time.format("%H:%M:%S"),
            host = esc(&s.snapshot.hostname),
            tags = tags(&s.snapshot.tags),
            paths = esc(&s.snapshot.paths.join(" ")),
        );
    }
    if !current_day.is_empty() {
        b.push_str("</table>");
    }
    Ok(Html(page("Snapshots", &b)))
}

/// The last months with snapshots as month grids; each day with snapshots links to them.
fn calendar(days: &BTreeMap<String, usize>) -> String {
    use chrono::{Datelike, NaiveDate};
    let mut months: Vec<(i32, u32)> = days
        .keys()
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| (d.year(), d.month()))
        .collect();
    months.dedup();
    let mut out = String::from("<div id=calendar style='display:flex;gap:2em;flex-wrap:wrap'>");
    for &(y, m) in months.iter().rev().take(3) {
        let Some(first) = NaiveDate::from_ymd_opt(y, m, 1) else {
            continue;
        };
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)
        };
        let len = next.map_or(31, |n| (n - first).num_days()) as u32;
        let _ = write!(
            out,
            "<table style='width:auto'><tr><th colspan=7>{}</th></tr><tr><th>Mo</th><th>Tu</th><th>We</th><th>Th</th><th>Fr</th><th>Sa</th><th>Su</th></tr><tr>",
            first.format("%B %Y")
        );
        let lead = first.weekday().num_days_from_monday();
        out.push_str(&"<td></td>".repeat(lead as usize));
        for day in 1..=len {
            let key = format!("{y:04}-{m:02}-{day:02}");
            match days.get(&key) {
                Some(n) => {
                    let _ = write!(
                        out,
                        "<td><a href='/?day={key}' title='{n} snapshots'><b>{day}</b></a></td>"
                    );
                }
                None => {
                    let _ = write!(out, "<td class=muted>{day}</td>");
                }
            }
            if (lead + day) % 7 == 0 {
                out.push_str("</tr><tr>");
            }
        }
        out.push_str("</tr></table>");
    }
    out.push_str("</div>");
    out
}

// ---- A snapshot's tree ------------------------------------------------------------------

fn breadcrumbs(id: &str, path: &[u8]) -> String {
    let mut out = format!("<div class=crumbs><a href='/s/{id}/tree'>/</a>");
    let mut so_far = Vec::new();
    for part in path.split(|b| *b == b'/').filter(|p| !p.is_empty()) {
        so_far.push(b'/');
        so_far.extend_from_slice(part);
        let _ = write!(
            out,
            " <a href='/s/{id}/tree?path={}'>{}</a> /",
            url_bytes(&so_far),
            esc(&lossy(part))
        );
    }
    out.push_str("</div>");
    out
}

fn header_of(s: &SnapshotEntry) -> String {
    format!(
        "<p>Snapshot <b>{}</b> of {} by {} at {} {} <span class=muted>({})</span></p>",
        s.short_id(),
        esc(&s.snapshot.paths.join(" ")),
        esc(&s.snapshot.hostname),
        html::time(&s.snapshot.time),
        tags(&s.snapshot.tags),
        s.id
    )
}

/// A directory of a snapshot: its entries with sizes, modes and times.
pub async fn tree(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    match tree_page(&st, &id, &q).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn tree_page(st: &AppState, id: &str, q: &Option<String>) -> Result<Response, Failure> {
    let snap = snapshot(st, id).await?;
    let id = snap.id.to_hex();
    let path = path_param(q);
    let tree_id = match find_path(&st.repo, snap.snapshot.tree, &path).await? {
        Found::Root(t) => t,
        Found::Node(n) if n.node_type == NodeType::Dir => n.subtree.ok_or_else(|| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "directory without a tree".into(),
            )
        })?,
        Found::Node(_) => {
            return Ok(
                Redirect::to(&format!("/s/{id}/file?path={}", url_bytes(&path))).into_response(),
            )
        }
    };
    let t = st.repo.load_tree(&tree_id).await?;
    let mut b = header_of(&snap);
    b.push_str(&breadcrumbs(&id, &path));
    let _ = write!(
        b,
        "<p>Download this directory: <a href='/s/{id}/download?path={p}&amp;format=tar'>tar</a> · <a href='/s/{id}/download?path={p}&amp;format=zip'>zip</a></p>",
        p = url_bytes(&path)
    );
    b.push_str(
        "<table><tr><th>Name</th><th>Type</th><th>Size</th><th>Mode</th><th>Modified</th></tr>",
    );
    for n in &t.nodes {
        let name = n.name.as_os_str().as_bytes();
        let mut child = path.clone();
        if child.last() != Some(&b'/') {
            child.push(b'/');
        }
        child.extend_from_slice(name);
        let (link, kind) = match n.node_type {
            NodeType::Dir => (
                format!("/s/{id}/tree?path={}", url_bytes(&child)),
                "dir".to_string(),
            ),
            NodeType::File => (
                format!("/s/{id}/file?path={}", url_bytes(&child)),
                "file".to_string(),
            ),
            NodeType::Symlink => (
                String::new(),
                format!(
                    "symlink → {}",
                    esc(&lossy(
                        n.link_target
                            .as_ref()
                            .map(|t| t.as_os_str().as_bytes())
                            .unwrap_or_default()
                    ))
                ),
            ),
            other => (String::new(), format!("{other:?}").to_lowercase()),
        };
        let shown = esc(&lossy(name));
        let name_cell = if link.is_empty() {
            shown
        } else {
            format!("<a href='{link}'>{shown}</a>")
        };
        let _ = write!(
            b,
            "<tr><td>{name_cell}</td><td>{kind}</td><td class=n>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            if n.node_type == NodeType::File { html::size(n.size) } else { String::new() },
            html::mode(n.mode),
            html::time_ns(n.mtime),
        );
    }
    b.push_str("</table>");
    Ok(Html(page("Browse", &b)).into_response())
}

// ---- A file -----------------------------------------------------------------------------

/// One file: its metadata, a preview when it is small text, download, and the actions.
pub async fn file(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Page {
    let snap = snapshot(&st, &id).await?;
    let id = snap.id.to_hex();
    let path = path_param(&q);
    let node = match find_path(&st.repo, snap.snapshot.tree, &path).await? {
        Found::Node(n) if n.node_type == NodeType::File => n,
        _ => {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("{} is not a file in this snapshot", lossy(&path)),
            ))
        }
    };
    let p = url_bytes(&path);
    let mut b = header_of(&snap);
    b.push_str(&breadcrumbs(&id, &path));
    let _ = write!(
        b,
        "<table><tr><th>Size</th><td>{}</td></tr><tr><th>Mode</th><td><code>{}</code></td></tr><tr><th>Modified</th><td>{}</td></tr><tr><th>Owner</th><td>{} {} ({}:{})</td></tr></table>\
<p><a id=download href='/s/{id}/download?path={p}'>Download</a></p>",
        html::size(node.size),
        html::mode(node.mode),
        html::time_ns(node.mtime),
        esc(&node.user),
        esc(&node.group),
        node.uid,
        node.gid,
    );
    if node.size <= PREVIEW_MAX {
        let mut pieces = dump_stream(&st.repo, snap.snapshot.tree, &path, Archive::Tar);
        let mut content = Vec::with_capacity(node.size as usize);
        while let Some(piece) = pieces.recv().await {
            content.extend_from_slice(&piece?);
        }
        match std::str::from_utf8(&content) {
            Ok(text) if !text.contains('\0') => {
                let _ = write!(b, "<h2>Preview</h2><pre id=preview>{}</pre>", esc(text));
            }
            _ => b.push_str("<p class=muted>Binary content: no preview.</p>"),
        }
    } else {
        b.push_str("<p class=muted>Too large to preview.</p>");
    }
    if st.allow_actions {
        let _ = write!(
            b,
            "<h2>Restore</h2><form method=post action='/s/{id}/restore'><input type=hidden name=path value='{p}'>\
Into directory on the server: <input name=target size=40 placeholder='/absolute/path'> <button>Restore</button></form>"
        );
        if st.repo.operator().info().capability().presign_read {
            let _ = write!(
                b,
                "<h2>Share</h2><form method=post action='/s/{id}/share'><input type=hidden name=path value='{p}'>\
A link valid for <input name=hours size=3 value=24> hours <button>Create link</button></form>"
            );
        }
    }
    Ok(Html(page("File", &b)))
}

/// A file as is, or a directory as tar or zip, streamed as the dump produces it.
pub async fn download(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, Failure> {
    let snap = snapshot(&st, &id).await?;
    let path = path_param(&q);
    let archive = match query_text(q.as_deref(), "format").as_deref() {
        None | Some("tar") => Archive::Tar,
        Some("zip") => Archive::Zip,
        Some(other) => {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: tar or zip"),
            ))
        }
    };
    // Looked up first, so that a wrong path is a 404 rather than a broken download.
    let found = find_path(&st.repo, snap.snapshot.tree, &path).await?;
    let (base, length, content_type) = match &found {
        Found::Root(_) => (format!("snapshot-{}", snap.short_id()), None, archive),
        Found::Node(n) => {
            let name = lossy(n.name.as_os_str().as_bytes());
            match n.node_type {
                NodeType::Dir => (name, None, archive),
                NodeType::File => (name, Some(n.size), Archive::Tar),
                other => {
                    return Err(Failure(
                        StatusCode::BAD_REQUEST,
                        format!("a {other:?} cannot be downloaded"),
                    ))
                }
            }
        }
    };
    let is_file = length.is_some();
    let name = match (is_file, content_type) {
        (true, _) => base,
        (false, Archive::Tar) => format!("{base}.tar"),
        (false, Archive::Zip) => format!("{base}.zip"),
    };
    let pieces = dump_stream(&st.repo, snap.snapshot.tree, &path, archive);
    // A failed dump ends the body with an error: the connection is cut, and the client sees
    // an incomplete download rather than a short file.
    let stream = futures::stream::unfold(pieces, |mut rx| async move {
        rx.recv()
            .await
            .map(|piece| (piece.map_err(std::io::Error::other), rx))
    });
    let mut headers = HeaderMap::new();
    let mime = match (is_file, content_type) {
        (true, _) => "application/octet-stream",
        (false, Archive::Tar) => "application/x-tar",
        (false, Archive::Zip) => "application/zip",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&hoard_core::share::content_disposition(&name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(len) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok((headers, Body::from_stream(stream)).into_response())
}

// ---- Diff -------------------------------------------------------------------------------

/// Two snapshots picked from lists; what was added, removed and modified between them.
pub async fn diff(State(st): State<AppState>, RawQuery(q): RawQuery) -> Page {
    let all = newest_first(st.repo.snapshots().await?);
    let a = query_text(q.as_deref(), "a");
    let b_id = query_text(q.as_deref(), "b");
    let options = |chosen: &Option<String>| {
        all.iter()
            .map(|s| {
                let sel = chosen
                    .as_deref()
                    .is_some_and(|c| s.id.to_hex().starts_with(c) && !c.is_empty());
                format!(
                    "<option value='{}'{}>{} {} {} {}</option>",
                    s.id,
                    if sel { " selected" } else { "" },
                    s.short_id(),
                    html::time(&s.snapshot.time),
                    esc(&s.snapshot.hostname),
                    esc(&s.snapshot.paths.join(" "))
                )
            })
            .collect::<String>()
    };
    let mut b = format!(
        "<form method=get action='/diff'>From <select name=a id=a>{}</select> to <select name=b id=b>{}</select> <button id=compare>Compare</button></form>",
        options(&a),
        options(&b_id)
    );
    if let (Some(a), Some(bb)) = (a, b_id) {
        let sa = snapshot(&st, &a).await?;
        let sb = snapshot(&st, &bb).await?;
        let (changes, stats) =
            hoard_core::diff::diff(&st.repo, sa.snapshot.tree, sb.snapshot.tree).await?;
        let _ = write!(
            b,
            "<p id=summary>{} → {}: {} files added, {} removed, {} changed; {} directories added, {} removed; +{} −{}</p>",
            sa.short_id(),
            sb.short_id(),
            stats.added_files,
            stats.removed_files,
            stats.changed_files,
            stats.added_dirs,
            stats.removed_dirs,
            html::size(stats.added_bytes),
            html::size(stats.removed_bytes)
        );
        b.push_str("<table id=changes><tr><th></th><th>Path</th></tr>");
        for c in &changes {
            let class = match c.modifier.as_str() {
                "+" => "mod-add",
                "-" => "mod-del",
                _ => "mod-mod",
            };
            // Removed entries are looked at in the older snapshot, the rest in the newer.
            let side = if c.modifier == "-" { &sa } else { &sb };
            let _ = write!(
                b,
                "<tr class={class}><td><code>{}</code></td><td><a href='/s/{}/tree?path={}'>{}</a></td></tr>",
                esc(&c.modifier),
                side.id,
                url_bytes(c.path.as_bytes()),
                esc(&c.path)
            );
        }
        b.push_str("</table>");
    }
    Ok(Html(page("Diff", &b)))
}

// ---- Health -----------------------------------------------------------------------------

/// Size, dedup, locks, and the last check this console ran.
pub async fn health(State(st): State<AppState>) -> Page {
    let snaps = st.repo.snapshots().await?;
    let packs = st
        .repo
        .list_sizes(hoard_core::repository::FileKind::Pack)
        .await?;
    let index_files = st
        .repo
        .list(hoard_core::repository::FileKind::Index)
        .await?;
    let trees: Vec<_> = snaps.iter().map(|s| s.snapshot.tree).collect();
    let stats = hoard_core::stats(&st.repo, &trees).await?;
    let locks = hoard_core::lock::list_locks(&st.repo).await?;
    let mut b = format!(
        "<table><tr><th>Location</th><td>{}</td></tr><tr><th>Snapshots</th><td>{}</td></tr>\
<tr><th>Stored</th><td>{} in {} packs, {} index files</td></tr>\
<tr><th>Restore size of all snapshots</th><td>{} in {} files</td></tr>\
<tr><th>Dedup ratio</th><td id=dedup>{:.2}×</td></tr><tr><th>Compression ratio</th><td>{:.2}×</td></tr></table>",
        esc(st.repo.location()),
        snaps.len(),
        html::size(packs.iter().map(|(_, n)| n).sum()),
        packs.len(),
        index_files.len(),
        html::size(stats.total_restore_size),
        stats.total_file_count,
        stats.dedup_ratio,
        stats.compression_ratio,
    );
    let now = chrono::Utc::now();
    let _ = write!(b, "<h2>Locks</h2><p>{} held</p><ul>", locks.len());
    for l in &locks {
        let text = match &l.info {
            Some(info) => info.describe(&l.id, now),
            None => format!("{}: unreadable", l.id.short()),
        };
        let _ = write!(b, "<li>{}</li>", esc(&text));
    }
    b.push_str("</ul><h2>Check</h2>");
    let recorded = st
        .check_records
        .as_deref()
        .and_then(|base| cache::last_check(base, &st.repo.config().id));
    match recorded {
        Some(c) => {
            let what = if c.packs_read > 0 {
                format!("with {} packs read", c.packs_read)
            } else {
                "of the structure".to_string()
            };
            let outcome = match &c.first_error {
                None => format!("no errors ({} snapshots, {} packs)", c.snapshots, c.packs),
                Some(e) => format!("{} errors, first: {}", c.errors, e),
            };
            let _ = write!(
                b,
                "<p id=last-check>Last check on this machine, {what}, finished {}: <b>{}</b></p>",
                html::time(&c.time),
                esc(&outcome)
            );
        }
        None => b.push_str("<p id=last-check class=muted>No check recorded on this machine (run <code>hoard check</code>).</p>"),
    }
    // One under way is not recorded yet.
    if let Some((n, job)) = st.jobs.last("check") {
        let outcome = match job.outcome() {
            None => "running".to_string(),
            Some(Ok(t)) | Some(Err(t)) => t,
        };
        let _ = write!(
            b,
            "<p>Last check from this console, started {}: <a href='/jobs/{n}'>{}</a></p>",
            html::time(&job.started),
            esc(&outcome)
        );
    }
    if st.allow_actions {
        b.push_str("<form method=post action='/health/check'><button>Check the repository structure now</button> <span class=muted>(takes an exclusive lock: backups wait)</span></form>");
    }
    Ok(Html(page("Health", &b)))
}

// ---- Actions ----------------------------------------------------------------------------

fn form_value(body: &str, name: &str) -> Option<Vec<u8>> {
    query_param(Some(body), name)
}

/// Starts a restore of a path into a directory on the server; the job page follows it.
pub async fn restore(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, Failure> {
    if !st.allow_actions {
        return Err(forbidden("Restoring"));
    }
    let snap = snapshot(&st, &id).await?;
    let path = lossy(&form_value(&body, "path").unwrap_or_else(|| b"/".to_vec()));
    let target = lossy(&form_value(&body, "target").unwrap_or_default());
    let target = std::path::PathBuf::from(target.trim());
    if !target.is_absolute() {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "give the target as an absolute directory on the server".into(),
        ));
    }
    find_path(&st.repo, snap.snapshot.tree, &path).await?;
    let (n, job) = st.jobs.start(format!(
        "restore {}:{} into {}",
        snap.short_id(),
        path,
        target.display()
    ));
    let repo = st.repo.clone();
    tokio::spawn(async move {
        let opts = hoard_core::RestoreOptions {
            target,
            source_path: Some(path),
            ..Default::default()
        };
        let outcome = hoard_core::restore(&repo, &snap, &opts, Arc::new(jobs::Report(job.clone())))
            .await
            .map(|s| {
                format!(
                    "restored {} files ({}), {} directories; {} errors",
                    s.files_restored,
                    html::size(s.bytes_written),
                    s.dirs,
                    s.errors.len()
                )
            })
            .map_err(|e| e.to_string());
        job.finish(outcome);
    });
    Ok(Redirect::to(&format!("/jobs/{n}")).into_response())
}

/// A share link for a file or directory (S3 repositories).
pub async fn share(State(st): State<AppState>, Path(id): Path<String>, body: String) -> Page {
    if !st.allow_actions {
        return Err(forbidden("Sharing"));
    }
    let snap = snapshot(&st, &id).await?;
    let path = lossy(&form_value(&body, "path").unwrap_or_else(|| b"/".to_vec()));
    let hours: u64 = lossy(&form_value(&body, "hours").unwrap_or_default())
        .trim()
        .parse()
        .map_err(|_| Failure(StatusCode::BAD_REQUEST, "hours: a whole number".into()))?;
    let opts = hoard_core::ShareOptions {
        expires: std::time::Duration::from_secs(hours.saturating_mul(3600)),
        ..Default::default()
    };
    let shared = hoard_core::share(&st.repo, snap.id, snap.snapshot.tree, &path, &opts).await?;
    let b = format!(
        "<p>{} ({}) can be fetched without credentials until {}:</p><p><input id=link size=100 readonly value='{}'></p><p class=muted>Revoke it with <code>hoard share --revoke {}</code>.</p>",
        esc(&shared.info.name),
        html::size(shared.size),
        html::time(&shared.info.expires),
        esc(&shared.url),
        esc(&shared.info.id)
    );
    Ok(Html(page("Share link", &b)))
}

/// Checks the repository's structure (no pack reads) as a job.
pub async fn check(State(st): State<AppState>) -> Result<Response, Failure> {
    if !st.allow_actions {
        return Err(forbidden("Checking"));
    }
    let (n, job) = st.jobs.start("check of the structure".into());
    let repo = st.repo.clone();
    let records = st.check_records.clone();
    tokio::spawn(async move {
        let report =
            hoard_core::check(&repo, &Default::default(), &jobs::Report(job.clone())).await;
        if let (Ok(r), Some(base)) = (&report, &records) {
            let last = cache::LastCheck::of(r);
            if let Err(e) = cache::record_check(base, &repo.config().id, &last) {
                tracing::debug!("cannot record the check: {e}");
            }
        }
        job.finish(match report {
            Ok(r) if r.errors.is_empty() => Ok(format!(
                "no errors ({} snapshots, {} packs)",
                r.snapshots, r.packs
            )),
            Ok(r) => Err(format!("{} errors, first: {}", r.errors.len(), r.errors[0])),
            Err(e) => Err(e.to_string()),
        });
    });
    Ok(Redirect::to(&format!("/jobs/{n}")).into_response())
}

/// A job's progress; reloads itself each second while it runs.
pub async fn job(State(st): State<AppState>, Path(n): Path<usize>) -> Page {
    use std::sync::atomic::Ordering::Relaxed;
    let job = st
        .jobs
        .get(n)
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no job {n}")))?;
    let p = &job.progress;
    let mut b = format!(
        "<p>{}</p><p>started {}</p><p id=progress>{} of {} items, {} of {}</p>",
        esc(&job.title),
        html::time(&job.started),
        p.items_done.load(Relaxed),
        p.items_total.load(Relaxed),
        html::size(p.bytes_done.load(Relaxed)),
        html::size(p.bytes_total.load(Relaxed)),
    );
    match job.outcome() {
        None => b.push_str(
            "<p id=state>running…</p><script>setTimeout(()=>location.reload(),1000)</script>",
        ),
        Some(Ok(t)) => {
            let _ = write!(b, "<p id=state>done: {}</p>", esc(&t));
        }
        Some(Err(t)) => {
            let _ = write!(b, "<p id=state class=err>failed: {}</p>", esc(&t));
        }
    }
    Ok(Html(page("Job", &b)))
}

// ---- Login ------------------------------------------------------------------------------

pub async fn login_form() -> Html<String> {
    Html(page("Log in", LOGIN))
}

const LOGIN: &str = "<form method=post action='/login'><p>Access token: <input type=password name=token id=token autofocus> <button id=login>Log in</button></p></form>";

/// Sets the session cookie when the token is right.
pub async fn login(State(st): State<AppState>, body: String) -> Response {
    let given = lossy(&form_value(&body, "token").unwrap_or_default());
    match st.token.as_deref() {
        Some(token) if auth::allowed(&bearer(given.trim()), token) => {
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                auth::COOKIE,
                auth::session_value(token)
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Some(_) => (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "Log in",
                &format!("<p class=err>Wrong token.</p>{LOGIN}"),
            )),
        )
            .into_response(),
        None => Redirect::to("/").into_response(),
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}
