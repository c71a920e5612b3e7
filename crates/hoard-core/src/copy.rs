//! Copying snapshots into another repository (restic's `copy`), which may sit on another
//! server, with other credentials and another password.
//!
//! Blob ids are keyed hashes, so the same content has other ids in the destination: every
//! tree is rewritten with the destination's ids, and each data blob is read, verified,
//! hashed with the destination's key and stored unless the destination has it already.
//! Chunk boundaries stay the source's (nothing is re-chunked). Writes keep backup's order:
//! data and trees, then their index, and only then the snapshots. A snapshot the destination
//! already has (same time, host, user, paths and tags) is skipped without reading anything,
//! so running the same copy again copies nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::backup::counters::Counters;
use crate::backup::saver::{BlobSaver, IndexMode, SaverHandle};
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SnapshotEntry};
use crate::format::tree::{NodeType, Tree};
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::{FileKind, LockNeed, Repository};

/// Blob reads in flight: each holds one chunk (at most the chunker's maximum).
const READS: usize = 8;
/// Source→destination ids remembered (64 B each): a blob met again after the map was
/// cleared is read again, and the destination's index still keeps it from being stored twice.
const MAX_REMEMBERED: usize = 1 << 20;

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyStats {
    /// (source snapshot, its copy in the destination).
    pub copied: Vec<(Id, Id)>,
    /// Source snapshots the destination already had.
    pub skipped: Vec<Id>,
    /// Data and tree blobs the destination did not have.
    pub blobs_added: u64,
    /// Their plaintext bytes.
    pub bytes_added: u64,
}

/// Whether two snapshots record the same backup (ids differ between repositories).
fn same_backup(a: &Snapshot, b: &Snapshot) -> bool {
    a.time == b.time
        && a.hostname == b.hostname
        && a.username == b.username
        && a.paths == b.paths
        && a.tags == b.tags
}

/// Copies `snapshots` of `src` into `dst`.
pub async fn copy(
    src: &Repository,
    dst: &Repository,
    snapshots: &[SnapshotEntry],
    progress: Arc<dyn Progress>,
) -> Result<CopyStats> {
    src.locked(LockNeed::Read, |_| async move {
        dst.locked(LockNeed::Append, |lease| async move {
            let existing = dst.snapshots().await?;
            let (todo, skipped): (Vec<&SnapshotEntry>, Vec<&SnapshotEntry>) =
                snapshots.iter().partition(|s| {
                    !existing
                        .iter()
                        .any(|d| same_backup(&d.snapshot, &s.snapshot))
                });
            progress.phase(Phase::Copy);
            progress.total(todo.len() as u64, 0, true);
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let counters = Arc::new(Counters::default());
            let saver = BlobSaver::new(dst, counters.clone(), IndexMode::Write, cores, 2);
            let handle = saver
                .handle()
                .ok_or_else(|| Error::Task("saver closed".into()))?;
            let mapper = Arc::new(Mapper {
                src: src.clone(),
                saver: handle,
                trees: Mutex::default(),
                blobs: Mutex::default(),
                reads: Arc::new(Semaphore::new(READS)),
                progress: progress.clone(),
            });
            let mut roots = Vec::new();
            let mut failed = None;
            for s in &todo {
                match mapper.clone().tree(s.snapshot.tree).await {
                    Ok(root) => roots.push(root),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                progress.advance(1, 0);
            }
            drop(mapper);
            // Whatever was copied is indexed, so a retry reuses it.
            saver.finish().await?;
            if let Some(e) = failed {
                return Err(e);
            }
            let now = chrono::Utc::now();
            let added = counters.summary(now, now);
            let mut stats = CopyStats {
                skipped: skipped.iter().map(|s| s.id).collect(),
                blobs_added: added.data_blobs + added.tree_blobs,
                bytes_added: added.data_added,
                ..Default::default()
            };
            for (s, root) in todo.iter().zip(roots) {
                let mut snapshot = s.snapshot.clone();
                snapshot.tree = root;
                // The parent is a snapshot of the source; it means nothing here.
                snapshot.parent = None;
                lease.ensure_valid().await?;
                let id = dst.save_doc(FileKind::Snapshot, &snapshot).await?;
                tracing::info!(from = %s.id.short(), to = %id.short(), "snapshot copied");
                stats.copied.push((s.id, id));
            }
            Ok(stats)
        })
        .await
    })
    .await
}

/// Maps source ids to destination ids, storing what the destination lacks.
struct Mapper {
    src: Repository,
    saver: SaverHandle,
    /// Trees already copied in this run (source id → destination id).
    trees: Mutex<HashMap<Id, Id>>,
    blobs: Mutex<HashMap<Id, Id>>,
    reads: Arc<Semaphore>,
    progress: Arc<dyn Progress>,
}

impl Mapper {
    /// The destination id of the source tree `id`, and of everything below it.
    fn tree(self: Arc<Self>, id: Id) -> BoxFuture<'static, Result<Id>> {
        async move {
            if let Some(done) = self
                .trees
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
            {
                return Ok(*done);
            }
            let tree = self.src.load_tree(&id).await?;
            let nodes = futures::stream::iter(tree.nodes)
                .map(|mut node| {
                    let me = self.clone();
                    async move {
                        match (node.node_type, node.subtree, node.content.take()) {
                            (NodeType::Dir, Some(sub), _) => {
                                node.subtree = Some(me.tree(sub).await?);
                            }
                            (_, _, Some(content)) => {
                                let ids = futures::stream::iter(content)
                                    .map(|blob| me.clone().data(blob))
                                    .buffered(READS)
                                    .try_collect()
                                    .await?;
                                node.content = Some(ids);
                            }
                            _ => {}
                        }
                        Ok::<_, Error>(node)
                    }
                })
                .buffered(READS)
                .try_collect()
                .await?;
            let new = self.saver.save_tree(&Tree { nodes }).await?;
            let mut trees = self.trees.lock().unwrap_or_else(|e| e.into_inner());
            if trees.len() >= MAX_REMEMBERED {
                trees.clear();
            }
            trees.insert(id, new);
            Ok(new)
        }
        .boxed()
    }

    /// The destination id of the source data blob `id`: read and verified from the source,
    /// stored in the destination unless it has it.
    async fn data(self: Arc<Self>, id: Id) -> Result<Id> {
        if let Some(done) = self
            .blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(*done);
        }
        let _permit = self
            .reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        let data = self.src.read_blob(&id).await?;
        self.progress.advance(0, data.len() as u64);
        let saver = self.saver.clone();
        let (new, _) = tokio::task::spawn_blocking(move || saver.save_data_blocking(data.into()))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let mut blobs = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        if blobs.len() >= MAX_REMEMBERED {
            blobs.clear();
        }
        blobs.insert(id, new);
        Ok(new)
    }
}
