//! A snapshot's tree, one file, and downloads.

use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hoard_core::dump::{dump_stream, Archive};
use hoard_core::walk::{find_path, Found};
use hoard_core::{NodeType, SnapshotEntry};

use super::{lossy, path_param, snapshot, tags, Failure, Page};
use crate::html::{self, esc, page, query_text, url_bytes};
use crate::AppState;

/// Text files up to this size are shown inline.
const PREVIEW_MAX: u64 = 256 << 10;

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
