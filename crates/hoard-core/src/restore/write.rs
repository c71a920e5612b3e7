//! Steps 2 to 4 of a restore, one file at a time: leave identical files alone or create
//! them at their size, write blobs read pack by pack at every offset that uses them, and
//! create links, special files and metadata.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::plan::PlannedFile;
use super::{Overwrite, RestoreSummary, MAX_READ};
use crate::error::{Error, Result};
use crate::format::pack::PackedBlob;
use crate::format::tree::{Node, NodeType};
use crate::id::Id;
use crate::progress::{FileError, Progress};
use crate::repository::{FileKind, Repository};

/// What becomes of a file the snapshot has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prepared {
    /// Created at its final size, to be written.
    Write,
    /// Already holds the snapshot's content (or its size and mtime, with `IfChanged`): only
    /// its metadata is set.
    Identical,
    /// An existing file the overwrite policy keeps as it is.
    Keep,
}

/// Decides, by the overwrite policy, whether a file is written; creates it at its final
/// size when it is (not in a dry run). In a directory this restore created (`in_new_dir`)
/// nothing is looked up first: the file is created with `O_EXCL`, which refuses anything put
/// there since.
pub(super) fn prepare_file(
    f: &PlannedFile,
    key: &crate::format::crypto::MasterKey,
    in_new_dir: bool,
    overwrite: Overwrite,
    dry_run: bool,
) -> std::io::Result<Prepared> {
    let existing = match in_new_dir {
        true => None,
        false => std::fs::symlink_metadata(&f.dest).ok(),
    };
    if let Some(md) = &existing {
        match overwrite {
            Overwrite::Never => return Ok(Prepared::Keep),
            Overwrite::IfNewer if mtime_ns(md) >= f.node.mtime => return Ok(Prepared::Keep),
            Overwrite::IfChanged
                if md.is_file() && md.len() == f.node.size && mtime_ns(md) == f.node.mtime =>
            {
                return Ok(Prepared::Identical)
            }
            _ => {}
        }
    }
    if existing
        .as_ref()
        .is_some_and(|md| is_identical(&f.dest, md, &f.node, &f.blobs, key))
    {
        return Ok(Prepared::Identical);
    }
    if !dry_run {
        remove_existing(&f.dest, existing.as_ref())?;
        if !created_by_its_write(f) {
            create_file(&f.dest, f.node.size)?;
        }
    }
    Ok(Prepared::Write)
}

/// Whether a file is created by the write of its content rather than beforehand: a file of
/// one blob (most files) is then created, written and closed by one open, where creating it
/// first at its size cost another open, an ftruncate and a close.
fn created_by_its_write(f: &PlannedFile) -> bool {
    f.blobs.len() == 1
}

fn mtime_ns(md: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    md.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec())
}

/// Whether the file at `f.dest` holds exactly its planned content (`--verify` reads restored
/// files back with this).
pub(super) fn holds_content(f: &PlannedFile, key: &crate::format::crypto::MasterKey) -> bool {
    std::fs::symlink_metadata(&f.dest)
        .is_ok_and(|md| is_identical(&f.dest, &md, &f.node, &f.blobs, key))
}

/// Whether `dest`, whose `lstat` is `md`, already holds exactly this content.
fn is_identical(
    dest: &Path,
    md: &std::fs::Metadata,
    node: &Node,
    blobs: &[(Id, u64)],
    key: &crate::format::crypto::MasterKey,
) -> bool {
    let lens: Vec<u64> = blobs
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .chain(blobs.last().map(|l| node.size - l.1))
        .collect();
    if !md.is_file() || md.len() != node.size {
        return false;
    }
    let Ok(mut f) = File::open(dest) else {
        return false;
    };
    let mut buf = Vec::new();
    for ((id, _), len) in blobs.iter().zip(&lens) {
        buf.resize(*len as usize, 0);
        if f.read_exact(&mut buf).is_err() || key.blob_id(&buf) != *id {
            return false;
        }
    }
    true
}

/// Removes the file at `dest` (its `lstat` is `existing`) to make way for the restored one.
fn remove_existing(dest: &Path, existing: Option<&std::fs::Metadata>) -> std::io::Result<()> {
    match existing {
        Some(md) if md.is_dir() => Err(std::io::Error::other("a directory is in the way")),
        Some(_) => std::fs::remove_file(dest),
        None => Ok(()),
    }
}

/// Creates `dest` for writing, failing if anything is there (a symlink planted meanwhile
/// included).
fn create_new(dest: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)
}

/// Creates `dest` at `size`, all zeros (a hole).
fn create_file(dest: &Path, size: u64) -> std::io::Result<File> {
    let f = create_new(dest)?;
    f.set_len(size)?;
    Ok(f)
}

/// Creates a one-blob file with its content (see [`created_by_its_write`]). A blob of zeros
/// stays a hole, as do bytes the blob falls short of (a tree whose size disagrees).
/// When the write fails, the file is removed again: [`BatchFiles::fail`] then leaves it as a
/// file whose blob could not be read is left.
fn create_with(dest: &Path, plain: &[u8], size: u64) -> std::io::Result<File> {
    let f = create_new(dest)?;
    let fill = || -> std::io::Result<()> {
        let zeros = is_zeros(plain);
        if zeros || (plain.len() as u64) < size {
            f.set_len(size)?;
        }
        if !zeros {
            f.write_all_at(plain, 0)?;
        }
        Ok(())
    };
    match fill() {
        Ok(()) => Ok(f),
        Err(e) => {
            drop(f);
            let _ = std::fs::remove_file(dest);
            Err(e)
        }
    }
}

/// What every part of a restore shares.
pub(super) struct Shared {
    pub(super) repo: Repository,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) summary: Mutex<RestoreSummary>,
    /// Set owners (uid/gid).
    pub(super) owners: bool,
    /// Read each file back once written.
    pub(super) verify: bool,
    /// Files that could not be written whole, renamed once everything else is written.
    pub(super) damaged: Mutex<Vec<PathBuf>>,
    /// Where downloaded ranges are decoded and written.
    pub(super) decoders: Decoders,
    /// Whether the repository is remote (reads are requests), not a local directory.
    pub(super) remote: bool,
}

impl Shared {
    pub(super) fn lock_summary(&self) -> std::sync::MutexGuard<'_, RestoreSummary> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an error that leaves `path` out (or not as the snapshot has it) and lets the
    /// restore go on.
    pub(super) fn soft(&self, path: &Path, e: &dyn std::fmt::Display) {
        tracing::debug!("{}: {e}", path.display());
        let message = e.to_string();
        self.progress.error(path, &message);
        self.lock_summary().errors.push(FileError {
            path: path.to_path_buf(),
            message,
        });
    }
}

/// A file whose content is written: its metadata is set (and with `verify` it is read
/// back). Through `open`, the file as its last write left it open, when there is one: no
/// path is looked up again for the owner, mode and times.
pub(super) fn finish_file(shared: &Shared, f: &PlannedFile, open: Option<&File>) {
    shared.progress.advance(1, 0);
    if let Err(e) = set_metadata_via(&f.dest, open, &f.node, shared.owners) {
        shared.soft(&f.dest, &e);
    }
    if shared.verify {
        if holds_content(f, shared.repo.key()) {
            shared.lock_summary().files_verified += 1;
        } else {
            shared.soft(
                &f.dest,
                &"verification failed: the file on disk differs from the snapshot",
            );
        }
    }
}

/// The files of one batch still to be written, which its pack tasks share.
pub(super) struct BatchFiles {
    shared: Arc<Shared>,
    files: Vec<PlannedFile>,
    /// Per file, the blob writes still to come.
    blobs_left: Vec<AtomicUsize>,
    /// Files already reported as failed, so each is reported once.
    failed: Mutex<std::collections::HashSet<usize>>,
}

impl BatchFiles {
    pub(super) fn new(shared: Arc<Shared>, files: Vec<PlannedFile>) -> Self {
        let blobs_left = files
            .iter()
            .map(|f| AtomicUsize::new(f.blobs.len()))
            .collect();
        BatchFiles {
            shared,
            files,
            blobs_left,
            failed: Mutex::default(),
        }
    }

    pub(super) fn fail(&self, files: impl Iterator<Item = usize>, e: &Error) {
        for file in files {
            if self
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(file)
            {
                let f = &self.files[file];
                self.shared.soft(&f.dest, e);
                // A one-blob file does not exist until its write: it is left all zeros, as a
                // file of more blobs is. When it cannot even be created, nothing of it is on
                // disk, and what may be at its path is not this restore's to rename.
                if created_by_its_write(f) && create_file(&f.dest, f.node.size).is_err() {
                    let mut s = self.shared.lock_summary();
                    s.files_restored = s.files_restored.saturating_sub(1);
                    continue;
                }
                self.shared
                    .damaged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(f.dest.clone());
            }
        }
    }
}

/// The blob uses one pack serves in one batch: (blob, file, offset in the file).
pub(super) struct PackTask {
    pub(super) files: Arc<BatchFiles>,
    pub(super) pack: Id,
    pub(super) uses: Vec<(PackedBlob, usize, u64)>,
}

impl PackTask {
    /// Reads the pack's ranges in turn, each written by a decoder thread before the next is
    /// read. A range that cannot be read or decoded fails the files it serves, not the
    /// restore. From a remote store, ranges with little between them are one request (see
    /// [`SPAN_GAP`]).
    pub(super) async fn run(self) -> Result<()> {
        let PackTask { files, pack, uses } = self;
        let reader = PackReader {
            path: FileKind::Pack.path(&pack),
            files,
            pack,
        };
        let (gap, max_read) = if reader.files.shared.remote {
            (SPAN_GAP, REMOTE_MAX_READ)
        } else {
            (0, MAX_READ)
        };
        let mut jobs = read_jobs(uses, max_read).into_iter().peekable();
        while let Some(first) = jobs.next() {
            let mut span = vec![first];
            while let Some(next) = jobs.next_if(|j| span_continues(&span, j, gap)) {
                span.push(next);
            }
            if span.len() == 1 {
                for job in span {
                    reader.read_one(job).await?;
                }
            } else {
                reader.stream(span).await?;
            }
        }
        Ok(())
    }
}

/// From a remote store, ranges of one pack at most this far apart are read by one request,
/// the bytes between them read and dropped: each request costs a round trip, and the server
/// its own work (Garage reads and checks every 1 MiB block a range touches, so neighbouring
/// ranges cost it the blocks they share twice). A restore of the toolchain copy from Garage
/// made Garage spend 1.48 s of CPU time against restic's 0.74 s before, 1.15 s now, and took
/// 2.8 s where it took 3.0 to 3.7.
const SPAN_GAP: u64 = 1024 * 1024;

/// [`MAX_READ`] for a remote store. Ranges of one span cost no more requests when smaller,
/// and each of the packs in flight holds one: with 1 MiB, restoring the toolchain copy from
/// Garage peaked at 87 to 90 MiB against 95 to 103 with 2 MiB, no slower.
const REMOTE_MAX_READ: u64 = 1024 * 1024;

/// Whether `next` joins the span: close enough, and past its end. (Ranges overlap only where
/// a damaged or planted index has blobs overlap; such a range is read on its own.)
fn span_continues(span: &[ReadJob], next: &ReadJob, gap: u64) -> bool {
    gap > 0
        && span
            .last()
            .is_some_and(|last| next.start >= last.end && next.start - last.end <= gap)
}

/// Reads one pack's ranges and hands them to the decoder threads.
struct PackReader {
    files: Arc<BatchFiles>,
    pack: Id,
    path: String,
}

impl PackReader {
    /// One ranged read, decoded and written before this returns.
    async fn read_one(&self, job: ReadJob) -> Result<()> {
        let read = self
            .files
            .shared
            .repo
            .operator()
            .read_with(&self.path)
            .range(job.start..job.end)
            .await;
        match read {
            Ok(bytes) => self.decode(job, bytes).await,
            Err(e) => {
                self.files.fail(
                    job.uses.iter().map(|u| u.1),
                    &Error::storage("read", self.path.as_str(), e),
                );
                Ok(())
            }
        }
    }

    /// Several ranges read by one request, each handed on as soon as its bytes are in: no
    /// more than one range of it is held, as with separate reads. When the request fails or
    /// ends early, the ranges not yet handed on are read one by one (and retried, as every
    /// read is), so a broken stream costs a request per range, not the files.
    async fn stream(&self, span: Vec<ReadJob>) -> Result<()> {
        let (start, end) = match (span.first(), span.last()) {
            (Some(first), Some(last)) => (first.start, last.end),
            _ => return Ok(()),
        };
        let opened = match self.files.shared.repo.operator().reader(&self.path).await {
            Ok(reader) => reader.into_bytes_stream(start..end).await,
            Err(e) => Err(e),
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(
                    "{}: ranged stream refused, reading ranges one by one: {e}",
                    self.path
                );
                return self.read_each(span).await;
            }
        };
        // The bytes read and not yet handed on, from offset `at` of the pack.
        let mut held: Vec<bytes::Bytes> = Vec::new();
        let mut at = start;
        let mut held_len = 0u64;
        let mut jobs = span.into_iter();
        while let Some(job) = jobs.next() {
            while at + held_len < job.end {
                match stream.next().await {
                    Some(Ok(piece)) => {
                        held_len += piece.len() as u64;
                        held.push(piece);
                        // What lies before the range is dropped as it comes.
                        let gap = (job.start - at).min(held_len);
                        take_front(&mut held, gap);
                        held_len -= gap;
                        at += gap;
                    }
                    ended => {
                        if let Some(Err(e)) = ended {
                            tracing::debug!(
                                "{}: ranged stream broke, reading the rest one by one: {e}",
                                self.path
                            );
                        }
                        return self.read_each(std::iter::once(job).chain(jobs)).await;
                    }
                }
            }
            // Drop what lies before the range (when the bytes held reach past it), then take
            // the range's bytes.
            take_front(&mut held, job.start - at);
            held_len -= job.start - at;
            let range = take_front(&mut held, job.end - job.start);
            held_len -= job.end - job.start;
            at = job.end;
            self.decode(job, opendal::Buffer::from(range)).await?;
        }
        Ok(())
    }

    async fn read_each(&self, jobs: impl IntoIterator<Item = ReadJob>) -> Result<()> {
        for job in jobs {
            self.read_one(job).await?;
        }
        Ok(())
    }

    /// Hands a range's bytes to a decoder thread and waits until they are written.
    async fn decode(&self, job: ReadJob, bytes: opendal::Buffer) -> Result<()> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.files.shared.decoders.send(DecodeJob {
            files: self.files.clone(),
            pack: self.pack,
            path: self.path.clone(),
            start: job.start,
            bytes,
            uses: job.uses,
            done,
        })?;
        written.await.map_err(|_| Decoders::stopped())
    }
}

/// Removes and returns the first `n` bytes of `pieces` (all of them if they hold fewer); a
/// piece split in two is shared, not copied.
fn take_front(pieces: &mut Vec<bytes::Bytes>, mut n: u64) -> Vec<bytes::Bytes> {
    let mut taken = 0;
    while taken < pieces.len() && n > 0 {
        let len = pieces[taken].len() as u64;
        if len > n {
            let head = pieces[taken].split_to(n as usize);
            let mut front: Vec<bytes::Bytes> = pieces.drain(..taken).collect();
            front.push(head);
            return front;
        }
        n -= len;
        taken += 1;
    }
    pieces.drain(..taken).collect()
}

/// One ranged read of a pack and the blob uses it serves.
struct ReadJob {
    start: u64,
    end: u64,
    uses: Vec<(PackedBlob, usize, u64)>,
}

/// Splits the blob uses of one pack into ranged reads: neighbouring blobs (gaps under 256
/// KiB) share a read of at most `max_read` bytes (more only for one larger blob).
fn read_jobs(mut uses: Vec<(PackedBlob, usize, u64)>, max_read: u64) -> Vec<ReadJob> {
    uses.sort_by_key(|u| (u.0.offset, u.1, u.2));
    let mut jobs = Vec::new();
    let mut rest = uses.as_slice();
    while !rest.is_empty() {
        let start = rest[0].0.offset as u64;
        let mut end = start + rest[0].0.length as u64;
        let mut n = 1;
        while let Some((b, _, _)) = rest.get(n) {
            let b_end = b.offset as u64 + b.length as u64;
            if (b.offset as u64) > end + 256 * 1024 || b_end - start > max_read {
                break;
            }
            end = end.max(b_end);
            n += 1;
        }
        let (group, tail) = rest.split_at(n);
        rest = tail;
        jobs.push(ReadJob {
            start,
            end,
            uses: group.to_vec(),
        });
    }
    jobs
}

/// Decrypts, decompresses, verifies and writes one downloaded range. The range stays in the
/// pieces it arrived in (an HTTP body is many): each blob is copied out on its own, into the
/// decoder thread's `buffer`, and decoded there, so the range is not copied whole once more
/// per pack in flight.
fn write_group(job: &DecodeJob, buffer: &mut Vec<u8>) {
    let DecodeJob {
        files: ctx,
        pack,
        path,
        start,
        bytes,
        uses: group,
        ..
    } = job;
    let (pack, start) = (*pack, *start);
    let shared = &ctx.shared;
    // Uses of one blob are neighbours (by offset): it is decoded once for all of them.
    for uses in group.chunk_by(|a, b| a.0.id == b.0.id) {
        let blob = uses[0].0;
        let from = (blob.offset as u64 - start) as usize;
        let loc = crate::repository::index::BlobLocation { pack, blob };
        let end = from + blob.length as usize;
        let decoded = if end <= bytes.len() {
            let fill = |sealed: &mut [u8]| {
                let mut at = 0;
                for piece in bytes.slice(from..end) {
                    sealed[at..at + piece.len()].copy_from_slice(&piece);
                    at += piece.len();
                }
            };
            shared.repo.decode_located_blob_in(&loc, fill, buffer)
        } else {
            Err(Error::corrupt(path, "shorter than the index says"))
        };
        match decoded {
            Ok(plain) => {
                for (_, file, offset) in uses {
                    write_use(ctx, *file, *offset, plain);
                }
            }
            // Every use of this blob fails; the files are reported once each.
            Err(e) => ctx.fail(uses.iter().map(|u| u.1), &e),
        }
        if buffer.len() > KEEP_DECODE_BUFFER {
            *buffer = Vec::new();
        }
    }
}

/// Writes a blob's plaintext at one offset of one file.
fn write_use(ctx: &BatchFiles, file: usize, offset: u64, plain: &[u8]) {
    let shared = &ctx.shared;
    let f = &ctx.files[file];
    // A file of more blobs was created at its size, all zeros: a run of zeros stays a
    // hole. A file of one blob is created here.
    let written = if created_by_its_write(f) {
        create_with(&f.dest, plain, f.node.size).map(Some)
    } else if is_zeros(plain) {
        Ok(None)
    } else {
        OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&f.dest)
            .and_then(|out| out.write_all_at(plain, offset).map(|()| Some(out)))
    };
    match written {
        Ok(out) => {
            shared.progress.advance(0, plain.len() as u64);
            shared.lock_summary().bytes_written += plain.len() as u64;
            if ctx.blobs_left[file].fetch_sub(1, Ordering::Relaxed) == 1 {
                finish_file(shared, f, out.as_ref());
            }
        }
        Err(e) => ctx.fail(std::iter::once(file), &Error::io(&f.dest, e)),
    }
}

/// A downloaded range of a pack, for a decoder thread to decode and write.
pub(super) struct DecodeJob {
    files: Arc<BatchFiles>,
    pack: Id,
    path: String,
    start: u64,
    bytes: opendal::Buffer,
    uses: Vec<(PackedBlob, usize, u64)>,
    /// Dropped once the range is written (or its thread has died).
    done: tokio::sync::oneshot::Sender<()>,
}

/// The threads that decode and write what the pack tasks download, each with one decode
/// buffer it keeps from blob to blob.
///
/// Why threads of their own: on tokio's blocking pool each range went to whichever of some
/// twenty threads was free, and glibc gives every thread its own arena (up to 16 on two
/// cores), each keeping the pages of the largest blobs it ever decoded. Restoring the
/// toolchain copy from Garage peaked at 107 to 116 MiB (`init`: 78); with one decoder thread
/// per core, 91 to 101 MiB, with 10% less CPU time. (Capping glibc at one arena gave 84 to 90:
/// the rest is the downloads in flight, whose buffers the HTTP client allocates.)
pub(super) struct Decoders {
    jobs: crossbeam_channel::Sender<DecodeJob>,
}

/// The largest decode buffer a thread keeps, a blob's sealed bytes and plaintext together:
/// chunks average 1 MiB, and the few larger ones need not hold memory for the whole restore.
const KEEP_DECODE_BUFFER: usize = 4 * 1024 * 1024;

impl Decoders {
    /// Starts `threads` decoder threads (at least one); they end when this is dropped and
    /// the jobs sent are done.
    pub(super) fn start(threads: usize) -> Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<DecodeJob>();
        let mut started = 0;
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hoard-restore-{i}"))
                .spawn(move || decode_loop(queue));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!("cannot start a restore thread: {e}"),
            }
        }
        if started == 0 {
            return Err(Error::Task("cannot start any restore thread".into()));
        }
        Ok(Decoders { jobs })
    }

    fn send(&self, job: DecodeJob) -> Result<()> {
        self.jobs.send(job).map_err(|_| Self::stopped())
    }

    fn stopped() -> Error {
        Error::Task("restore's decoder threads stopped".into())
    }
}

/// A decoder thread: takes ranges until the channel closes. A panic while writing one range
/// is caught, so that the thread still serves the ranges queued behind it; the range's pack
/// task learns of it by `done` being dropped, and fails the restore (as a panic on a blocking
/// thread did).
fn decode_loop(queue: crossbeam_channel::Receiver<DecodeJob>) {
    let mut buffer = Vec::new();
    for job in queue {
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_group(&job, &mut buffer)
        }));
        match written {
            Ok(()) => {
                let _ = job.done.send(());
            }
            Err(_) => buffer = Vec::new(),
        }
    }
}

/// Whether `data` is all zero bytes. In blocks of 64 that the compiler folds with vector
/// instructions, stopping at the first block with data: this runs over every restored byte.
fn is_zeros(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(64);
    blocks.remainder().iter().all(|&b| b == 0)
        && blocks.all(|block| block.iter().fold(0, |acc, &b| acc | b) == 0)
}

/// Restores a node's extended attributes, without following symlinks. An attribute the file
/// system cannot hold (no xattr support) or this process may not set (`security.*`,
/// `trusted.*` without privileges) is logged and skipped; any other failure is the file's
/// error.
fn set_xattrs(path: &Path, node: &Node) -> std::io::Result<()> {
    for a in &node.xattrs {
        let name = a.name.as_os_str();
        if let Err(e) = xattr::set(path, name, &a.value) {
            let errno = e.raw_os_error();
            let privileged = !a.name.0.starts_with(b"user.");
            if errno == Some(nix::libc::ENOTSUP) || (privileged && errno == Some(nix::libc::EPERM))
            {
                tracing::warn!(
                    "{}: extended attribute {name:?} not restored: {e}",
                    path.display()
                );
                continue;
            }
            return Err(std::io::Error::new(
                e.kind(),
                format!("extended attribute {name:?}: {e}"),
            ));
        }
    }
    Ok(())
}

/// Creates a symlink, fifo or device; false for sockets, which cannot be restored.
pub(super) fn create_special(path: &Path, node: &Node) -> std::io::Result<bool> {
    use nix::sys::stat::{Mode, SFlag};
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.is_dir() {
            return Err(std::io::Error::other("a directory is in the way"));
        }
        std::fs::remove_file(path)?;
    }
    let mode = Mode::from_bits_truncate(node.mode as nix::libc::mode_t);
    match node.node_type {
        NodeType::Symlink => {
            let target = node.link_target.clone().unwrap_or_default();
            std::os::unix::fs::symlink(target.as_os_str(), path)?;
        }
        NodeType::Fifo => nix::unistd::mkfifo(path, mode).map_err(std::io::Error::from)?,
        NodeType::Dev | NodeType::Chardev => {
            let kind = if node.node_type == NodeType::Dev {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFCHR
            };
            nix::sys::stat::mknod(path, kind, mode, node.rdev.unwrap_or(0) as nix::libc::dev_t)
                .map_err(std::io::Error::from)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn timespec(ns: i64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

pub(super) fn set_metadata(path: &Path, node: &Node, owners: bool) -> std::io::Result<()> {
    set_metadata_via(path, None, node, owners)
}

/// Sets owner, mode, extended attributes and times, in that order: chown clears setuid
/// bits, and a POSIX ACL sets the group bits to its mask, as it did on the original. With
/// `open`, the regular file open at `path`, owner, mode and times go through the descriptor
/// and no path is looked up again for them.
fn set_metadata_via(
    path: &Path,
    open: Option<&File>,
    node: &Node,
    owners: bool,
) -> std::io::Result<()> {
    use nix::sys::stat::{futimens, utimensat, UtimensatFlags};
    use std::os::fd::AsFd;
    if owners {
        match open {
            Some(file) => std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))?,
            None => std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?,
        }
    }
    let mode = std::fs::Permissions::from_mode(node.mode);
    match open {
        Some(file) => file.set_permissions(mode)?,
        None if node.node_type != NodeType::Symlink => std::fs::set_permissions(path, mode)?,
        None => {}
    }
    set_xattrs(path, node)?;
    let (atime, mtime) = (timespec(node.atime), timespec(node.mtime));
    match open {
        Some(file) => futimens(file.as_fd(), &atime, &mtime),
        None => utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        ),
    }
    .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::{is_zeros, read_jobs, span_continues, take_front, ReadJob};
    use crate::format::pack::{BlobType, PackedBlob};
    use crate::id::Id;
    use bytes::Bytes;
    use proptest::prelude::*;

    proptest! {
        /// Ranges taken from a stream's pieces, cut anywhere, are the stream's bytes at
        /// those offsets, whatever the gaps dropped between them.
        #[test]
        fn ranges_taken_from_pieces_are_the_bytes_at_their_offsets(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(1usize..300, 0..20),
            takes in proptest::collection::vec(0u64..400, 0..20),
        ) {
            let mut pieces = Vec::new();
            let mut at = 0usize;
            for c in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                let end = at.saturating_add(*c).min(data.len());
                if end > at {
                    pieces.push(Bytes::copy_from_slice(&data[at..end]));
                }
                at = end;
            }
            let mut pos = 0usize;
            for n in takes {
                let got: Vec<u8> = take_front(&mut pieces, n).concat();
                let want = &data[pos.min(data.len())..(pos + n as usize).min(data.len())];
                prop_assert_eq!(&got[..], want);
                pos += n as usize;
            }
            let rest: Vec<u8> = pieces.concat();
            prop_assert_eq!(&rest[..], &data[pos.min(data.len())..]);
        }
    }

    #[test]
    fn ranges_join_a_span_only_when_close_and_only_from_a_remote_store() {
        let job = |start, end| ReadJob {
            start,
            end,
            uses: Vec::new(),
        };
        let span = [job(0, 100)];
        assert!(span_continues(&span, &job(100, 200), 50));
        assert!(span_continues(&span, &job(150, 200), 50));
        assert!(!span_continues(&span, &job(151, 200), 50));
        assert!(
            !span_continues(&span, &job(100, 200), 0),
            "local reads stay apart"
        );
        assert!(
            !span_continues(&span, &job(99, 200), 50),
            "an overlapping range is read on its own"
        );
    }

    #[test]
    fn read_jobs_merge_neighbours_up_to_the_cap_and_keep_a_blob_used_twice_in_one() {
        let blob = |n: u8, offset: u32, length: u32| PackedBlob {
            id: Id([n; 32]),
            blob_type: BlobType::Data,
            offset,
            length,
            raw_length: length,
            compressed: false,
        };
        let uses = vec![
            (blob(3, 600_000, 100), 0, 0),
            (blob(1, 0, 100), 1, 0),
            (blob(2, 100, 100), 2, 0),
            (blob(1, 0, 100), 3, 50),
            (blob(4, 200, 100), 4, 0),
        ];
        let ranges = |jobs: &[ReadJob]| -> Vec<(u64, u64, usize)> {
            jobs.iter()
                .map(|j| (j.start, j.end, j.uses.len()))
                .collect()
        };
        // A gap over 256 KiB ends a read; 250 bytes hold two blobs, not three.
        assert_eq!(
            ranges(&read_jobs(uses.clone(), 250)),
            [(0, 200, 3), (200, 300, 1), (600_000, 600_100, 1)]
        );
        assert_eq!(
            ranges(&read_jobs(uses, 1 << 20)),
            [(0, 300, 4), (600_000, 600_100, 1)]
        );
    }

    #[test]
    fn zeros_are_found_at_every_length_and_a_single_set_byte_anywhere_is_not() {
        for len in [0, 1, 63, 64, 65, 200] {
            let mut data = vec![0u8; len];
            assert!(is_zeros(&data), "{len}");
            for i in 0..len {
                data[i] = 1;
                assert!(!is_zeros(&data), "{len} {i}");
                data[i] = 0;
            }
        }
    }
}
