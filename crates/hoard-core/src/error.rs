//! One error type for the engine. Callers (the CLI) map kinds to exit codes, so the variants
//! that users must act on differently (missing repository, wrong password) stay distinct.

use std::path::PathBuf;

use crate::id::Id;

/// The result of every fallible engine call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error behind another one, kept so callers can walk the chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Everything that can go wrong in the engine; the variants a caller acts on differently are
/// distinct.
pub enum Error {
    #[error("there is no repository at {0} (create one with `hoard init`)")]
    /// No `config` file at this location (the CLI's exit code 10).
    RepositoryNotFound(String),
    #[error("a repository already exists at {0}")]
    /// `init` found a repository already there.
    AlreadyInitialised(String),
    #[error("wrong password: no key in the repository opens with the given password")]
    /// No key file opens with the password (the CLI's exit code 12).
    WrongPassword,
    #[error("storage {op} of {path:?} failed: {source}")]
    /// The storage refused or failed an operation.
    Storage {
        /// The operation (`read`, `write`, `list`, …).
        op: &'static str,
        /// The file it was about.
        path: String,
        #[source]
        /// OpenDAL's error, for its kind (not found, permission denied, temporary …).
        source: Box<opendal::Error>,
    },
    #[error("{what} is corrupt: {detail}")]
    /// A repository file is damaged or not what its name says.
    Corrupt {
        /// Which file or object.
        what: String,
        /// What is wrong with it.
        detail: String,
        #[source]
        /// The decoder's error, where one found the damage.
        source: Option<BoxError>,
    },
    #[error(
        "{0} failed authentication: it was modified, damaged, or belongs to another repository"
    )]
    /// A sealed object did not authenticate (names the object).
    Authentication(String),
    #[error("blob {0} is not in the index (the repository is incomplete; run `hoard check`)")]
    /// A snapshot needs a blob that no index lists.
    BlobNotInIndex(Id),
    #[error("no snapshot matches {0:?}")]
    /// No snapshot matches the id, prefix or `latest`.
    SnapshotNotFound(String),
    #[error("snapshot prefix {0:?} is ambiguous; give more digits")]
    /// Several snapshots start with the given prefix.
    AmbiguousSnapshot(String),
    #[error("path {0:?} was not found in the snapshot")]
    /// The path does not exist in the snapshot.
    PathNotInSnapshot(String),
    #[error("{}: {source}", path.display())]
    /// A local file operation failed.
    Io {
        /// The file.
        path: PathBuf,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },
    #[error("reading the input for {name} failed: {source}; no snapshot was written")]
    /// The stream a stream backup reads (stdin, a command's output) failed or ended badly.
    StreamFailed {
        /// The file name the stream was to be stored as.
        name: String,
        #[source]
        /// The read error (or the producing command's exit status).
        source: std::io::Error,
    },
    #[error("invalid {what}: {detail}")]
    /// An argument or option is not acceptable.
    Invalid {
        /// Which argument.
        what: &'static str,
        /// Why not.
        detail: String,
        #[source]
        /// The parser's error, where one rejected it.
        source: Option<BoxError>,
    },
    /// A pipeline stage stopped before its work was done (its own error is reported first).
    #[error("background task failed: {0}")]
    Task(String),
    #[error("background task failed: {0}")]
    /// A background task panicked or was cancelled.
    Join(#[from] tokio::task::JoinError),
    #[error("interrupted: uploaded data was indexed, no snapshot was written")]
    /// The backup was cancelled (the CLI's exit code 130).
    Interrupted,
    #[error("the repository is locked: {holder}. If that process is gone, its lock is ignored once stale (30 minutes without refresh, or at once on its own host); `hoard unlock` removes stale locks")]
    /// Another process holds a conflicting lock (the CLI's exit code 11).
    Locked {
        /// Who holds it, since when, last refreshed when.
        holder: String,
    },
    #[error("cannot share: {0}")]
    /// `share` cannot hand out a URL here (no presigning storage, credentials that cannot
    /// sign for that long); nothing was written.
    Share(String),
    #[error("lost the repository lock: {0}; nothing was committed")]
    /// This process lost its lock while working.
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

    /// Damage described in words.
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
            source: None,
        }
    }

    /// Damage found by a decoder, whose error is kept as the source.
    pub(crate) fn corrupt_by(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// Bad input described in words.
    pub(crate) fn invalid(what: &'static str, detail: impl ToString) -> Self {
        Error::Invalid {
            what,
            detail: detail.to_string(),
            source: None,
        }
    }

    /// Bad input found by a parser or library, whose error is kept as the source.
    pub(crate) fn invalid_by(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Invalid {
            what,
            detail: source.to_string(),
            source: Some(Box::new(source)),
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

    /// Storage said the file is not there (deleted meanwhile, or never written).
    pub fn is_not_found(&self) -> bool {
        self.storage_error()
            .is_some_and(|s| s.kind() == opendal::ErrorKind::NotFound)
    }
}
