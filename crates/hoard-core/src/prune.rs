//! Prune: give back the space of blobs no snapshot uses (FORMAT.md "Prune").
//!
//! Read top-down, all under an exclusive lock:
//! 1. **Load**: the in-memory index, streamed from the live index files (unless the one
//!    loaded at open is still current).
//! 2. **Mark**: walk every snapshot's trees (each distinct tree once) and set one bit per used
//!    blob in a bitmap parallel to the index table. A snapshot that needs a blob the index
//!    lacks stops prune before anything is written: that is a damaged repository, not garbage.
//! 3. **Plan**: a second pass over the index files, one at a time, gives per pack its used and
//!    unused bytes. Packs with no used blob are deleted; packs on storage that no index names
//!    (left by crashed backups or an earlier crashed prune) are deleted; partly used packs are
//!    repacked, most wasteful first, until the unused share left is at most `max_unused`.
//! 4. **Repack**: copy the used blobs of those packs (listed by each pack's own header,
//!    verified: opened and checked against their ids) into new packs and upload them.
//! 5. **Index**: a third pass copies the kept packs' entries into new index files, then the new
//!    packs. Only the last file carries `supersedes` (every index file that existed at the
//!    start), so until it is stored the old index stays in force and names only packs that
//!    still exist.
//! 6. **Delete** packs, then the superseded index files.
//!
//! A crash after any step leaves a repository whose live index names only existing packs:
//! before step 5 completes the old index rules and nothing was deleted; after it, the new index
//! rules and every pack it names was uploaded first. Leftovers (unindexed new packs, packs and
//! index files not yet deleted) are what the next prune collects.
//!
//! Memory: the index table (52 bytes per blob, as any command holds), one bit per blob, about
//! 60 bytes per pack, and a few index files and packs in flight.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::backup::counters::Counters;
use crate::backup::saver::{BlobSaver, IndexMode};
use crate::error::{Error, Result};
use crate::format::index::{IndexPack, BLOBS_PER_INDEX_FILE};
use crate::format::pack::{read_pack, PackedBlob};
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::{FileKind, LockNeed, Repository};
use crate::testhook::hook;
use crate::walk::walk_unique_trees;

/// How much unused space prune may leave, and whether it changes anything.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Unused share of the repository tolerated after prune, in percent (0–100): partly used
    /// packs are repacked until the rest is below it. 100 repacks nothing.
    pub max_unused_percent: f64,
    /// Unused bytes tolerated after prune (restic's `--max-unused 10M`); when set, it is the
    /// limit instead of `max_unused_percent`.
    pub max_unused_bytes: Option<u64>,
    /// Repack at most this many bytes of packs in one run (restic's `--max-repack-size`):
    /// the rest waits for the next prune.
    pub max_repack_bytes: Option<u64>,
    /// Plan only: report what would happen, change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 5.0,
            max_unused_bytes: None,
            max_repack_bytes: None,
            dry_run: false,
        }
    }
}

/// What prune found and did (or would do, in a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneStats {
    /// Snapshots whose data is kept.
    pub snapshots: u64,
    /// Packs on storage before.
    pub packs_before: u64,
    /// Their bytes.
    pub bytes_before: u64,
    /// Blobs some snapshot uses.
    pub blobs_used: u64,
    /// Their bytes in packs.
    pub bytes_used: u64,
    /// Blobs no snapshot uses.
    pub blobs_unused: u64,
    /// Their bytes in packs.
    pub bytes_unused: u64,
    /// Packs holding only unused blobs.
    pub packs_deleted: u64,
    /// Packs on storage that no index names.
    pub packs_unreferenced: u64,
    /// Their bytes.
    pub bytes_unreferenced: u64,
    /// Partly used packs whose used blobs were copied out.
    pub packs_repacked: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
    /// Indexed packs that were missing but held nothing in use (dropped from the index).
    pub packs_missing_unused: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Index files deleted.
    pub index_files_deleted: u64,
    /// Bytes no longer stored afterwards.
    pub bytes_freed: u64,
    /// Pack bytes on storage afterwards.
    pub bytes_after: u64,
    /// Unused bytes left in kept packs.
    pub bytes_unused_after: u64,
    /// Shares (see [`mod@crate::share`]) whose URL had expired, deleted (or, in a dry run, that
    /// would be).
    pub shares_expired: u64,
    /// Nothing was changed (a plan only).
    pub dry_run: bool,
}

/// One bit per blob of the index table.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

#[derive(Debug, Clone, Default)]
struct PackUse {
    /// The pack file's length its index entries imply.
    file_len: u64,
    blob_count: u64,
    used_blobs: u64,
    used_bytes: u64,
    total_bytes: u64,
}

/// Removes unused data under an exclusive lock.
pub async fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneStats> {
    if !(0.0..=100.0).contains(&opts.max_unused_percent) {
        return Err(Error::invalid(
            "--max-unused",
            format!("{}% (must be 0–100)", opts.max_unused_percent),
        ));
    }
    repo.locked(LockNeed::Exclusive, |_| prune_locked(repo, opts, progress))
        .await
}

async fn prune_locked(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneStats> {
    let mut stats = PruneStats {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // Under the exclusive lock no writer runs: every staging file is a leftover.
    if !opts.dry_run {
        repo.clean_staging(std::time::Duration::ZERO).await;
    }
    // Expired shares are outside the format; a failure to clean them is not prune's.
    stats.shares_expired = match expired_shares(repo, opts.dry_run).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("expired shares were not removed: {e}");
            0
        }
    };

    // 1. Load: the in-memory index, streamed, unless the one loaded at open is still current
    // (the lock is exclusive, so nothing changes from here on). Every index file present now
    // is superseded at the end.
    // An index file that cannot be read hides which packs are in use: deleting "unreferenced"
    // packs then would delete data.
    let (all_index_files, live_index_files) = repo.index_to_replace("pruned").await?;

    // 2. Mark.
    let snapshots = repo.all_snapshots().await?;
    stats.snapshots = snapshots.len() as u64;
    progress.phase(Phase::PruneMark);
    progress.total(snapshots.len() as u64, 0, true);
    let used = mark_used(repo, &snapshots, progress).await?;

    // 3. Plan, from a second pass over the index files (one record per pack, no blob lists).
    let mut packs: HashMap<Id, PackUse> = HashMap::new();
    let mut listed_blobs = 0usize;
    repo.for_each_index_pack(&live_index_files, |pack, blobs| {
        if packs.contains_key(&pack) {
            return Ok(()); // listed twice (e.g. after a crashed prune); count once
        }
        let index = repo.index();
        let mut u = PackUse {
            blob_count: blobs.len() as u64,
            ..Default::default()
        };
        listed_blobs += blobs.len();
        for b in blobs {
            u.total_bytes += u64::from(b.length);
            // A blob stored twice is used in the copy the index chose only.
            let chosen = index
                .get(&b.id)
                .is_some_and(|l| l.pack == pack && l.blob.offset == b.offset);
            if chosen && index.position(&b.id).is_some_and(|i| used.get(i)) {
                u.used_blobs += 1;
                u.used_bytes += u64::from(b.length);
            }
        }
        u.file_len = crate::format::pack::pack_file_len_of(blobs.len(), u.total_bytes);
        packs.insert(pack, u);
        Ok(())
    })
    .await?;
    let on_storage: HashMap<Id, u64> = repo.list_sizes(FileKind::Pack).await?.into_iter().collect();
    stats.packs_before = on_storage.len() as u64;
    stats.bytes_before = on_storage.values().sum();

    let mut delete: Vec<Id> = Vec::new();
    let mut partly: Vec<(Id, u64, u64)> = Vec::new(); // (pack, unused bytes, total bytes)
    let mut keep: Vec<Id> = Vec::new();
    for (id, u) in &packs {
        stats.blobs_used += u.used_blobs;
        stats.bytes_used += u.used_bytes;
        stats.blobs_unused += u.blob_count - u.used_blobs;
        stats.bytes_unused += u.total_bytes - u.used_bytes;
        // A used pack whose length is not what its index entries say is damaged (or was
        // replaced): repacking would read whatever it is, and keeping it hides the damage.
        if let Some(&len) = on_storage.get(id) {
            if u.used_blobs > 0 && len != u.file_len {
                return Err(Error::corrupt(
                    FileKind::Pack.path(id),
                    format!(
                        "{len} bytes, but its index entries say {}; nothing was pruned (run `hoard repair packs {}`)",
                        u.file_len,
                        id.short()
                    ),
                ));
            }
        }
        if !on_storage.contains_key(id) {
            if u.used_blobs > 0 {
                return Err(Error::corrupt(
                    FileKind::Pack.path(id),
                    "missing, but snapshots use blobs in it; nothing was pruned (run `hoard check`)",
                ));
            }
            stats.packs_missing_unused += 1;
            continue;
        }
        if u.used_blobs == 0 {
            delete.push(*id);
            stats.packs_deleted += 1;
        } else if u.used_bytes < u.total_bytes {
            partly.push((*id, u.total_bytes - u.used_bytes, u.total_bytes));
        } else {
            keep.push(*id);
        }
    }
    let unreferenced: Vec<Id> = on_storage
        .keys()
        .filter(|id| !packs.contains_key(id))
        .copied()
        .collect();
    stats.packs_unreferenced = unreferenced.len() as u64;
    stats.bytes_unreferenced = unreferenced.iter().map(|id| on_storage[id]).sum();

    // Repack the most wasteful partly used packs until the unused share left is tolerable:
    // unused / (used + unused) <= p, i.e. unused <= used * p / (100 - p).
    partly.sort_by(|a, b| {
        let ra = a.1 as f64 / a.2 as f64;
        let rb = b.1 as f64 / b.2 as f64;
        rb.total_cmp(&ra).then(a.0.cmp(&b.0))
    });
    let p = opts.max_unused_percent;
    let limit = match opts.max_unused_bytes {
        Some(bytes) => bytes,
        None if p >= 100.0 => u64::MAX,
        None => (stats.bytes_used as f64 * p / (100.0 - p)) as u64,
    };
    let mut unused_left: u64 = partly.iter().map(|x| x.1).sum();
    let mut repack: Vec<Id> = Vec::new();
    let mut repack_budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for (id, unused, _) in partly {
        let size = on_storage.get(&id).copied().unwrap_or(0);
        if unused_left > limit && size <= repack_budget {
            repack.push(id);
            unused_left -= unused;
            repack_budget -= size;
        } else {
            keep.push(id);
        }
    }
    stats.packs_repacked = repack.len() as u64;
    stats.bytes_unused_after = unused_left;

    let index_needs_rewrite = !delete.is_empty()
        || !repack.is_empty()
        || stats.packs_missing_unused > 0
        || all_index_files.len() > live_index_files.len()
        || live_index_files.len() > 1 + listed_blobs / BLOBS_PER_INDEX_FILE;
    tracing::info!(
        delete = delete.len(),
        repack = repack.len(),
        unreferenced = unreferenced.len(),
        "prune plan"
    );

    let freed_by_delete: u64 = delete
        .iter()
        .chain(&repack)
        .chain(&unreferenced)
        .map(|id| on_storage[id])
        .sum();
    if opts.dry_run {
        let new_bytes: u64 = repack.iter().map(|id| packs[id].used_bytes).sum();
        stats.bytes_written = new_bytes;
        stats.bytes_freed = freed_by_delete.saturating_sub(new_bytes);
        stats.bytes_after = stats.bytes_before - stats.bytes_freed;
        return Ok(stats);
    }

    // 4. Repack.
    progress.phase(Phase::PruneRepack);
    let repack_bytes = repack.iter().map(|id| on_storage[id]).sum();
    progress.total(repack.len() as u64, repack_bytes, true);
    let new_packs = repack_packs(repo, &repack, &used, &mut stats, progress).await?;
    hook("prune-after-repack").await;

    // 5. Index: the kept packs' entries, copied from the old index files one file at a time,
    // then the new packs; the last file written supersedes every old one.
    if index_needs_rewrite {
        let keep: HashSet<Id> = keep.into_iter().collect();
        stats.index_files_written += repo
            .write_superseding_index(
                &live_index_files,
                |id| keep.contains(id),
                new_packs,
                all_index_files.clone(),
            )
            .await?;
        hook("prune-after-index").await;
    }

    // 6. Delete: packs first, then the index files they were listed in.
    let doomed: Vec<Id> = delete
        .iter()
        .chain(&repack)
        .chain(&unreferenced)
        .copied()
        .collect();
    progress.phase(Phase::PruneDelete);
    let index_doomed = if index_needs_rewrite {
        all_index_files.len()
    } else {
        0
    };
    progress.total((doomed.len() + index_doomed) as u64, 0, true);
    let half = doomed.len() / 2;
    for (i, chunk) in doomed.chunks(half.max(1)).enumerate() {
        repo.delete_all(FileKind::Pack, chunk).await?;
        progress.advance(chunk.len() as u64, 0);
        if i == 0 {
            hook("prune-mid-delete").await;
        }
    }
    if index_needs_rewrite {
        repo.delete_all(FileKind::Index, &all_index_files).await?;
        progress.advance(all_index_files.len() as u64, 0);
        stats.index_files_deleted = all_index_files.len() as u64;
    }
    stats.bytes_freed = freed_by_delete.saturating_sub(stats.bytes_written);
    stats.bytes_after = stats.bytes_before + stats.bytes_written - freed_by_delete;
    repo.reload_index().await?;
    Ok(stats)
}

async fn expired_shares(repo: &Repository, dry_run: bool) -> Result<u64> {
    let now = chrono::Utc::now();
    if !dry_run {
        return Ok(crate::share::expire_shares(repo, now).await?.len() as u64);
    }
    let all = crate::share::list_shares(repo).await?;
    Ok(all
        .iter()
        .filter(|s| s.info.as_ref().is_some_and(|i| i.expires <= now))
        .count() as u64)
}

/// One bit per blob of the index table: set when some snapshot uses the blob.
async fn mark_used(
    repo: &Repository,
    snapshots: &[crate::format::snapshot::SnapshotEntry],
    progress: &dyn Progress,
) -> Result<Bits> {
    let mut used = Bits::new(repo.index().len());
    let roots: Vec<(Id, Id)> = snapshots.iter().map(|s| (s.id, s.snapshot.tree)).collect();
    walk_unique_trees(repo, &roots, progress, |snapshot, dir, tree_id, tree| {
        let tree = tree.map_err(|e| {
            Error::corrupt(
                format!("snapshot {} at {}", snapshot.short(), dir.display()),
                format!(
                    "tree {} cannot be read ({e}); nothing was pruned (run `hoard check`)",
                    tree_id.short()
                ),
            )
        })?;
        let index = repo.index();
        let mut mark = |id: &Id| -> Result<()> {
            match index.position(id) {
                Some(i) => {
                    used.set(i);
                    Ok(())
                }
                None => Err(Error::corrupt(
                    format!("snapshot {} at {}", snapshot.short(), dir.display()),
                    format!(
                        "blob {} is not in the index; nothing was pruned (run `hoard check`)",
                        id.short()
                    ),
                )),
            }
        };
        mark(tree_id)?;
        for node in &tree.nodes {
            for id in node.content.iter().flatten() {
                mark(id)?;
            }
        }
        Ok(())
    })
    .await?;
    Ok(used)
}

/// Copies the used blobs of `repack` into new packs through the blob saver; returns the new
/// packs' index entries for prune's own index files.
async fn repack_packs(
    repo: &Repository,
    repack: &[Id],
    used: &Bits,
    stats: &mut PruneStats,
    progress: &dyn Progress,
) -> Result<Vec<IndexPack>> {
    let counters = Arc::new(Counters::default());
    // Blobs arrive sealed: one (idle) compression worker is enough.
    let saver = BlobSaver::new(repo, counters.clone(), IndexMode::Collect, 1, 2);
    let handle = saver
        .handle()
        .ok_or_else(|| Error::Task("saver closed".into()))?;
    let copied = async {
        let mut reads =
            futures::stream::iter(repack.iter().copied())
                .map(|id| async move {
                    Ok::<_, Error>((id, repo.read_file(FileKind::Pack, &id).await?))
                })
                .buffered(2);
        while let Some((pack_id, bytes)) = reads.try_next().await? {
            progress.advance(1, bytes.len() as u64);
            // The pack's own header lists its blobs (and is authenticated).
            let blobs = read_pack(repo.key(), &bytes, &FileKind::Pack.path(&pack_id))?;
            for (b, sealed) in used_blobs_of(repo, &pack_id, &bytes, &blobs, used)? {
                handle.save_sealed(&b, sealed).await?;
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(handle);
    // Finish even after a failed copy: what was uploaded is only unreferenced, and the
    // saver's tasks must end. The copy's error is the cause to report.
    let packs = saver.finish().await;
    copied?;
    let packs = packs?;
    (stats.packs_written, stats.bytes_written) = counters.packs();
    Ok(packs)
}

/// The sealed bytes of the blobs in a downloaded pack that snapshots use from this copy,
/// each verified.
fn used_blobs_of<'a>(
    repo: &Repository,
    pack_id: &Id,
    bytes: &'a [u8],
    blobs: &[PackedBlob],
    used: &Bits,
) -> Result<Vec<(PackedBlob, &'a [u8])>> {
    let index = repo.index();
    let mut copied = Vec::new();
    for b in blobs {
        let Some(loc) = index.get(&b.id) else {
            continue;
        };
        let chosen = loc.pack == *pack_id && loc.blob.offset == b.offset;
        let is_used = index.position(&b.id).is_some_and(|i| used.get(i));
        if !chosen || !is_used {
            continue;
        }
        let range = b.offset as usize..b.offset as usize + b.length as usize;
        let sealed = bytes.get(range).ok_or_else(|| {
            Error::corrupt(FileKind::Pack.path(pack_id), "shorter than the index says")
        })?;
        // Never copy damage into a new pack: the old one is about to be deleted.
        repo.decode_located_blob(&loc, sealed)?;
        copied.push((*b, sealed));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        let mut b = Bits::new(130);
        for i in [0, 63, 64, 129] {
            assert!(!b.get(i));
            b.set(i);
            assert!(b.get(i));
        }
        assert!(!b.get(1) && !b.get(128) && !b.get(500));
    }
}
