//! Restore: writes a snapshot's tree below a target directory.
//!
//! 1. Walk the snapshot's trees and plan: which directories, files, links and special files
//!    to create, filtered by the include patterns. Names are checked so that a damaged or
//!    hostile tree cannot write outside the target.
//! 2. Create directories and files; a file already on disk with the same size is hashed
//!    chunk by chunk and left alone when every blob id matches.
//! 3. Read by pack: every needed blob of a pack is fetched once (neighbouring blobs in one
//!    ranged read), verified against its id, and written at each offset that uses it.
//! 4. Set metadata: files and links first, then directories from the deepest up, so that
//!    writing into a directory does not disturb its restored mtime.

mod plan;
mod write;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::format::pack::PackedBlob;
use crate::format::snapshot::SnapshotEntry;
use crate::id::Id;
use crate::progress::{FileError, Phase, Progress};
use crate::repository::{LockNeed, Repository};
use plan::PlannedFile;
use write::{
    create_special, fetch, prepare_file, read_jobs, set_metadata, write, PackContext, Prepared,
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
const PREPARE_BATCH: usize = 256;

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
    let mut plan = plan::plan(repo, snapshot, opts).await?;
    if !opts.include.is_empty() && plan.is_empty() {
        tracing::warn!(
            "nothing in snapshot {} matches --include {}: nothing was restored",
            snapshot.short_id(),
            opts.include.join(" ")
        );
    }
    let owners = opts
        .owners
        .unwrap_or_else(|| nix::unistd::geteuid().is_root());
    tracing::debug!(files = plan.files.len(), dirs = plan.dirs.len(), elapsed = ?started.elapsed(), "restore planned");

    let summary = Arc::new(Mutex::new(RestoreSummary::default()));
    let soft = |s: &Mutex<RestoreSummary>, path: &Path, e: &dyn std::fmt::Display| {
        tracing::debug!("{}: {e}", path.display());
        progress.error(path, &e.to_string());
        s.lock()
            .unwrap_or_else(|e| e.into_inner())
            .errors
            .push(FileError {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
    };

    if !opts.dry_run {
        std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    }
    for (dir, _) in plan.dirs.iter().filter(|_| !opts.dry_run) {
        match std::fs::symlink_metadata(dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                let _ = std::fs::remove_file(dir);
                if let Err(e) = std::fs::create_dir(dir) {
                    soft(&summary, dir, &e);
                }
            }
            Err(_) => {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    soft(&summary, dir, &e);
                }
            }
        }
    }

    // Prepare files: skip identical ones, create the others at their final size.
    let files = std::mem::take(&mut plan.files);
    progress.phase(Phase::Restore);
    let total_bytes = files.iter().map(|f| f.node.size).sum();
    progress.total(files.len() as u64, total_bytes, true);
    // In batches: one blocking task per file would cost more than the file itself.
    let mut batches: Vec<Vec<PlannedFile>> = Vec::new();
    let mut files = files.into_iter().peekable();
    while files.peek().is_some() {
        batches.push(files.by_ref().take(PREPARE_BATCH).collect());
    }
    let prepared_batches: Vec<Vec<(PlannedFile, std::io::Result<Prepared>)>> =
        futures::stream::iter(batches)
            .map(|batch| {
                let key = repo.key().clone();
                let (overwrite, dry_run) = (opts.overwrite, opts.dry_run);
                tokio::task::spawn_blocking(move || {
                    batch
                        .into_iter()
                        .map(|f| {
                            let r = prepare_file(&f, &key, overwrite, dry_run);
                            (f, r)
                        })
                        .collect()
                })
            })
            .buffered(PACK_CONCURRENCY)
            .try_collect()
            .await?;
    let mut prepared: Vec<(PlannedFile, Prepared)> = Vec::new();
    // Files that could not be prepared are still the snapshot's: --delete keeps them.
    let mut unprepared = Vec::new();
    for (f, r) in prepared_batches.into_iter().flatten() {
        match r {
            Ok(p) => prepared.push((f, p)),
            Err(e) => {
                soft(&summary, &f.dest, &e);
                unprepared.push(f.dest);
            }
        }
    }
    if opts.dry_run {
        let mut s = summary.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (f, p) in &prepared {
            match p {
                Prepared::Write => {
                    s.files_restored += 1;
                    s.bytes_written += f.node.size;
                }
                Prepared::Identical => s.files_skipped += 1,
                Prepared::Keep => s.files_kept += 1,
            }
        }
        s.dirs = plan.dirs.len() as u64;
        s.specials = plan.others.len() as u64;
        s.links = plan.hardlinks.len() as u64;
        if opts.delete {
            let wanted = Wanted::of(&plan, &prepared, &unprepared);
            s.files_deleted = delete_extra(&plan, &wanted, true, &summary, &*progress);
        }
        s.dry_run = true;
        return Ok(s);
    }

    tracing::debug!(elapsed = ?started.elapsed(), "files prepared");
    // Plan reads by pack.
    let mut by_pack: HashMap<Id, Vec<(PackedBlob, usize, u64)>> = HashMap::new();
    let mut file_paths = Vec::with_capacity(prepared.len());
    // Blob writes each file still waits for: it is done when they are.
    let mut blobs_left = Vec::with_capacity(prepared.len());
    // Files that will not be whole: a blob is not indexed, or (below) cannot be read or written.
    let mut incomplete = HashSet::new();
    for (i, (f, prep)) in prepared.iter().enumerate() {
        file_paths.push(f.dest.clone());
        let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
        if *prep != Prepared::Write {
            if *prep == Prepared::Keep {
                s.files_kept += 1;
            } else {
                s.files_skipped += 1;
            }
            drop(s);
            blobs_left.push(AtomicUsize::new(0));
            progress.advance(1, f.node.size);
            continue;
        }
        s.files_restored += 1;
        drop(s);
        let mut uses = 0;
        for (id, offset) in &f.blobs {
            match repo.blob_location(id) {
                Some(loc) => {
                    uses += 1;
                    by_pack
                        .entry(loc.pack)
                        .or_default()
                        .push((loc.blob, i, *offset));
                }
                None => {
                    if incomplete.insert(i) {
                        soft(&summary, &f.dest, &Error::BlobNotInIndex(*id));
                    }
                }
            }
        }
        if uses == 0 {
            progress.advance(1, 0);
        }
        blobs_left.push(AtomicUsize::new(uses));
    }
    let ctx = Arc::new(PackContext {
        repo: repo.clone(),
        files: file_paths,
        blobs_left,
        progress: progress.clone(),
        summary: summary.clone(),
        failed: Mutex::new(incomplete),
    });
    // Packs are restored side by side, each a task that reads its ranges in turn and writes
    // each on a blocking thread: while one pack waits for storage, another decrypts and
    // writes. (Chained download and writer stages measured slower on Garage: 1.26x restic
    // against 1.65x, the writers being the narrow stage.) Memory is bounded by the packs in
    // flight, each one read of at most MAX_READ and its blobs.
    let packs_at_once = if repo.operator().info().scheme() == "fs" {
        PACK_CONCURRENCY
    } else {
        REMOTE_PACK_CONCURRENCY
    };
    futures::stream::iter(by_pack)
        .map(|(pack, uses)| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for job in read_jobs(pack, uses) {
                    if let Some((job, buf)) = fetch(ctx.clone(), job).await {
                        write(ctx.clone(), job, buf).await?;
                    }
                }
                Ok::<_, Error>(())
            })
        })
        .buffer_unordered(packs_at_once)
        .map(|joined| {
            joined
                .map_err(|e| Error::Task(e.to_string()))
                .and_then(|r| r)
        })
        .try_collect::<Vec<()>>()
        .await?;
    tracing::debug!(elapsed = ?started.elapsed(), "contents written");
    // A file that is not whole must not look whole (its size and mtime restored, zeros where
    // data is missing): it is renamed to say so, and its metadata is not set.
    let failed: HashSet<usize> =
        std::mem::take(&mut *ctx.failed.lock().unwrap_or_else(|e| e.into_inner()));
    for &i in &failed {
        mark_damaged(&prepared[i].0.dest, &summary);
    }
    if opts.verify {
        verify(repo, &prepared, &failed, &summary, &*progress).await?;
    }
    if opts.delete {
        let wanted = Wanted::of(&plan, &prepared, &unprepared);
        let deleted = delete_extra(&plan, &wanted, false, &summary, &*progress);
        summary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files_deleted = deleted;
    }
    // Metadata, files first, then directories deepest first.
    let keep_existing = matches!(opts.overwrite, Overwrite::Never | Overwrite::IfNewer);
    for (path, target) in &plan.hardlinks {
        if keep_existing && std::fs::symlink_metadata(path).is_ok() {
            continue;
        }
        let _ = std::fs::remove_file(path);
        match std::fs::hard_link(target, path) {
            Ok(()) => {
                summary
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .files_restored += 1
            }
            Err(e) => soft(&summary, path, &e),
        }
    }
    for (path, node) in &plan.others {
        if keep_existing && std::fs::symlink_metadata(path).is_ok() {
            continue;
        }
        match create_special(path, node) {
            Ok(true) => {
                summary.lock().unwrap_or_else(|e| e.into_inner()).specials += 1;
                if let Err(e) = set_metadata(path, node, owners) {
                    soft(&summary, path, &e);
                }
            }
            Ok(false) => {}
            Err(e) => soft(&summary, path, &e),
        }
    }
    for (i, (f, prep)) in prepared.iter().enumerate() {
        if failed.contains(&i) || *prep == Prepared::Keep {
            continue;
        }
        if let Err(e) = set_metadata(&f.dest, &f.node, owners) {
            soft(&summary, &f.dest, &e);
        }
    }
    plan.dirs
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in &plan.dirs {
        if let Err(e) = set_metadata(path, node, owners) {
            soft(&summary, path, &e);
        }
        summary.lock().unwrap_or_else(|e| e.into_inner()).dirs += 1;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "metadata set");
    let s = summary.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(s)
}

/// `verify`: reads every written file back and checks each blob against its id.
async fn verify(
    repo: &Repository,
    prepared: &[(PlannedFile, Prepared)],
    failed: &HashSet<usize>,
    summary: &Mutex<RestoreSummary>,
    progress: &dyn Progress,
) -> Result<()> {
    let key = repo.key().clone();
    let written: Vec<PlannedFile> = prepared
        .iter()
        .enumerate()
        .filter(|(i, (_, p))| *p == Prepared::Write && !failed.contains(i))
        .map(|(_, (f, _))| f.clone())
        .collect();
    let bad: Vec<PathBuf> = tokio::task::spawn_blocking(move || {
        written
            .into_iter()
            .filter(|f| !write::holds_content(f, &key))
            .map(|f| f.dest)
            .collect()
    })
    .await?;
    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
    s.files_verified = s.files_restored.saturating_sub(bad.len() as u64);
    for path in bad {
        let message = "verification failed: the file on disk differs from the snapshot".to_string();
        progress.error(&path, &message);
        s.errors.push(FileError { path, message });
    }
    Ok(())
}

/// Every path the restore plans (or keeps, when excluded).
struct Wanted<'a>(HashSet<&'a Path>);

impl<'a> Wanted<'a> {
    fn of(
        plan: &'a plan::Plan,
        prepared: &'a [(PlannedFile, Prepared)],
        unprepared: &'a [PathBuf],
    ) -> Self {
        let mut wanted: HashSet<&Path> = HashSet::new();
        wanted.extend(plan.dirs.iter().map(|(p, _)| p.as_path()));
        wanted.extend(prepared.iter().map(|(f, _)| f.dest.as_path()));
        wanted.extend(unprepared.iter().map(PathBuf::as_path));
        wanted.extend(plan.hardlinks.iter().map(|(p, _)| p.as_path()));
        wanted.extend(plan.others.iter().map(|(p, _)| p.as_path()));
        Wanted(wanted)
    }
}

/// `delete`: removes what the restored directories hold beyond the snapshot's entries (and
/// the excluded ones); returns how many entries went (or would go, in a dry run).
fn delete_extra(
    plan: &plan::Plan,
    wanted: &Wanted<'_>,
    dry_run: bool,
    summary: &Mutex<RestoreSummary>,
    progress: &dyn Progress,
) -> u64 {
    let wanted = &wanted.0;
    let mut deleted = 0;
    for (dir, snap_dir) in &plan.whole_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            // What an exclude pattern names is kept, as restic keeps it.
            if wanted.contains(path.as_path())
                || plan.filter.excluded(&snap_dir.join(e.file_name()))
            {
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
