//! One error type for the engine. Callers (the CLI) map kinds to exit codes, so the variants
//! that users must act on differently (missing repository, wrong password) stay distinct.

use std::path::PathBuf;

use crate::id::Id;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("there is no repository at {0} (create one with `hoard init`)")]
    RepositoryNotFound(String),
    #[error("a repository already exists at {0}")]
    AlreadyInitialised(String),
    #[error("wrong password: no key in the repository opens with the given password")]
    WrongPassword,
    #[error("storage {op} of {path:?} failed: {source}")]
    Storage {
        op: &'static str,
        path: String,
        #[source]
        source: Box<opendal::Error>,
    },
    #[error("{what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error(
        "{0} failed authentication: it was modified, damaged, or belongs to another repository"
    )]
    Authentication(String),
    #[error("blob {0} is not in the index (the repository is incomplete; run `hoard check`)")]
    BlobNotInIndex(Id),
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("snapshot prefix {0:?} is ambiguous; give more digits")]
    AmbiguousSnapshot(String),
    #[error("path {0:?} was not found in the snapshot")]
    PathNotInSnapshot(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("background task failed: {0}")]
    Task(String),
    #[error("interrupted: uploaded data was indexed, no snapshot was written")]
    Interrupted,
    #[error("the repository is locked: {holder}. If that process is gone, its lock is ignored once stale (30 minutes without refresh, or at once on its own host); `hoard unlock` removes stale locks")]
    Locked { holder: String },
    #[error("lost the repository lock: {0}; nothing was committed")]
    LockLost(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn storage(
        op: &'static str,
        path: impl Into<String>,
        source: opendal::Error,
    ) -> Self {
        Error::Storage {
            op,
            path: path.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl ToString) -> Self {
        Error::Invalid {
            what,
            detail: detail.to_string(),
        }
    }
}

impl Error {
    /// The storage error behind this one, if any (for callers that classify failures).
    pub fn storage_error(&self) -> Option<&opendal::Error> {
        match self {
            Error::Storage { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}
