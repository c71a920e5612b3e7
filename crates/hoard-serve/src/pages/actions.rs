//! What the console does with `--allow-restore`: restores, share links, checks, and the
//! job pages that follow them.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use hoard_core::repository::cache;
use hoard_core::walk::find_path;

use super::{forbidden, snapshot, Failure, Page};
use crate::html::{self, esc, page, query_text};
use crate::{jobs, AppState};

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
    let path = query_text(Some(&body), "path").unwrap_or_else(|| "/".into());
    let target = query_text(Some(&body), "target").unwrap_or_default();
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
    let path = query_text(Some(&body), "path").unwrap_or_else(|| "/".into());
    let hours: u64 = query_text(Some(&body), "hours")
        .unwrap_or_default()
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
