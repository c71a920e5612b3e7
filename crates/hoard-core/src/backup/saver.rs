//! The blob saver: everything between "here is a chunk" and "it is in an uploaded, indexed
//! pack".
//!
//! ```text
//! file readers ──(bounded job channel)──▶ N compress+seal workers ──▶ data packer ─┐
//! tree saver ──(inline, trees are small)──────────────────────────▶ tree packer ──┤
//!                                  uploader (bounded channel, K uploads at once) ◀┘
//!                                  └─▶ index file every INDEX_EVERY packs and at finish
//! ```
//! Bounded channels give back-pressure, so memory is about N chunks plus a few packs whatever
//! the input. [`BlobSaver::finish`] is the single place that orders writes: it flushes the
//! last packs, waits for every upload, and writes the final index; only then may a snapshot
//! that references these blobs be written.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::format::blob::{encode_blob, EncodedBlob};
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::{BlobType, FinishedPack, PackWriter};
use crate::repository::{FileKind, Repository};

/// An index file is written after this many packs, so an interrupted backup leaves most of
/// its uploaded data indexed and reusable by the next run.
const INDEX_EVERY: usize = 64;

#[derive(Debug, Default)]
struct SaverStats {
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added: AtomicU64,
    data_added_packed: AtomicU64,
}

/// What one run of the saver stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaverTotals {
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Their size in packs.
    pub data_added_packed: u64,
}

struct Job {
    id: Id,
    data: Vec<u8>,
}

struct Shared {
    repo: Repository,
    level: i32,
    pack_size: usize,
    max_blob: usize,
    in_flight: Mutex<HashSet<Id>>,
    data_packer: Mutex<PackWriter>,
    tree_packer: Mutex<PackWriter>,
    stats: SaverStats,
}

impl Shared {
    /// True when the caller must store `id`: it is neither indexed nor already being stored.
    fn claim(&self, id: Id) -> bool {
        if self.repo.index().contains(&id) {
            return false;
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
    }

    fn packer(&self, t: BlobType) -> &Mutex<PackWriter> {
        match t {
            BlobType::Data => &self.data_packer,
            BlobType::Tree => &self.tree_packer,
        }
    }

    /// Adds an encoded blob; returns the pack when it reached the target size.
    fn add(&self, t: BlobType, id: Id, e: EncodedBlob) -> Option<FinishedPack> {
        let (blobs, added) = match t {
            BlobType::Data => (&self.stats.data_blobs, &self.stats.data_added),
            BlobType::Tree => (&self.stats.tree_blobs, &self.stats.data_added),
        };
        blobs.fetch_add(1, Ordering::Relaxed);
        added.fetch_add(e.raw_len as u64, Ordering::Relaxed);
        self.stats
            .data_added_packed
            .fetch_add(e.sealed.len() as u64, Ordering::Relaxed);
        let full = {
            let mut p = self.packer(t).lock().unwrap_or_else(|e| e.into_inner());
            p.add(id, t, &e.sealed, e.compressed, e.raw_len);
            (p.len() >= self.pack_size).then(|| std::mem::replace(&mut *p, self.new_packer()))
        };
        full.map(|p| p.finish(self.repo.key()))
    }

    /// Room for a full pack plus one maximal blob; untouched capacity costs no memory.
    fn new_packer(&self) -> PackWriter {
        PackWriter::with_capacity(self.pack_size + self.max_blob)
    }

    fn take_partial(&self, t: BlobType) -> Option<FinishedPack> {
        let p = std::mem::take(&mut *self.packer(t).lock().unwrap_or_else(|e| e.into_inner()));
        (!p.is_empty()).then(|| p.finish(self.repo.key()))
    }
}

/// Owns the workers and the uploader of one backup run.
pub struct BlobSaver {
    shared: Arc<Shared>,
    jobs: Option<crossbeam_channel::Sender<Job>>,
    uploads: Option<mpsc::Sender<FinishedPack>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    uploader: tokio::task::JoinHandle<Result<()>>,
}

/// What file readers and the tree saver use to store blobs.
#[derive(Clone)]
pub struct SaverHandle {
    shared: Arc<Shared>,
    jobs: crossbeam_channel::Sender<Job>,
    uploads: mpsc::Sender<FinishedPack>,
}

fn stopped() -> Error {
    Error::Task("the blob saver stopped early".into())
}

impl BlobSaver {
    pub fn new(repo: &Repository, workers: usize, upload_concurrency: usize) -> Self {
        let pack_size = repo.config().pack_size as usize;
        let max_blob =
            repo.config().chunker.max_size as usize + crate::format::crypto::SEAL_OVERHEAD + 1024;
        let shared = Arc::new(Shared {
            repo: repo.clone(),
            level: repo.config().compression_level,
            pack_size,
            max_blob,
            in_flight: Mutex::new(HashSet::new()),
            data_packer: Mutex::new(PackWriter::with_capacity(pack_size + max_blob)),
            tree_packer: Mutex::new(PackWriter::new()),
            stats: SaverStats::default(),
        });
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(workers * 2);
        let (up_tx, up_rx) = mpsc::channel::<FinishedPack>(1);
        let workers = (0..workers.max(1))
            .map(|i| {
                let rx = job_rx.clone();
                let tx = up_tx.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("hoard-seal-{i}"))
                    .spawn(move || seal_worker(&shared, rx, tx))
            })
            .filter_map(|r| {
                r.map_err(|e| tracing::error!("cannot start a worker thread: {e}"))
                    .ok()
            })
            .collect();
        let uploader = tokio::spawn(upload_loop(repo.clone(), up_rx, upload_concurrency.max(1)));
        BlobSaver {
            shared,
            jobs: Some(job_tx),
            uploads: Some(up_tx),
            workers,
            uploader,
        }
    }

    pub fn handle(&self) -> Option<SaverHandle> {
        Some(SaverHandle {
            shared: self.shared.clone(),
            jobs: self.jobs.clone()?,
            uploads: self.uploads.clone()?,
        })
    }

    /// Flushes everything, waits for all uploads and writes the last index file. Every
    /// [`SaverHandle`] must have been dropped before. Returns what was stored.
    pub async fn finish(mut self) -> Result<SaverTotals> {
        drop(self.jobs.take());
        let workers = std::mem::take(&mut self.workers);
        tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await?;
        let uploads = self.uploads.take().ok_or_else(stopped)?;
        for t in [BlobType::Data, BlobType::Tree] {
            if let Some(p) = self.shared.take_partial(t) {
                if uploads.send(p).await.is_err() {
                    break; // the uploader failed; its error is returned below
                }
            }
        }
        drop(uploads);
        (&mut self.uploader).await??;
        let s = &self.shared.stats;
        Ok(SaverTotals {
            data_blobs: s.data_blobs.load(Ordering::Relaxed),
            tree_blobs: s.tree_blobs.load(Ordering::Relaxed),
            data_added: s.data_added.load(Ordering::Relaxed),
            data_added_packed: s.data_added_packed.load(Ordering::Relaxed),
        })
    }
}

impl SaverHandle {
    /// Stores a data chunk unless the repository already has it. Blocks when the workers are
    /// busy: call from a blocking thread.
    pub fn save_data_blocking(&self, data: Vec<u8>) -> Result<(Id, bool)> {
        let id = self.shared.repo.key().blob_id(&data);
        if !self.shared.claim(id) {
            return Ok((id, false));
        }
        self.jobs.send(Job { id, data }).map_err(|_| stopped())?;
        Ok((id, true))
    }

    /// Stores a tree blob; trees are small, so they are sealed on the calling task.
    pub async fn save_tree(&self, bytes: Vec<u8>) -> Result<Id> {
        let id = self.shared.repo.key().blob_id(&bytes);
        if self.shared.claim(id) {
            let e = encode_blob(self.shared.repo.key(), &bytes, self.shared.level);
            if let Some(p) = self.shared.add(BlobType::Tree, id, e) {
                self.uploads.send(p).await.map_err(|_| stopped())?;
            }
        }
        Ok(id)
    }

    pub fn key(&self) -> &crate::format::crypto::MasterKey {
        self.shared.repo.key()
    }
}

fn seal_worker(
    shared: &Shared,
    jobs: crossbeam_channel::Receiver<Job>,
    uploads: mpsc::Sender<FinishedPack>,
) {
    for job in jobs {
        let e = encode_blob(shared.repo.key(), &job.data, shared.level);
        drop(job.data);
        if let Some(p) = shared.add(BlobType::Data, job.id, e) {
            if uploads.blocking_send(p).is_err() {
                return; // uploader failed; dropping the receiver stops the producers
            }
        }
    }
}

async fn upload_loop(
    repo: Repository,
    rx: mpsc::Receiver<FinishedPack>,
    concurrency: usize,
) -> Result<()> {
    let packs =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
    let done = packs
        .map(|p| {
            let repo = repo.clone();
            async move {
                let FinishedPack { id, bytes, blobs } = p;
                let stored = repo.write_file(FileKind::Pack, bytes).await?;
                debug_assert_eq!(stored, id);
                tracing::debug!(pack = %id.short(), blobs = blobs.len(), "uploaded pack");
                Ok::<_, Error>(IndexPack { id, blobs })
            }
        })
        .buffer_unordered(concurrency);
    let mut done = std::pin::pin!(done);
    let mut pending = IndexFile::default();
    while let Some(pack) = done.next().await {
        pending.packs.push(pack?);
        if pending.packs.len() >= INDEX_EVERY {
            repo.save_index(&std::mem::take(&mut pending)).await?;
        }
    }
    if !pending.packs.is_empty() {
        repo.save_index(&pending).await?;
    }
    Ok(())
}
