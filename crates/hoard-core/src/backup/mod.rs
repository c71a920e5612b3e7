//! Backup: turns directory trees into a snapshot.
//!
//! Read top-down, one file a stage:
//! 1. this file: [`backup`] resolves the paths and the parent snapshot under a shared lock,
//!    starts the blob saver, and lays the absolute paths out as a virtual tree (`layout`:
//!    `/home/u/docs` becomes `home` → `u` → `docs`, so restoring to `DIR` gives
//!    `DIR/home/u/docs`).
//! 2. `archiver`: the walk reads one directory at a time, depth first. Files whose size,
//!    mtime, ctime and inode match the parent snapshot reuse its content ids without being
//!    read; other files go to a blocking reader task (bounded by a semaphore: this is the
//!    back-pressure on the walk). Each directory gets a small completion task that waits for
//!    its children and stores the tree blob, so trees are saved bottom-up while the walk goes
//!    on.
//! 3. `file`: chunks one file with FastCDC and hands the chunks to the saver.
//! 4. `saver`: dedup, compression, sealing, packing, upload and index files. It is
//!    finished (packs, then index) and only then this file writes the snapshot.
//!
//! Files that cannot be read are reported in [`BackupResult::errors`] and left out; the
//! snapshot is still written, and callers turn a non-empty error list into exit code 3.

mod archiver;
pub(crate) mod counters;
mod exclude;
mod file;
mod layout;
pub(crate) mod saver;
mod scan;
mod stream;
mod xattrs;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SnapshotEntry, SnapshotSummary};
use crate::host::NameCache;
use crate::id::Id;
use crate::progress::{FileError, Phase, Progress};
use crate::repository::{FileKind, Lease, LockNeed, Repository};
use archiver::Archiver;
use counters::Counters;
use exclude::Excluder;
pub use exclude::CACHEDIR_TAG;
use layout::{absolute, build_virtual};
use saver::{BlobSaver, IndexMode};
pub use stream::{backup_stream, StreamOptions};

/// Directories walked at once besides the main walk (each a task listing one directory and
/// starting its children), when there is a parent snapshot. They speed up a walk that is mostly
/// unchanged files (a re-backup of the toolchain copy: 0.31 s against 0.46). A first backup is
/// bound by reading and compressing, not by the walk (3.10 s either way), and there they
/// scattered each pack across four subtrees, which a restore then reads a pack at a time per
/// batch: from Garage, 95 GETs against 35 with the one walk.
const WALKERS: usize = 4;
/// How long a cancelled backup waits for its file readers before it goes on without them.
const STRAGGLER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Which snapshot to compare against to skip unchanged files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParentSelection {
    /// The newest snapshot with the same host and the same set of paths.
    #[default]
    Latest,
    /// Read every file.
    None,
    /// A given snapshot.
    Id(Id),
}

/// What to back up and how; `Default` plus `paths` is a complete backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Files and directories to back up; relative paths are made absolute (symlinks in them are not
    /// resolved).
    pub paths: Vec<PathBuf>,
    /// Defaults to this machine's hostname.
    pub host: Option<String>,
    /// Tags recorded in the snapshot (for `forget --keep-tag`, filters).
    pub tags: Vec<String>,
    /// Glob patterns; a pattern without `/` matches a name at any depth, a pattern starting
    /// with `/` matches from the root, any other is matched at any depth.
    pub excludes: Vec<String>,
    /// Which snapshot's metadata lets unchanged files be taken over without reading them.
    pub parent: ParentSelection,
    /// Defaults to now.
    pub time: Option<DateTime<Utc>>,
    /// Files read at once; defaults to the number of cores. Files too small to be cut into
    /// chunks (read whole, without a chunker buffer) count half: twice as many of them are
    /// read at once.
    pub read_concurrency: Option<usize>,
    /// Stops the backup early: what was uploaded is indexed, no snapshot is written, and
    /// [`Error::Interrupted`] is returned.
    pub cancel: Option<CancelToken>,
    /// Patterns as `excludes`, matched without regard to case.
    pub iexcludes: Vec<String>,
    /// Leave out directories that contain a file of this name; `NAME:HEADER` only when the
    /// file starts with HEADER.
    pub exclude_if_present: Vec<String>,
    /// Leave out directories marked as caches by a `CACHEDIR.TAG` file.
    pub exclude_caches: bool,
    /// Leave out files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
    /// Stay on the file systems of the given paths: a mount point below them is recorded
    /// as an empty directory.
    pub one_file_system: bool,
    /// Read and chunk everything, count what would be added, write nothing.
    pub dry_run: bool,
    /// Write no snapshot when nothing changed since the parent snapshot.
    pub skip_if_unchanged: bool,
    /// Record access times (by default atime is recorded as mtime, so that reading files
    /// for a backup does not make every tree new).
    pub with_atime: bool,
}

/// Whether a backup wrote its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The snapshot in [`BackupResult::snapshot`] was saved.
    Saved,
    /// Nothing changed and `skip_if_unchanged` was set: [`BackupResult::snapshot`] is the
    /// parent, which already records this state.
    Unchanged,
    /// A dry run: nothing was written; [`BackupResult::snapshot`] is what would have been
    /// saved, with a zero id.
    DryRun,
}

/// A flag that asks a running backup to stop.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the backup to stop; it returns [`Error::Interrupted`] soon after.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a backup made.
#[derive(Debug, Clone)]
pub struct BackupResult {
    /// The snapshot written (with its id).
    pub snapshot: SnapshotEntry,
    /// Its counters, as stored in the snapshot.
    pub summary: SnapshotSummary,
    /// Files and directories that could not be read and were left out (exit code 3 in the CLI).
    pub errors: Vec<FileError>,
    /// Whether the snapshot was written.
    pub written: Written,
}

/// Backs up `opts.paths` into a new snapshot, under a shared lock.
pub async fn backup(
    repo: &Repository,
    opts: BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupResult> {
    crate::testhook::hook("backup-before-lock").await;
    repo.locked(LockNeed::Append, |lease| async move {
        backup_locked(repo, opts, progress, &lease).await
    })
    .await
}

async fn backup_locked(
    repo: &Repository,
    opts: BackupOptions,
    progress: Arc<dyn Progress>,
    lock: &Lease,
) -> Result<BackupResult> {
    let start = Utc::now();
    repo.clean_staging(crate::repository::storage::STALE_STAGING)
        .await;
    if let Some(cache) = repo.cache() {
        cache.clean_spool(crate::repository::storage::STALE_STAGING);
    }
    if opts.paths.is_empty() {
        return Err(Error::invalid("backup paths", "no path given"));
    }
    // A path that is missing among several is left out and reported (the backup ends
    // incomplete, as restic's does); when none is there, there is nothing to back up.
    let mut paths = Vec::new();
    let mut missing = Vec::new();
    let mut first_error = None;
    for p in &opts.paths {
        let abs = absolute(p)?;
        match std::fs::symlink_metadata(&abs) {
            Ok(_) => paths.push(abs),
            Err(e) => {
                progress.error(&abs, &e.to_string());
                missing.push(FileError {
                    path: abs.clone(),
                    message: e.to_string(),
                });
                first_error.get_or_insert(Error::io(&abs, e));
            }
        }
    }
    if paths.is_empty() {
        return Err(first_error.unwrap_or_else(|| Error::invalid("backup paths", "no path given")));
    }
    paths.sort();
    paths.dedup();
    let path_strings: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let host = opts.host.clone().unwrap_or_else(crate::host::hostname);
    let parent = match &opts.parent {
        ParentSelection::None => None,
        ParentSelection::Id(id) => Some(repo.find_snapshot(&id.to_hex()).await?),
        ParentSelection::Latest => repo
            .snapshots()
            .await?
            .into_iter()
            .rev()
            .find(|s| s.snapshot.hostname == host && s.snapshot.paths == path_strings),
    };
    if let Some(p) = &parent {
        tracing::info!(parent = %p.id.short(), "using parent snapshot");
    }

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let counters = Arc::new(Counters::default());
    let mode = if opts.dry_run {
        IndexMode::DryRun
    } else {
        IndexMode::Write
    };
    let saver = BlobSaver::new(repo, counters.clone(), mode, cores, 2);
    let handle = saver
        .handle()
        .ok_or_else(|| Error::Task("saver closed".into()))?;
    let exclude = Arc::new(Excluder::new(&opts, &paths)?);
    progress.phase(Phase::Backup);
    let scan_stop = CancelToken::new();
    let scan = progress.wants_totals().then(|| {
        scan::spawn_scan(
            paths.clone(),
            exclude.clone(),
            progress.clone(),
            scan_stop.clone(),
        )
    });
    let archiver = Arc::new(Archiver {
        repo: repo.clone(),
        saver: handle,
        names: NameCache::default(),
        exclude,
        with_atime: opts.with_atime,
        readers: Arc::new(Semaphore::new(
            2 * opts.read_concurrency.unwrap_or(cores).max(1),
        )),
        walkers: Arc::new(Semaphore::new(if parent.is_some() { WALKERS } else { 0 })),
        counters: counters.clone(),
        errors: Mutex::new(missing),
        progress,
        cancel: opts.cancel.clone().unwrap_or_default(),
    });
    let layout = build_virtual(&paths);
    let walked = archiver
        .clone()
        .save_virtual(
            PathBuf::from("/"),
            layout,
            parent.as_ref().map(|p| p.snapshot.tree),
        )
        .await;
    // A finished walk lets the scan finish too (it only reads metadata, and is mostly done),
    // so the last totals are complete; a failed or interrupted one stops it.
    if walked.is_err() {
        scan_stop.cancel();
    }
    if let Some(scan) = scan {
        if let Err(e) = scan.await {
            tracing::debug!("the progress scan ended early: {e}");
        }
    }
    // The archiver holds a saver handle; it must be gone before the saver can finish. After a
    // failed or interrupted walk, file and directory tasks may still hold it: stop them and
    // wait until they let go.
    if walked.is_err() {
        archiver.cancel.cancel();
    }
    // A reader stuck in a read that never returns keeps its share for good: after a failed or
    // interrupted walk, wait a little, then go on without it (the saver finishes regardless).
    let give_up = std::time::Instant::now() + STRAGGLER_WAIT;
    let mut archiver = archiver;
    let errors = loop {
        match Arc::try_unwrap(archiver) {
            Ok(a) => {
                let Archiver {
                    saver: handle,
                    errors,
                    ..
                } = a;
                drop(handle);
                break errors.into_inner().unwrap_or_else(|e| e.into_inner());
            }
            Err(still_shared) if walked.is_err() && std::time::Instant::now() > give_up => {
                tracing::warn!("a file read did not return; going on without it");
                break still_shared
                    .errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
            }
            Err(still_shared) => {
                archiver = still_shared;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    // Packs and index are written even when the walk failed or was interrupted, so uploaded
    // data is reusable. A failed upload also fails the walk with a generic error: report the
    // upload's error, the cause.
    saver.finish().await?;
    let root = walked?;

    let summary: SnapshotSummary = counters.summary(start, Utc::now());
    let snapshot = Snapshot {
        time: opts.time.unwrap_or(start),
        tree: root,
        paths: path_strings,
        hostname: host,
        tags: opts.tags.clone(),
        excludes: opts.excludes.clone(),
        parent: parent.as_ref().map(|p| p.id),
        summary: Some(summary.clone()),
        ..new_snapshot()
    };
    let unchanged = match &parent {
        Some(p) if opts.skip_if_unchanged && p.snapshot.tags == opts.tags && errors.is_empty() => {
            same_paths(repo, p.snapshot.tree, root, &snapshot.paths).await
        }
        _ => false,
    };
    let (snapshot, written) = match parent {
        Some(p) if opts.skip_if_unchanged && unchanged => {
            tracing::info!(parent = %p.id.short(), "nothing changed: no snapshot written");
            (p, Written::Unchanged)
        }
        _ if opts.dry_run => (
            SnapshotEntry {
                id: Id::default(),
                snapshot,
            },
            Written::DryRun,
        ),
        _ => (save_snapshot(repo, lock, snapshot).await?, Written::Saved),
    };
    Ok(BackupResult {
        snapshot,
        summary,
        errors,
        written,
    })
}

/// Whether every backed-up path is recorded alike in both trees. The directories above them
/// do not count: `/tmp` or `/home` changing because of something else is not a change in
/// what is backed up.
async fn same_paths(repo: &Repository, old: Id, new: Id, paths: &[String]) -> bool {
    if old == new {
        return true;
    }
    for p in paths {
        let (a, b) = (
            crate::walk::find_path(repo, old, p).await,
            crate::walk::find_path(repo, new, p).await,
        );
        match (a, b) {
            (Ok(crate::walk::Found::Node(a)), Ok(crate::walk::Found::Node(b))) if a == b => {}
            _ => return false,
        }
    }
    true
}

/// A snapshot of this process: user, ids and program version filled in, the rest empty.
fn new_snapshot() -> Snapshot {
    Snapshot {
        time: Utc::now(),
        tree: Id::default(),
        paths: Vec::new(),
        hostname: String::new(),
        username: crate::host::username(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        tags: Vec::new(),
        excludes: Vec::new(),
        parent: None,
        program_version: format!("hoard {}", env!("CARGO_PKG_VERSION")),
        summary: None,
        original: None,
    }
}

/// Writes the snapshot, last: its data and index are already stored.
async fn save_snapshot(
    repo: &Repository,
    lock: &Lease,
    snapshot: Snapshot,
) -> Result<SnapshotEntry> {
    crate::testhook::hook("backup-before-snapshot").await;
    // A lock lost while running means a prune may have removed blobs this snapshot uses.
    lock.ensure_valid().await?;
    let id = repo.save_doc(FileKind::Snapshot, &snapshot).await?;
    tracing::info!(snapshot = %id.short(), "snapshot saved");
    Ok(SnapshotEntry { id, snapshot })
}
