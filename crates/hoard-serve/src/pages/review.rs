//! Comparing two snapshots, and the repository's health.

use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::response::Html;
use hoard_core::repository::cache;

use super::{newest_first, snapshot, Page};
use crate::html::{self, esc, page, query_text, url_bytes};
use crate::AppState;

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
