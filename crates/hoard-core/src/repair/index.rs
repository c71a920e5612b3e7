//! `repair index`: the index rebuilt from the packs' own headers.

use std::collections::HashSet;

use futures::StreamExt;
use serde::Serialize;

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
    /// Of those, packs the old index still described: its entries for them are kept, so
    /// `repair packs` can salvage their readable blobs.
    pub packs_kept_from_index: Vec<String>,
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
    if !repo.index_built_from(&old_index_files) {
        repo.reload_index().await?;
    }
    let packs = repo.list_sizes(FileKind::Pack).await?;
    stats.packs = packs.len() as u64;
    progress.phase(Phase::RepairIndex);
    progress.total(packs.len() as u64, 0, true);

    let mut headers = futures::stream::iter(packs)
        .map(|(id, size)| async move { (id, read_header(repo, &id, size).await) })
        .buffer_unordered(HEADER_READS);
    let mut batch = IndexBatcher::default();
    let mut unreadable: HashSet<Id> = HashSet::new();
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
                unreadable.insert(id);
            }
        }
    }
    drop(headers);
    // A pack whose header is damaged usually still holds intact blobs: what the readable
    // old index files say about it is kept, for `repair packs` to salvage from.
    if !unreadable.is_empty() {
        let mut kept: Vec<IndexPack> = Vec::new();
        repo.for_each_index_file(&repo.loaded_index_files(), |_, file| {
            for p in file?.packs {
                if unreadable.remove(&p.id) {
                    kept.push(p);
                }
            }
            Ok(())
        })
        .await?;
        for p in kept {
            tracing::warn!(
                "pack {}: header unreadable; its {} blobs are kept from the old index (`hoard repair packs {}` salvages them)",
                p.id.short(),
                p.blobs.len(),
                p.id.short()
            );
            stats.packs_kept_from_index.push(p.id.to_hex());
            stats.blobs += p.blobs.len() as u64;
            if let Some(full) = batch.push(p) {
                repo.save_doc(FileKind::Index, &full).await?;
                stats.index_files_written += 1;
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
pub(super) async fn read_header(
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
