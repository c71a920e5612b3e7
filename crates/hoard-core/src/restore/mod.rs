//! Restore: writes a snapshot's tree below a target directory.
//!
//! 1. Walk the snapshot's trees and plan, a batch at a time: which directories, files, links
//!    and special files to create, filtered by the include patterns. Names are checked so
//!    that a damaged or hostile tree cannot write outside the target.
//! 2. Create the batch's directories and files; a file already on disk with the same size
//!    is hashed chunk by chunk and left alone when every blob id matches.
//! 3. Read by pack: every blob of a pack the batch needs is fetched once (neighbouring blobs
//!    in one ranged read; from a remote store, nearby ranges in one streamed request),
//!    decoded on a decoder thread, verified against its id, and written at each offset that
//!    uses it. A file's metadata is set as soon as its last blob is written. The next batch
//!    is planned while these run.
//! 4. Make hard links, then set directories' metadata from the deepest up, so that writing
//!    into a directory does not disturb its restored mtime.

mod fetch;
mod plan;
mod write;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::format::pack::PackedBlob;
use crate::format::snapshot::SnapshotEntry;
use crate::id::Id;
use crate::progress::{FileError, Phase, Progress};
use crate::repository::{LockNeed, Repository};
use fetch::PackTask;
use plan::{Batch, PlannedFile, Planner};
use write::{
    create_special, finish_file, prepare_file, set_metadata, BatchFiles, Decoders, Prepared, Shared,
};

/// Ranged reads merge neighbouring blobs up to this size. Each of the packs in flight holds
/// one read and its decoded blobs: 2 MiB cut restore's peak on the toolchain copy from 178 to
/// 122 MiB (the KDF floor is 75) at the same speed as 8 MiB.
const MAX_READ: u64 = 2 * 1024 * 1024;
/// Packs restored at once from a local repository.
const PACK_CONCURRENCY: usize = 4;
/// Packs restored at once from a remote one, where each read waits a round trip: against
/// Garage on loopback, 8 restored the toolchain copy in 4.40 s, 4 in 5.06 s (restic 6.4 s).
const REMOTE_PACK_CONCURRENCY: usize = 8;
/// Files prepared per blocking task.
const PREPARE_GROUP: usize = 256;

/// Where and what to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The directory to restore into (created if missing).
    pub target: PathBuf,
    /// Glob patterns over snapshot paths (`/home/u/*.txt`); a match restores that entry and
    /// everything below it. Empty means everything.
    pub include: Vec<String>,
    /// Set owners (uid/gid). Defaults to whether the process runs as root.
    pub owners: Option<bool>,
    /// Restore only this path of the snapshot (restic's `snapshot:path`): a directory's
    /// contents go straight into `target`, anything else lands as `target/<its name>`. `None`
    /// (or `/`) restores the whole snapshot below `target`, by absolute path. Include
    /// patterns still match whole snapshot paths.
    pub source_path: Option<String>,
    /// As `include`, ignoring case.
    pub iinclude: Vec<String>,
    /// Glob patterns over snapshot paths; a match is left out with everything below it.
    pub exclude: Vec<String>,
    /// As `exclude`, ignoring case.
    pub iexclude: Vec<String>,
    /// What to do with files already in the target.
    pub overwrite: Overwrite,
    /// Remove what the target holds below the restored directories that the snapshot does
    /// not (what the exclude patterns match is kept).
    pub delete: bool,
    /// Plan, compare with the target and report; change nothing.
    pub dry_run: bool,
    /// Read every written file back and check it against the snapshot's blob ids.
    pub verify: bool,
}

/// restic's `--overwrite`: what happens to a file that is already in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Make it the snapshot's file; a file already identical (every blob hashed) is not
    /// written again.
    #[default]
    Always,
    /// Trust size and mtime: a file that matches both is left unread and unwritten.
    IfChanged,
    /// Only when the snapshot's file is newer (mtime) than the one on disk.
    IfNewer,
    /// Never: anything already there stays as it is.
    Never,
}

impl Overwrite {
    /// Whether a hard link or special file already in the target is left as it is.
    fn keeps_existing(self) -> bool {
        matches!(self, Overwrite::Never | Overwrite::IfNewer)
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// Files written.
    pub files_restored: u64,
    /// Files already identical on disk.
    pub files_skipped: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Hard links made.
    pub links: u64,
    /// Symlinks, fifos and devices made.
    pub specials: u64,
    /// Files that could not be restored whole, left as `<name>.damaged` (not counted in
    /// `files_restored`).
    pub files_damaged: u64,
    /// Content bytes written.
    pub bytes_written: u64,
    /// Files already in the target that the overwrite policy kept as they were.
    pub files_kept: u64,
    /// Entries removed from the target by `delete` (or that would be, in a dry run).
    pub files_deleted: u64,
    /// Files read back and found as the snapshot has them, with `verify`.
    pub files_verified: u64,
    /// Nothing was changed: the counts say what a restore would do.
    pub dry_run: bool,
    /// Files that could not be restored whole, and why.
    pub errors: Vec<FileError>,
}

/// Restores `snapshot` below `opts.target`.
pub async fn restore(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary> {
    // A shared lock, so that a prune cannot delete packs mid-way.
    repo.locked(LockNeed::Read, |_| {
        restore_unlocked(repo, snapshot, opts, progress)
    })
    .await
}

async fn restore_unlocked(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary> {
    let started = std::time::Instant::now();
    let mut planner = Planner::new(repo, snapshot, opts).await?;
    let owners = opts
        .owners
        .unwrap_or_else(|| nix::unistd::geteuid().is_root());
    if !opts.dry_run {
        std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    }
    progress.phase(Phase::Restore);
    let local = repo.operator().info().scheme() == "fs";
    let packs_at_once = if local {
        PACK_CONCURRENCY
    } else {
        REMOTE_PACK_CONCURRENCY
    };
    // Decoding is CPU work: a thread per core, no more than packs can feed.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let shared = Arc::new(Shared {
        repo: repo.clone(),
        progress: progress.clone(),
        summary: Mutex::new(RestoreSummary::default()),
        owners,
        verify: opts.verify,
        damaged: Mutex::new(Vec::new()),
        decoders: Decoders::start(cores.clamp(2, packs_at_once))?,
        remote: !local,
        reads: crate::buffers::BufferPool::keeping(MAX_READ as usize, MAX_READ as usize),
    });
    let mut batches = Batches {
        shared: shared.clone(),
        opts,
        wanted: opts.delete.then(HashSet::new),
        files: 0,
        bytes: 0,
    };

    // Packs are restored side by side, each a task that reads its ranges in turn and hands
    // each to a decoder thread: while one pack waits for storage, another decrypts and
    // writes. (Chained download and writer stages measured slower on Garage: 1.26x restic
    // against 1.65x, the writers being the narrow stage.) The next batch is planned and
    // prepared when a task slot is free and no pack is waiting, while the others run on:
    // memory is bounded by the packs in flight (each one read of at most MAX_READ and its
    // blobs) and the files of the batches they serve.
    let mut waiting: VecDeque<PackTask> = VecDeque::new();
    let mut running = FuturesUnordered::new();
    let mut planned_all = false;
    loop {
        while running.len() < packs_at_once {
            if let Some(task) = waiting.pop_front() {
                running.push(tokio::spawn(task.run()));
            } else if !planned_all {
                match planner.next_batch().await? {
                    Some(batch) => {
                        waiting.extend(batches.prepare(batch).await?);
                        crate::testhook::hook("restore-after-prepare").await;
                    }
                    None => planned_all = true,
                }
            } else {
                break;
            }
        }
        match running.next().await {
            Some(joined) => joined.map_err(|e| Error::Task(e.to_string()))??,
            None => break,
        }
    }
    progress.total(batches.files, batches.bytes, true);
    tracing::debug!(files = batches.files, dirs = planner.dirs.len(), elapsed = ?started.elapsed(), "contents written");
    if !opts.include.is_empty() && batches.files == 0 && planner.dirs.is_empty() {
        tracing::warn!(
            "nothing in snapshot {} matches --include {}: nothing was restored",
            snapshot.short_id(),
            opts.include.join(" ")
        );
    }

    // A file that is not whole must not look whole (its size and mtime restored, zeros where
    // data is missing): it is renamed to say so, and its metadata was not set.
    let damaged = std::mem::take(&mut *shared.damaged.lock().unwrap_or_else(|e| e.into_inner()));
    for dest in &damaged {
        mark_damaged(dest, &shared.summary);
    }
    if let Some(mut wanted) = batches.wanted.take() {
        wanted.extend(planner.dirs.iter().map(|(p, _)| p.clone()));
        wanted.extend(planner.hardlinks.iter().map(|(p, _)| p.clone()));
        let deleted = delete_extra(&planner, &wanted, opts.dry_run, &shared.summary, &*progress);
        shared.lock_summary().files_deleted = deleted;
    }
    if opts.dry_run {
        let mut s = shared.lock_summary().clone();
        s.dirs = planner.dirs.len() as u64;
        s.links = planner.hardlinks.len() as u64;
        s.dry_run = true;
        return Ok(s);
    }
    // Hard links once every file is written, then directories' metadata deepest first.
    for (path, target) in &planner.hardlinks {
        if opts.overwrite.keeps_existing() && std::fs::symlink_metadata(path).is_ok() {
            continue;
        }
        let _ = std::fs::remove_file(path);
        match std::fs::hard_link(target, path) {
            Ok(()) => shared.lock_summary().files_restored += 1,
            Err(e) => shared.soft(path, &e),
        }
    }
    planner
        .dirs
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in &planner.dirs {
        if let Err(e) = set_metadata(path, node, owners) {
            shared.soft(path, &e);
        }
        shared.lock_summary().dirs += 1;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "metadata set");
    let s = shared.lock_summary().clone();
    Ok(s)
}

/// Turns planned batches into pack tasks.
struct Batches<'a> {
    shared: Arc<Shared>,
    opts: &'a RestoreOptions,
    /// Every path the restore plans, with `delete`.
    wanted: Option<HashSet<PathBuf>>,
    /// Files and bytes planned so far, for the progress total.
    files: u64,
    bytes: u64,
}

impl Batches<'_> {
    /// Creates the batch's directories and special files, prepares its files (identical ones
    /// are left alone, the others created at their size) and groups the blobs still to write
    /// by pack.
    async fn prepare(&mut self, batch: Batch) -> Result<Vec<PackTask>> {
        let Batch {
            dirs,
            files,
            others,
        } = batch;
        self.files += files.len() as u64;
        self.bytes += files.iter().map(|f| f.node.size).sum::<u64>();
        self.shared.progress.total(self.files, self.bytes, false);
        if let Some(wanted) = &mut self.wanted {
            wanted.extend(files.iter().map(|f| f.dest.clone()));
            wanted.extend(others.iter().map(|(p, _)| p.clone()));
        }
        let (overwrite, dry_run) = (self.opts.overwrite, self.opts.dry_run);
        let shared = self.shared.clone();
        let new_dirs = Arc::new(
            tokio::task::spawn_blocking(move || {
                create_dirs_and_specials(&shared, &dirs, others, overwrite, dry_run)
            })
            .await?,
        );

        // In groups: one blocking task per file would cost more than the file itself.
        let mut groups: Vec<Vec<PlannedFile>> = Vec::new();
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            groups.push(files.by_ref().take(PREPARE_GROUP).collect());
        }
        let prepared: Vec<Vec<PlannedFile>> = futures::stream::iter(groups)
            .map(|group| {
                let shared = self.shared.clone();
                let new_dirs = new_dirs.clone();
                tokio::task::spawn_blocking(move || {
                    group
                        .into_iter()
                        .filter(|f| {
                            let in_new_dir = f.dest.parent().is_some_and(|d| new_dirs.contains(d));
                            prepare(&shared, f, in_new_dir, overwrite, dry_run)
                        })
                        .collect()
                })
            })
            .buffered(PACK_CONCURRENCY)
            .try_collect()
            .await?;
        if dry_run {
            return Ok(Vec::new());
        }

        // The files to write, and their blob uses by pack.
        let mut by_pack: HashMap<Id, Vec<(PackedBlob, usize, u64)>> = HashMap::new();
        let mut to_write = Vec::new();
        let mut missing = Vec::new();
        for f in prepared.into_iter().flatten() {
            let i = to_write.len();
            for (id, offset) in &f.blobs {
                match self.shared.repo.blob_location(id) {
                    Some(loc) => by_pack
                        .entry(loc.pack)
                        .or_default()
                        .push((loc.blob, i, *offset)),
                    None => missing.push((i, *id)),
                }
            }
            to_write.push(f);
        }
        let files = Arc::new(BatchFiles::new(self.shared.clone(), to_write));
        for (i, id) in missing {
            files.fail(std::iter::once(i), &Error::BlobNotInIndex(id));
        }
        Ok(by_pack
            .into_iter()
            .map(|(pack, uses)| PackTask {
                files: files.clone(),
                pack,
                uses,
            })
            .collect())
    }
}

/// Creates the directories a batch needs (parents first) and its symlinks, fifos and
/// devices. Returns the directories that were not there before: nothing in them needs to be
/// looked at before it is created.
fn create_dirs_and_specials(
    shared: &Shared,
    dirs: &[PathBuf],
    others: Vec<(PathBuf, crate::format::tree::Node)>,
    overwrite: Overwrite,
    dry_run: bool,
) -> HashSet<PathBuf> {
    let mut new_dirs = HashSet::new();
    if dry_run {
        shared.lock_summary().specials += others.len() as u64;
        return new_dirs;
    }
    for dir in dirs {
        match std::fs::symlink_metadata(dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                let _ = std::fs::remove_file(dir);
                if let Err(e) = std::fs::create_dir(dir) {
                    shared.soft(dir, &e);
                }
            }
            Err(_) => match std::fs::create_dir_all(dir) {
                Ok(()) => {
                    new_dirs.insert(dir.clone());
                }
                Err(e) => shared.soft(dir, &e),
            },
        }
    }
    for (path, node) in &others {
        if overwrite.keeps_existing() && std::fs::symlink_metadata(path).is_ok() {
            continue;
        }
        match create_special(path, node) {
            Ok(true) => {
                shared.lock_summary().specials += 1;
                if let Err(e) = set_metadata(path, node, shared.owners) {
                    shared.soft(path, &e);
                }
            }
            Ok(false) => {}
            Err(e) => shared.soft(path, &e),
        }
    }
    new_dirs
}

/// Prepares one file by the overwrite policy and counts it; true when blobs remain to be
/// written into it. A file with nothing to write is finished here.
fn prepare(
    shared: &Shared,
    f: &PlannedFile,
    in_new_dir: bool,
    overwrite: Overwrite,
    dry_run: bool,
) -> bool {
    let key = shared.repo.key();
    let prepared = match prepare_file(f, key, in_new_dir, overwrite, dry_run) {
        Ok(p) => p,
        Err(e) => {
            shared.soft(&f.dest, &e);
            return false;
        }
    };
    {
        let mut s = shared.lock_summary();
        match prepared {
            Prepared::Keep => s.files_kept += 1,
            Prepared::Identical => s.files_skipped += 1,
            Prepared::Write if dry_run => {
                s.files_restored += 1;
                s.bytes_written += f.node.size;
            }
            Prepared::Write => s.files_restored += 1,
        }
    }
    if dry_run {
        return false;
    }
    match prepared {
        Prepared::Keep => {
            shared.progress.advance(1, f.node.size);
            false
        }
        Prepared::Identical => {
            shared.progress.advance(1, f.node.size);
            if let Err(e) = set_metadata(&f.dest, &f.node, shared.owners) {
                shared.soft(&f.dest, &e);
            }
            false
        }
        Prepared::Write if f.blobs.is_empty() => {
            finish_file(shared, f, None);
            false
        }
        Prepared::Write => true,
    }
}

/// `delete`: removes what the restored directories hold beyond the snapshot's entries (and
/// the excluded ones); returns how many entries went (or would go, in a dry run).
fn delete_extra(
    planner: &Planner<'_>,
    wanted: &HashSet<PathBuf>,
    dry_run: bool,
    summary: &Mutex<RestoreSummary>,
    progress: &dyn Progress,
) -> u64 {
    let mut deleted = 0;
    for (dir, snap_dir) in &planner.whole_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            // What an exclude pattern names is kept, as restic keeps it.
            if wanted.contains(&path) || planner.filter.excluded(&snap_dir.join(e.file_name())) {
                continue;
            }
            deleted += 1;
            if dry_run {
                continue;
            }
            let removed = match e.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            if let Err(e) = removed {
                deleted -= 1;
                let message = format!("not deleted: {e}");
                progress.error(&path, &message);
                summary
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .errors
                    .push(FileError { path, message });
            }
        }
    }
    deleted
}

/// Renames a file that could not be restored whole to `<name>.damaged` (or removes it when
/// that fails), and says so in its error.
fn mark_damaged(dest: &Path, summary: &Mutex<RestoreSummary>) {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".damaged");
    let damaged = dest.with_file_name(&name);
    let outcome = match std::fs::rename(dest, &damaged) {
        Ok(()) => format!(
            "left as {} (the parts that could be read are in place, the rest are zeros)",
            damaged.display()
        ),
        Err(_) => match std::fs::remove_file(dest) {
            Ok(()) => "removed".to_string(),
            Err(e) => format!("could not be renamed or removed: {e}"),
        },
    };
    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
    s.files_restored = s.files_restored.saturating_sub(1);
    s.files_damaged += 1;
    if let Some(err) = s.errors.iter_mut().find(|e| e.path == dest) {
        err.message = format!("{}; {outcome}", err.message);
    }
}
