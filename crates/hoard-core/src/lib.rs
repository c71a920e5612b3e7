//! hoard-core: the repository format and the backup engine.
//!
//! A repository is a set of immutable files on any [OpenDAL](opendal) storage: packs of
//! encrypted, compressed, deduplicated blobs, index files that say where each blob is, and
//! snapshots that point at a tree of directories. `docs/FORMAT.md` in the source tree is the
//! normative description; the module docs here explain each part where it is implemented.
//!
//! # Module map
//!
//! | module | concern |
//! | --- | --- |
//! | [`format`](mod@format) | bytes on storage: sealing, key files, config, blobs, packs, index files, trees, snapshots, the chunker (pure, no I/O) |
//! | [`repository`] | those files on an OpenDAL operator: storage, keys, locks, the in-memory index, reading blobs and trees, finding snapshots, [`Repository`] itself |
//! | [`backup`](mod@backup) | directory trees to a snapshot: layout, walk, file reader, and the saver (pack, upload, index) |
//! | [`restore`](mod@restore), [`dump`], [`diff`](mod@diff), [`walk`] | reading snapshots back |
//! | [`forget`](mod@forget), [`prune`](mod@prune), [`check`](mod@check), [`repair`] | maintenance |
//! | [`id`], `host`, `patterns`, [`progress`], [`error`] | small shared leaves: ids (the BLAKE3 names of files and blobs), this machine's names, path patterns, progress events, the error type |
//!
//! Arrows point down that table: `format` needs nothing above it, `repository` only
//! `format`, and each operation only `repository` and `format`.
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

#![warn(missing_docs)]

pub mod backup;
pub mod buffers;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod error;
pub mod find;
pub mod forget;
pub mod format;
pub(crate) mod host;
pub mod id;
pub(crate) mod patterns;
pub mod progress;
pub mod prune;
pub(crate) mod random;
pub mod repair;
pub mod repository;
pub mod restore;
pub mod rewrite;
pub mod share;
pub mod tag;
#[cfg(feature = "test-hooks")]
mod testhook;
#[cfg(not(feature = "test-hooks"))]
mod testhook {
    /// Without the `test-hooks` feature a hook is nothing at all.
    #[inline(always)]
    pub(crate) async fn hook(_point: &str) {}
    /// Nor is a blocking one.
    #[inline(always)]
    pub(crate) fn hook_blocking(_point: &str) {}
}
pub mod walk;

/// Times and time zones in the API (snapshot times, [`forget_in_zone`]).
pub use chrono;

pub use backup::{
    backup, backup_stream, BackupOptions, BackupResult, CancelToken, ParentSelection, StreamOptions,
};
pub use check::{check, CheckError, CheckOptions, CheckReport, Damaged, ReadData};
pub use copy::{copy, CopyStats};
pub use error::{Error, Result};
pub use find::{find, FindOptions, Found};
pub use forget::{
    apply_policy, forget, forget_in_zone, forget_snapshots, plan_forget, ForgetOptions,
    ForgetResult, GroupBy, Policy, SnapshotFilter, Span,
};
pub use format::config::Config;
pub use format::keyfile::KdfParams;
pub use format::snapshot::{Snapshot, SnapshotEntry, SnapshotSummary};
pub use format::tree::{Node, NodeType, Tree};
pub use id::Id;
pub use progress::{FileError, NoProgress, Progress};
pub use prune::{prune, PruneOptions, PruneStats};
pub use repair::{
    repair_config, repair_index, repair_packs, repair_snapshots, RepairConfigStats,
    RepairIndexStats, RepairPacksStats, RepairSnapshotsOptions, RepairSnapshotsStats,
};
pub use repository::lock::{self, LockInfo, LockOptions, LockTiming};
pub use repository::{
    repository_exists, FileKind, InitOptions, Lease, LockNeed, OpenOptions, Repository,
};
pub use restore::{restore, Overwrite, RestoreOptions, RestoreSummary};
pub use rewrite::{rewrite, RewriteOptions, Rewritten};
pub use share::{
    expire_shares, list_shares, revoke_share, share, ListedShare, ShareInfo, ShareOptions, Shared,
};
pub use tag::{tag, TagChange};
pub use walk::{stats, walk_tree, RepoStats};
