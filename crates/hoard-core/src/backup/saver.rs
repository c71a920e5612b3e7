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
//!
//! The saver owns everything between a blob and an indexed pack: dedup against the index and
//! the blobs in flight, pack ids (hashed once, as a pack is closed), uploads, index files and
//! the in-memory index updates. Prune repacks through it too ([`SaverHandle::save_sealed`]),
//! collecting the new packs for its own superseding index instead of writing index files.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;

use super::counters::{bump, Counters};
use crate::buffers::{Buffer, BufferPool};
use crate::error::{Error, Result};
use crate::format::blob::{encode_blob_into, BlobEncoder, EncodedBlob};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::{BlobType, FinishedPack, PackBytes, PackWriter, PackedBlob};
use crate::format::tree::Tree;
use crate::id::Id;
use crate::repository::cache::Cached;
use crate::repository::{FileKind, Repository};

/// An index file is written after this many packs, so an interrupted backup leaves most of
/// its uploaded data indexed and reusable by the next run.
const INDEX_EVERY: usize = 64;

/// What the saver does with uploaded packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexMode {
    /// Write index files (every [`INDEX_EVERY`] packs and at the end) and add the packs to
    /// the in-memory index: a backup.
    Write,
    /// Hand the packs back from [`BlobSaver::finish`]: prune writes them into its own
    /// superseding index files.
    Collect,
    /// Count packs, upload and index nothing: a backup's dry run.
    DryRun,
}

struct Job {
    id: Id,
    data: Buffer,
}

/// What the uploader receives: packs, then the end of the run. An explicit end (not the
/// channel closing when every sender is gone) lets a cancelled run finish while a reader
/// stuck in a read that never returns still holds a handle.
enum Upload {
    Pack(FinishedPack),
    /// A worker could not build a pack: the run fails with this.
    Failed(Error),
    End,
}

/// How often idle compression workers look whether the run is closing.
const WORKER_POLL: std::time::Duration = std::time::Duration::from_millis(50);

struct Shared {
    repo: Repository,
    level: i32,
    pack_size: usize,
    max_blob: usize,
    in_flight: Mutex<HashSet<Id>>,
    /// Where data packs are built, when not in memory (see [`PackWriter::staged`] and
    /// `Storage::staging_dir`).
    staging: Option<std::path::PathBuf>,
    data_packer: Mutex<PackWriter>,
    tree_packer: Mutex<PackWriter>,
    counters: Arc<Counters>,
    /// Where chunks are read into; a worker hands each back once it is sealed.
    buffers: Arc<BufferPool>,
    /// Set by `finish`: workers stop once no job is queued, whoever still holds a handle.
    closing: std::sync::atomic::AtomicBool,
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

    /// Whether every blob is indexed or being stored by this run. The set of blobs in flight
    /// is locked only for ids the index lacks: an unchanged re-backup asks this for every
    /// file, from every walker at once.
    fn known(&self, ids: &[Id]) -> bool {
        let missing: Vec<&Id> = {
            let index = self.repo.index();
            ids.iter().filter(|id| !index.contains(id)).collect()
        };
        if missing.is_empty() {
            return true;
        }
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        missing.iter().all(|id| in_flight.contains(id))
    }

    /// Adds an encoded blob; returns the pack when it reached the target size.
    fn add(
        &self,
        t: BlobType,
        id: Id,
        sealed: &[u8],
        compressed: bool,
        raw_length: u32,
    ) -> Result<Option<FinishedPack>> {
        let c = &self.counters;
        bump(
            match t {
                BlobType::Data => &c.data_blobs,
                BlobType::Tree => &c.tree_blobs,
            },
            1,
        );
        bump(&c.data_added, u64::from(raw_length));
        bump(&c.data_added_packed, sealed.len() as u64);
        self.add_sealed(t, id, sealed, compressed, raw_length)
    }

    /// Appends sealed bytes to the pack of their type; returns the pack when it is full.
    fn add_sealed(
        &self,
        t: BlobType,
        id: Id,
        sealed: &[u8],
        compressed: bool,
        raw_length: u32,
    ) -> Result<Option<FinishedPack>> {
        let full = {
            let mut p = self.packer(t).lock().unwrap_or_else(|e| e.into_inner());
            p.add(id, t, sealed, compressed, raw_length)
                .map_err(|e| self.staging_error(e))?;
            (p.len() >= self.pack_size).then(|| std::mem::replace(&mut *p, self.new_packer(t)))
        };
        full.map(|p| self.finish_pack(p)).transpose()
    }

    /// A pack is built in a staging file when there is a staging directory; else in memory,
    /// with room for a full pack plus one maximal blob (untouched capacity costs no memory).
    /// Tree packs too: one grown in memory by doubling left blocks of MiBs freed per pack, and
    /// freeing those raised glibc's thresholds (see [`crate::buffers`]).
    fn new_packer(&self, t: BlobType) -> PackWriter {
        match &self.staging {
            Some(dir) => PackWriter::staged(dir).unwrap_or_else(|e| {
                tracing::warn!(
                    "cannot create a pack in {}, building it in memory: {e}",
                    dir.display()
                );
                PackWriter::with_capacity(self.pack_size + self.max_blob)
            }),
            None if t == BlobType::Data => {
                PackWriter::with_capacity(self.pack_size + self.max_blob)
            }
            None => PackWriter::new(),
        }
    }

    fn finish_pack(&self, p: PackWriter) -> Result<FinishedPack> {
        p.finish(self.repo.key()).map_err(|e| self.staging_error(e))
    }

    fn staging_error(&self, e: std::io::Error) -> Error {
        Error::io(self.staging.clone().unwrap_or_default(), e)
    }

    fn take_partial(&self, t: BlobType) -> Result<Option<FinishedPack>> {
        let p = std::mem::take(&mut *self.packer(t).lock().unwrap_or_else(|e| e.into_inner()));
        (!p.is_empty()).then(|| self.finish_pack(p)).transpose()
    }
}

/// Owns the workers and the uploader of one backup run.
pub struct BlobSaver {
    shared: Arc<Shared>,
    jobs: Option<crossbeam_channel::Sender<Job>>,
    uploads: Option<mpsc::Sender<Upload>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    uploader: tokio::task::JoinHandle<Result<Vec<IndexPack>>>,
}

/// What file readers and the tree saver use to store blobs.
#[derive(Clone)]
pub struct SaverHandle {
    shared: Arc<Shared>,
    jobs: crossbeam_channel::Sender<Job>,
    uploads: mpsc::Sender<Upload>,
}

fn stopped() -> Error {
    Error::Task("the blob saver stopped early".into())
}

impl BlobSaver {
    /// A saver with `workers` compression threads and `upload_concurrency` uploads at once,
    /// counting into `counters`.
    pub(crate) fn new(
        repo: &Repository,
        counters: Arc<Counters>,
        mode: IndexMode,
        workers: usize,
        upload_concurrency: usize,
    ) -> Self {
        let pack_size = repo.config().pack_size as usize;
        let max_blob =
            repo.config().chunker.max_size as usize + crate::format::crypto::SEAL_OVERHEAD + 1024;
        let staging = (mode != IndexMode::DryRun)
            .then(|| repo.staging_dir())
            .flatten()
            .filter(|dir| std::fs::create_dir_all(dir).is_ok());
        let mut shared = Shared {
            repo: repo.clone(),
            level: repo.config().compression_level,
            pack_size,
            max_blob,
            in_flight: Mutex::new(HashSet::new()),
            staging,
            data_packer: Mutex::default(),
            tree_packer: Mutex::default(),
            counters,
            buffers: BufferPool::new(repo.config().chunker.max_size as usize),
            closing: Default::default(),
        };
        shared.data_packer = Mutex::new(shared.new_packer(BlobType::Data));
        shared.tree_packer = Mutex::new(shared.new_packer(BlobType::Tree));
        let shared = Arc::new(shared);
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(workers * 2);
        let (up_tx, up_rx) = mpsc::channel::<Upload>(1);
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
        let uploader = tokio::spawn(upload_loop(
            shared.clone(),
            mode,
            up_rx,
            upload_concurrency.max(1),
        ));
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

    /// Flushes everything, waits for all uploads and writes the last index file. Handles that
    /// are still held (a reader stuck in a read that never returns, after a cancellation) no
    /// longer count: what they send later is refused. In [`IndexMode::Collect`], returns the
    /// uploaded packs (else nothing: they are indexed).
    pub(crate) async fn finish(mut self) -> Result<Vec<IndexPack>> {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
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
            let partial = match self.shared.take_partial(t) {
                Ok(p) => p.map(Upload::Pack),
                Err(e) => Some(Upload::Failed(e)),
            };
            if let Some(p) = partial {
                if uploads.send(p).await.is_err() {
                    break; // the uploader failed; its error is returned below
                }
            }
        }
        let _ = uploads.send(Upload::End).await;
        drop(uploads);
        (&mut self.uploader).await?
    }
}

impl SaverHandle {
    /// Stores a data chunk unless the repository already has it. Blocks when the workers are
    /// busy: call from a blocking thread.
    pub fn save_data_blocking(&self, data: Buffer) -> Result<(Id, bool)> {
        let id = self.shared.repo.key().blob_id(&data);
        if !self.shared.claim(id) {
            return Ok((id, false));
        }
        self.jobs.send(Job { id, data }).map_err(|_| stopped())?;
        Ok((id, true))
    }

    /// The buffers to read chunks into (see [`crate::buffers`]).
    pub fn buffers(&self) -> &Arc<BufferPool> {
        &self.shared.buffers
    }

    /// Stores a tree blob; trees are small, so they are sealed on the calling task, in
    /// buffers of the pool (a large directory's tree is MiBs).
    pub async fn save_tree(&self, tree: &Tree) -> Result<Id> {
        let shared = &self.shared;
        let mut plain = shared.buffers.take();
        tree.write_into(plain.vec_mut());
        let id = shared.repo.key().blob_id(&plain);
        if shared.claim(id) {
            let (mut scratch, mut sealed) = (shared.buffers.take(), shared.buffers.take());
            let compressed = encode_blob_into(
                shared.repo.key(),
                &plain,
                shared.level,
                scratch.vec_mut(),
                sealed.vec_mut(),
            );
            let full = shared.add(BlobType::Tree, id, &sealed, compressed, plain.len() as u32)?;
            drop((plain, scratch, sealed));
            if let Some(p) = full {
                self.uploads
                    .send(Upload::Pack(p))
                    .await
                    .map_err(|_| stopped())?;
            }
        }
        Ok(id)
    }

    /// Whether every one of `ids` is indexed or being stored by this run, so a file whose
    /// content they are can be taken over from the parent snapshot without reading it.
    pub fn known(&self, ids: &[Id]) -> bool {
        self.shared.known(ids)
    }

    /// Copies an already sealed blob into a new pack as it is (prune's repacking; the caller
    /// verified it). No dedup: the caller copies each blob once.
    pub(crate) async fn save_sealed(&self, blob: &PackedBlob, sealed: &[u8]) -> Result<()> {
        if let Some(p) = self.shared.add_sealed(
            blob.blob_type,
            blob.id,
            sealed,
            blob.compressed,
            blob.raw_length,
        )? {
            self.uploads
                .send(Upload::Pack(p))
                .await
                .map_err(|_| stopped())?;
        }
        Ok(())
    }
}

fn seal_worker(
    shared: &Shared,
    jobs: crossbeam_channel::Receiver<Job>,
    uploads: mpsc::Sender<Upload>,
) {
    // Kept from blob to blob (see BlobEncoder).
    let mut e = EncodedBlob {
        sealed: Vec::new(),
        compressed: false,
        raw_length: 0,
    };
    let mut encoder = BlobEncoder::new(shared.level, shared.buffers.capacity());
    loop {
        let job = match jobs.recv_timeout(WORKER_POLL) {
            Ok(job) => job,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.closing.load(std::sync::atomic::Ordering::SeqCst) {
                    return; // nothing queued, and the run is closing
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let key = shared.repo.key();
        e.compressed = encoder.encode_into(key, &job.data, &mut e.sealed);
        e.raw_length = job.data.len() as u32;
        drop(job.data);
        let full = match shared.add(
            BlobType::Data,
            job.id,
            &e.sealed,
            e.compressed,
            e.raw_length,
        ) {
            Ok(p) => p.map(Upload::Pack),
            Err(e) => Some(Upload::Failed(e)),
        };
        if let Some(up) = full {
            let failed = matches!(up, Upload::Failed(_));
            if uploads.blocking_send(up).is_err() || failed {
                return; // uploader failed; dropping the receiver stops the producers
            }
        }
    }
}

async fn upload_loop(
    shared: Arc<Shared>,
    mode: IndexMode,
    rx: mpsc::Receiver<Upload>,
    concurrency: usize,
) -> Result<Vec<IndexPack>> {
    let packs = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Upload::Pack(p)) => Some((Ok(p), rx)),
            Some(Upload::Failed(e)) => Some((Err(e), rx)),
            Some(Upload::End) | None => None,
        }
    });
    let repo = &shared.repo;
    let counters = &shared.counters;
    let parts = &crate::repository::storage::upload_budget(concurrency);
    let done = packs
        .map(|p| async move {
            let FinishedPack {
                id,
                bytes,
                len,
                blobs,
            } = p?;
            bump(&counters.packs, 1);
            bump(&counters.pack_bytes, len);
            match bytes {
                PackBytes::Staged(path) if mode == IndexMode::DryRun => {
                    let _ = std::fs::remove_file(path);
                }
                PackBytes::Memory(_) if mode == IndexMode::DryRun => {}
                PackBytes::Staged(path) => {
                    // Tree packs are what the next backup (and ls, diff, restore) reads first.
                    if let Some(c) = repo.cache() {
                        if blobs.first().is_some_and(|b| b.blob_type == BlobType::Tree) {
                            c.put_file(Cached::TreePack, &id, &path);
                        }
                    }
                    repo.store_staged(FileKind::Pack, id, path, parts).await?;
                }
                PackBytes::Memory(bytes) => {
                    // Tree packs are what the next backup (and ls, diff, restore) reads first.
                    if let Some(c) = repo.cache() {
                        if blobs.first().is_some_and(|b| b.blob_type == BlobType::Tree) {
                            c.put(Cached::TreePack, &id, &bytes);
                        }
                    }
                    repo.write_named(FileKind::Pack, id, bytes).await?;
                }
            }
            tracing::debug!(pack = %id.short(), blobs = blobs.len(), "uploaded pack");
            Ok::<_, Error>(IndexPack { id, blobs })
        })
        .buffer_unordered(concurrency);
    let mut done = std::pin::pin!(done);
    let mut pending = IndexFile::default();
    while let Some(pack) = done.next().await {
        pending.packs.push(pack?);
        if mode == IndexMode::Write && pending.packs.len() >= INDEX_EVERY {
            save_index(repo, &std::mem::take(&mut pending)).await?;
        }
    }
    match mode {
        IndexMode::Collect => return Ok(pending.packs),
        IndexMode::DryRun => return Ok(Vec::new()),
        IndexMode::Write => {}
    }
    if !pending.packs.is_empty() {
        save_index(repo, &pending).await?;
    }
    Ok(Vec::new())
}

/// Writes an index file, then adds its packs to the in-memory index: from here on, later
/// blobs of this run and later runs in this process dedup against them.
async fn save_index(repo: &Repository, file: &IndexFile) -> Result<Id> {
    let id = repo.save_doc(FileKind::Index, file).await?;
    let mut index = repo.index_mut();
    for p in &file.packs {
        index.add_pack(p.id, &p.blobs);
    }
    Ok(id)
}
