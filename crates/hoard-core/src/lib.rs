//! hoard-core: the repository format and the backup engine.
//!
//! A repository is a set of immutable files on any [OpenDAL](opendal) storage: packs of
//! encrypted, compressed, deduplicated blobs, index files that say where each blob is, and
//! snapshots that point at a tree of directories. `docs/FORMAT.md` in the source tree is the
//! normative description; the module docs here explain each part where it is implemented.
//!
//! ```no_run
//! # async fn demo() -> hoard_core::Result<()> {
//! use std::sync::Arc;
//! use hoard_core::{backup, restore, BackupOptions, InitOptions, NoProgress, Repository, RestoreOptions};
//! let op = opendal::Operator::new(opendal::services::Fs::default().root("/tmp/repo"))
//!     .expect("a valid local path");
//! let repo = Repository::init(op, b"password", InitOptions::default()).await?;
//! let opts = BackupOptions { paths: vec!["/etc".into()], ..Default::default() };
//! let done = backup(&repo, opts, Arc::new(NoProgress)).await?;
//! let target = RestoreOptions { target: "/tmp/out".into(), ..Default::default() };
//! restore(&repo, &done.snapshot, &target, Arc::new(NoProgress)).await?;
//! # Ok(()) }
//! ```

pub mod archiver;
pub mod blob;
pub mod check;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod diff;
pub mod dump;
pub mod error;
pub mod forget;
pub mod id;
pub mod ids;
pub mod index;
pub mod keys;
pub mod lock;
pub mod pack;
pub mod progress;
pub mod prune;
pub mod repository;
pub mod restorer;
pub mod saver;
pub mod snapshot;
mod testhook;
pub mod tree;
pub mod walk;

pub use archiver::{backup, BackupOptions, BackupResult, CancelToken, FileError, ParentSelection};
pub use check::{check, CheckOptions, CheckReport, ReadData};
pub use config::Config;
pub use crypto::KdfParams;
pub use error::{Error, Result};
pub use forget::{apply_policy, forget_snapshots, plan_forget, GroupBy, Policy, Span};
pub use id::Id;
pub use lock::{lock, with_lock, LockGuard, LockInfo, LockOptions, LockState, LockTiming};
pub use progress::{NoProgress, Progress};
pub use prune::{prune, PruneOptions, PruneStats};
pub use repository::{repository_exists, FileKind, InitOptions, Repository};
pub use restorer::{restore, RestoreOptions, RestoreSummary};
pub use snapshot::{Snapshot, SnapshotEntry, SnapshotSummary};
pub use tree::{Node, NodeType, Tree};
pub use walk::{stats, walk_tree, RepoStats};

/// This machine's hostname, as recorded in snapshots and keys.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The user running the process.
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}
