//! The console's pages, one handler each, grouped by what a person does: the snapshot list,
//! browsing a snapshot, reviewing (diff, health), and the actions. Shared here: the error
//! page and the lookups every page needs.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hoard_core::{Error, SnapshotEntry};

use crate::html::{esc, page, query_param};
use crate::AppState;

mod actions;
mod browse;
mod review;
mod snapshots;

pub use actions::{check, job, restore, share};
pub use browse::{download, file, tree};
pub use review::{diff, health};
pub use snapshots::snapshots;

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
