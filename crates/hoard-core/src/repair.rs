//! Repairs: bring a damaged repository back to a clean `check` (FORMAT.md "Prune" for the
//! write order they share).
//!
//! - `repair_index` rebuilds the whole index from the packs themselves: every pack's header is
//!   authenticated and lists its blobs, so index files are only a cache of them. Like prune,
//!   it writes the new index files first (the last one superseding every index file that
//!   existed), and only then deletes the old ones, so a crash at any point leaves a readable
//!   index.
//! - `repair_snapshots` rewrites snapshots that need blobs that are gone, leaving out what
//!   cannot be restored, so that they restore and check clean (and prune can run).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::backup::counters::Counters;
use crate::backup::saver::{BlobSaver, IndexMode, SaverHandle};
use crate::format::tree::Tree;

use crate::error::{Error, Result};
use crate::format::index::{IndexBatcher, IndexPack};
use crate::format::pack::{header_range, parse_header};
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::{FileKind, LockNeed, Repository};

/// Packs whose headers are read at once.
const HEADER_READS: usize = 8;

/// What `repair_index` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairIndexStats {
    /// Packs on storage.
    pub packs: u64,
    /// Packs whose header was read and indexed.
    pub packs_indexed: u64,
    /// Blobs they hold.
    pub blobs: u64,
    /// Packs whose header could not be read: their blobs are not indexed (`check
    /// --read-data` names what they cost).
    pub packs_damaged: Vec<String>,
    /// Index files written.
    pub index_files_written: u64,
    /// Index files replaced and deleted.
    pub index_files_deleted: u64,
}

/// Rebuilds the index from the pack headers, under an exclusive lock.
pub async fn repair_index(repo: &Repository, progress: &dyn Progress) -> Result<RepairIndexStats> {
    repo.locked(LockNeed::Exclusive, |_| repair_index_locked(repo, progress))
        .await
}

async fn repair_index_locked(
    repo: &Repository,
    progress: &dyn Progress,
) -> Result<RepairIndexStats> {
    let mut stats = RepairIndexStats::default();
    let old_index_files = repo.list(FileKind::Index).await?;
    let packs = repo.list_sizes(FileKind::Pack).await?;
    stats.packs = packs.len() as u64;
    progress.phase(Phase::RepairIndex);
    progress.total(packs.len() as u64, 0, true);

    let mut headers = futures::stream::iter(packs)
        .map(|(id, size)| async move { (id, read_header(repo, &id, size).await) })
        .buffer_unordered(HEADER_READS);
    let mut batch = IndexBatcher::default();
    while let Some((id, header)) = headers.next().await {
        progress.advance(1, 0);
        match header {
            Ok(blobs) => {
                stats.packs_indexed += 1;
                stats.blobs += blobs.len() as u64;
                if let Some(full) = batch.push(IndexPack { id, blobs }) {
                    repo.save_doc(FileKind::Index, &full).await?;
                    stats.index_files_written += 1;
                }
            }
            // Storage failures stop the repair: an index written without a pack that only
            // could not be reached would drop its blobs for nothing.
            Err(e @ Error::Storage { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!("pack {} left out: {e}", id.short());
                stats
                    .packs_damaged
                    .push(format!("{}: {e}", FileKind::Pack.path(&id)));
            }
        }
    }
    repo.save_doc(FileKind::Index, &batch.finish(old_index_files.clone()))
        .await?;
    stats.index_files_written += 1;
    crate::testhook::hook("repair-index-after-index").await;
    repo.delete_all(FileKind::Index, &old_index_files).await?;
    stats.index_files_deleted = old_index_files.len() as u64;
    repo.reload_index().await?;
    Ok(stats)
}

/// A pack's blobs, from its authenticated header, read with two ranged reads.
async fn read_header(
    repo: &Repository,
    id: &Id,
    size: u64,
) -> Result<Vec<crate::format::pack::PackedBlob>> {
    let what = FileKind::Pack.path(id);
    if size < 4 {
        return Err(Error::corrupt(what, "shorter than a header length"));
    }
    let trailer = repo.read_range(FileKind::Pack, id, size - 4..size).await?;
    let trailer: [u8; 4] = trailer
        .as_slice()
        .try_into()
        .map_err(|_| Error::corrupt(what.clone(), "short read of the header length"))?;
    let range = header_range(size, trailer).map_err(|e| match e {
        Error::Corrupt { detail, .. } => Error::corrupt(what.clone(), detail),
        other => other,
    })?;
    let start = range.start;
    let sealed = repo.read_range(FileKind::Pack, id, range).await?;
    let blobs = parse_header(repo.key(), &sealed, start, &what)?;
    for b in &blobs {
        // A blob the header claims must have lengths this repository writes.
        repo.check_lengths(&crate::repository::index::BlobLocation {
            pack: *id,
            blob: *b,
        })?;
    }
    Ok(blobs)
}

/// What `repair_snapshots` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSnapshotsStats {
    /// Snapshots looked at.
    pub snapshots: u64,
    /// Snapshots that needed a repair, and the repaired snapshot written for each.
    pub repaired: Vec<(Id, Id)>,
    /// What each repair left out: `snapshot: path: why`.
    pub removed: Vec<String>,
    /// Original snapshots removed (with `forget`).
    pub forgotten: u64,
}

/// Options for [`repair_snapshots`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairSnapshotsOptions {
    /// Remove each original snapshot once its repaired one is written.
    pub forget: bool,
    /// Report only; write nothing.
    pub dry_run: bool,
}

/// Rewrites every snapshot whose trees need blobs that are gone (not indexed, or in a missing
/// pack), as restic's `repair snapshots` does: a file with a missing blob is left out, a
/// directory whose listing is missing becomes empty. The repaired snapshot keeps the original's
/// metadata, gains the tag `repaired` and names the original; the original stays unless
/// `forget` is set. Runs under an exclusive lock; writes trees, then the index, then the new
/// snapshot, then removes the original, so a crash leaves at worst both.
pub async fn repair_snapshots(
    repo: &Repository,
    opts: RepairSnapshotsOptions,
) -> Result<RepairSnapshotsStats> {
    repo.locked(LockNeed::Exclusive, |_| repair_snapshots_locked(repo, opts))
        .await
}

async fn repair_snapshots_locked(
    repo: &Repository,
    opts: RepairSnapshotsOptions,
) -> Result<RepairSnapshotsStats> {
    let mut stats = RepairSnapshotsStats::default();
    let on_storage: HashSet<Id> = repo.list(FileKind::Pack).await?.into_iter().collect();
    let present = |id: &Id| {
        repo.blob_location(id)
            .is_some_and(|loc| on_storage.contains(&loc.pack))
    };
    let snapshots = repo.snapshots().await?;
    stats.snapshots = snapshots.len() as u64;
    let counters = Arc::new(Counters::default());
    let saver = BlobSaver::new(repo, counters, IndexMode::Write, 1, 2);
    let handle = saver
        .handle()
        .ok_or_else(|| Error::Task("saver closed".into()))?;
    let mut rewritten: HashMap<Id, Rewrite> = HashMap::new();
    let mut plans = Vec::new();
    let walked = async {
        for s in &snapshots {
            let mut removed = Vec::new();
            let root = rewrite_tree(
                repo,
                &handle,
                &present,
                s.snapshot.tree,
                PathBuf::from("/"),
                &mut rewritten,
                &mut removed,
                opts.dry_run,
            )
            .await?;
            if root != s.snapshot.tree {
                plans.push((s.clone(), root, removed));
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(handle);
    // Trees first, then the index that names them: only then may snapshots point at them.
    saver.finish().await?;
    walked?;
    for (s, root, removed) in plans {
        let mut snapshot = s.snapshot.clone();
        snapshot.tree = root;
        snapshot.original = Some(s.id);
        if !snapshot.tags.iter().any(|t| t == "repaired") {
            snapshot.tags.push("repaired".into());
        }
        stats.removed.extend(
            removed
                .into_iter()
                .map(|r| format!("snapshot {}: {r}", s.id.short())),
        );
        if opts.dry_run {
            stats.repaired.push((s.id, Id::default()));
            continue;
        }
        let new = repo.save_doc(FileKind::Snapshot, &snapshot).await?;
        stats.repaired.push((s.id, new));
        if opts.forget {
            repo.delete_file(FileKind::Snapshot, &s.id).await?;
            stats.forgotten += 1;
        }
    }
    Ok(stats)
}

/// A tree's repaired id (the same id when nothing below it is missing).
type Rewrite = Id;

/// Rewrites one tree without what is missing; returns its (possibly new) id. Shared subtrees
/// are rewritten once.
#[allow(clippy::too_many_arguments)]
fn rewrite_tree<'a>(
    repo: &'a Repository,
    saver: &'a SaverHandle,
    present: &'a (dyn Fn(&Id) -> bool + Sync),
    id: Id,
    path: PathBuf,
    done: &'a mut HashMap<Id, Rewrite>,
    removed: &'a mut Vec<String>,
    dry_run: bool,
) -> futures::future::BoxFuture<'a, Result<Id>> {
    Box::pin(async move {
        if let Some(new) = done.get(&id) {
            return Ok(*new);
        }
        let tree = if present(&id) {
            match repo.load_tree(&id).await {
                Ok(t) => Some(t),
                Err(e @ Error::Storage { .. }) => return Err(e),
                Err(e) => {
                    removed.push(format!(
                        "{}: its listing is damaged ({e}); it is now empty",
                        path.display()
                    ));
                    None
                }
            }
        } else {
            removed.push(format!(
                "{}: its listing is missing; it is now empty",
                path.display()
            ));
            None
        };
        let Some(tree) = tree else {
            let empty = Tree { nodes: Vec::new() }.to_bytes();
            let new = if dry_run {
                repo.key().blob_id(&empty)
            } else {
                saver.save_tree(empty).await?
            };
            done.insert(id, new);
            return Ok(new);
        };
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut changed = false;
        for mut node in tree.nodes {
            let child = path.join(node.name.as_os_str());
            if let Some(sub) = node.subtree {
                let new = rewrite_tree(
                    repo,
                    saver,
                    present,
                    sub,
                    child.clone(),
                    done,
                    removed,
                    dry_run,
                )
                .await?;
                changed |= new != sub;
                node.subtree = Some(new);
            }
            if let Some(missing) = node.content.iter().flatten().find(|b| !present(b)) {
                removed.push(format!(
                    "{}: blob {} is missing; the file is left out",
                    child.display(),
                    missing.short()
                ));
                changed = true;
                continue;
            }
            nodes.push(node);
        }
        let new = if !changed {
            id
        } else {
            let bytes = Tree { nodes }.to_bytes();
            if dry_run {
                repo.key().blob_id(&bytes)
            } else {
                saver.save_tree(bytes).await?
            }
        };
        done.insert(id, new);
        Ok(new)
    })
}
