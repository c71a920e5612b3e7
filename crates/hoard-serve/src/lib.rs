//! The web console behind `hoard serve`: snapshots by host, tag and day; a snapshot's tree
//! with breadcrumbs; text previews; downloads of files and of directories as tar or zip,
//! streamed; the diff of two snapshots; repository health; and, with
//! [`ServeOptions::allow_actions`], restores into a directory on the server, share links (S3)
//! and checks.
//!
//! Server-rendered HTML on axum, no JavaScript needed. Everything a page shows from the
//! repository is escaped; paths are looked up in the snapshot's trees only, so no request
//! can read a file of the server. Without a token the console answers on loopback only; with
//! one, every request but the login page must carry it (see [`auth`]).

pub mod auth;
pub mod html;
mod jobs;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use hoard_core::Repository;

/// How the console runs.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Required on every request when set; required at all for a non-loopback address.
    pub token: Option<String>,
    /// Restores, share links and checks (anything that writes, or locks others out).
    pub allow_actions: bool,
    /// The cache base where checks on this machine record their outcome (see
    /// [`hoard_core::repository::cache::record_check`]); `None`: none shown or kept.
    pub check_records: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_actions", &self.allow_actions)
            .field("check_records", &self.check_records)
            .finish()
    }
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A non-loopback address without a token.
    #[error("{0} is not a loopback address: give an access token (--token-file or HOARD_SERVE_TOKEN) before serving the repository to the network")]
    NeedsToken(SocketAddr),
    /// An empty token would let anyone in.
    #[error("the access token is empty")]
    EmptyToken,
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("the web console failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    repo: Repository,
    token: Option<Arc<str>>,
    allow_actions: bool,
    check_records: Option<Arc<std::path::Path>>,
    jobs: jobs::Jobs,
}

/// A bound console, not yet serving: its address is known (port 0 picks one).
pub struct Console {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl Console {
    /// Checks the options and binds `addr`.
    pub async fn bind(
        repo: Repository,
        addr: SocketAddr,
        opts: ServeOptions,
    ) -> Result<Console, ServeError> {
        if opts.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ServeError::EmptyToken);
        }
        if opts.token.is_none() && !addr.ip().is_loopback() {
            return Err(ServeError::NeedsToken(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let state = AppState {
            repo,
            token: opts.token.map(|t| Arc::from(t.trim())),
            allow_actions: opts.allow_actions,
            check_records: opts.check_records.map(Arc::from),
            jobs: jobs::Jobs::default(),
        };
        Ok(Console {
            listener,
            app: router(state),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes; requests under way are finished first.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::snapshots))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/s/{id}/tree", get(pages::tree))
        .route("/s/{id}/file", get(pages::file))
        .route("/s/{id}/download", get(pages::download))
        .route("/s/{id}/restore", post(pages::restore))
        .route("/s/{id}/share", post(pages::share))
        .route("/diff", get(pages::diff))
        .route("/health", get(pages::health))
        .route("/health/check", post(pages::check))
        .route("/jobs/{n}", get(pages::job))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}
