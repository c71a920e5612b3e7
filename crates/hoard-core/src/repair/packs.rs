//! `repair packs`: salvage what can still be read of damaged packs.
//!
//! A pack damaged by a flipped byte, truncation or a planted file usually still holds many
//! intact blobs: every blob is sealed on its own, so each can be verified alone. The blobs a
//! damaged pack should hold are known from two sources, the index and the pack's own header
//! (if it still authenticates); every one of them that reads back, opens and matches its id
//! is copied into a new pack. Then, in prune's order: new packs, a new index without the
//! damaged packs (superseding every index file), the damaged packs deleted, the old index
//! files deleted. A crash at any point leaves a readable repository: before the new index the
//! copies are only unreferenced, after it the damaged packs are only unreferenced.
//!
//! What could not be salvaged is reported by blob; `repair snapshots` then rewrites the
//! snapshots that needed it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::index::read_header;
use crate::backup::counters::Counters;
use crate::backup::saver::{BlobSaver, IndexMode};
use crate::error::{Error, Result};
use crate::format::pack::PackedBlob;
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::index::BlobLocation;
use crate::repository::{FileKind, LockNeed, Repository};

/// Blobs read from damaged packs at once.
const BLOB_READS: usize = 8;

/// What `repair_packs` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairPacksStats {
    /// Damaged packs named.
    pub packs: u64,
    /// Blobs the index or the pack headers say they hold.
    pub blobs: u64,
    /// Blobs verified and copied into new packs.
    pub blobs_salvaged: u64,
    /// Blobs that another (healthy) pack also holds, so nothing was lost.
    pub blobs_elsewhere: u64,
    /// Blobs that could not be read back: `blob ID (type) in pack ID: why`.
    pub blobs_lost: Vec<String>,
    /// New packs written.
    pub packs_written: u64,
    /// Damaged packs removed from storage.
    pub packs_deleted: u64,
    /// Index files written, and replaced.
    pub index_files_written: u64,
    /// Index files replaced and deleted.
    pub index_files_deleted: u64,
}

/// Salvages the readable blobs of `packs` into new packs and removes the damaged packs, under
/// an exclusive lock. A pack that is already gone is fine: its blobs are reported lost.
pub async fn repair_packs(
    repo: &Repository,
    packs: &[Id],
    progress: &dyn Progress,
) -> Result<RepairPacksStats> {
    repo.locked(LockNeed::Exclusive, |_| {
        repair_packs_locked(repo, packs, progress)
    })
    .await
}

async fn repair_packs_locked(
    repo: &Repository,
    packs: &[Id],
    progress: &dyn Progress,
) -> Result<RepairPacksStats> {
    let damaged: HashSet<Id> = packs.iter().copied().collect();
    let mut stats = RepairPacksStats {
        packs: damaged.len() as u64,
        ..Default::default()
    };
    // The new index is written from the old one: an index file that cannot be read would
    // take its packs out of the index with it.
    let (all_index_files, live_index_files) = repo.index_to_replace("repaired").await?;

    // 1. What each damaged pack should hold: its index entries, and its header's.
    let mut candidates: Vec<BlobLocation> = Vec::new();
    let mut seen: HashSet<(Id, Id, u32)> = HashSet::new();
    let mut add = |pack: Id, blob: PackedBlob| {
        if seen.insert((pack, blob.id, blob.offset)) {
            candidates.push(BlobLocation { pack, blob });
        }
    };
    repo.for_each_index_file(&live_index_files, |_, file| {
        for p in file?.packs {
            if damaged.contains(&p.id) {
                p.blobs.into_iter().for_each(|b| add(p.id, b));
            }
        }
        Ok(())
    })
    .await?;
    let sizes: HashMap<Id, u64> = repo.list_sizes(FileKind::Pack).await?.into_iter().collect();
    for id in &damaged {
        let Some(&size) = sizes.get(id) else {
            tracing::warn!("pack {} is not on storage", id.short());
            continue;
        };
        match read_header(repo, id, size).await {
            Ok(blobs) => blobs.into_iter().for_each(|b| add(*id, b)),
            Err(e @ Error::Storage { .. }) => return Err(e),
            Err(e) => tracing::warn!(
                "pack {}: header unusable ({e}); using the index",
                id.short()
            ),
        }
    }
    stats.blobs = candidates.len() as u64;

    // 2. Salvage: every candidate not held by a healthy pack, verified before it is copied.
    let elsewhere = |b: &BlobLocation| {
        repo.blob_location(&b.blob.id)
            .is_some_and(|l| !damaged.contains(&l.pack) && sizes.contains_key(&l.pack))
    };
    let (safe, todo): (Vec<_>, Vec<_>) = candidates.into_iter().partition(elsewhere);
    stats.blobs_elsewhere = safe.iter().map(|b| b.blob.id).collect::<HashSet<_>>().len() as u64;
    progress.phase(Phase::RepairPacks);
    progress.total(todo.len() as u64, 0, true);
    let counters = Arc::new(Counters::default());
    let saver = BlobSaver::new(repo, counters.clone(), IndexMode::Collect, 1, 2);
    let handle = saver
        .handle()
        .ok_or_else(|| Error::Task("saver closed".into()))?;
    let mut salvaged: HashSet<Id> = HashSet::new();
    let mut lost: HashMap<Id, String> = HashMap::new();
    let sizes_ref = &sizes;
    let copied = async {
        let mut reads = futures::stream::iter(todo)
            .map(|loc| async move {
                let read = read_verified(repo, &loc, sizes_ref).await;
                (loc, read)
            })
            .buffer_unordered(BLOB_READS);
        while let Some((loc, read)) = reads.next().await {
            progress.advance(1, u64::from(loc.blob.length));
            match read {
                Ok(sealed) => {
                    if salvaged.insert(loc.blob.id) {
                        handle.save_sealed(&loc.blob, &sealed).await?;
                    }
                    lost.remove(&loc.blob.id);
                }
                Err(e @ Error::Storage { .. }) => return Err(e),
                Err(e) if !salvaged.contains(&loc.blob.id) => {
                    lost.insert(
                        loc.blob.id,
                        format!(
                            "{:?} blob {} in pack {}: {e}",
                            loc.blob.blob_type,
                            loc.blob.id.short(),
                            loc.pack.short()
                        ),
                    );
                }
                Err(_) => {}
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(handle);
    // The saver's tasks must end even after a failed read; the read's error is the cause.
    let new_packs = saver.finish().await;
    copied?;
    let new_packs = new_packs?;
    stats.blobs_salvaged = salvaged.len() as u64;
    stats.blobs_lost = lost.into_values().collect();
    stats.blobs_lost.sort();
    (stats.packs_written, _) = counters.packs();
    crate::testhook::hook("repair-packs-after-copy").await;

    // 3. The index without the damaged packs, then the deletes.
    stats.index_files_written = repo
        .write_superseding_index(
            &live_index_files,
            |id| !damaged.contains(id),
            new_packs,
            all_index_files.clone(),
        )
        .await?;
    crate::testhook::hook("repair-packs-after-index").await;
    let present: Vec<Id> = damaged
        .iter()
        .filter(|id| sizes.contains_key(id))
        .copied()
        .collect();
    repo.delete_all(FileKind::Pack, &present).await?;
    stats.packs_deleted = present.len() as u64;
    repo.delete_all(FileKind::Index, &all_index_files).await?;
    stats.index_files_deleted = all_index_files.len() as u64;
    repo.reload_index().await?;
    Ok(stats)
}

/// One blob's sealed bytes from a damaged pack, read by its own range and verified: lengths
/// bounded first, then opened and checked against its id.
async fn read_verified(
    repo: &Repository,
    loc: &BlobLocation,
    sizes: &HashMap<Id, u64>,
) -> Result<Vec<u8>> {
    repo.check_lengths(loc)?;
    let what = format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short());
    let start = u64::from(loc.blob.offset);
    let end = start + u64::from(loc.blob.length);
    match sizes.get(&loc.pack) {
        None => return Err(Error::corrupt(what, "its pack is gone")),
        Some(&size) if end > size => {
            return Err(Error::corrupt(
                what,
                format!("past the end of the pack ({size} bytes)"),
            ))
        }
        Some(_) => {}
    }
    let sealed = repo
        .read_range(FileKind::Pack, &loc.pack, start..end)
        .await?;
    repo.decode_located_blob(loc, &sealed)?;
    Ok(sealed)
}

/// Parses pack ids for `repair packs`: full ids, or unique prefixes of packs on storage.
pub async fn find_packs(repo: &Repository, specs: &[String]) -> Result<Vec<Id>> {
    futures::stream::iter(specs)
        .then(|s| async move {
            match s.parse::<Id>() {
                Ok(id) => Ok(id),
                Err(_) => repo.find_id(FileKind::Pack, s).await,
            }
        })
        .try_collect()
        .await
}
