//! Steps 2 to 4 of a restore, one file at a time: leave identical files alone or create
//! them at their size, write blobs read pack by pack at every offset that uses them, and
//! create links, special files and metadata.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::plan::PlannedFile;
use super::{Overwrite, RestoreSummary};
use crate::error::{Error, Result};
use crate::format::pack::PackedBlob;
use crate::format::tree::{Node, NodeType};
use crate::id::Id;
use crate::progress::{FileError, Progress};
use crate::repository::{copy_range, Repository};

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
            create_file(&f.dest, &f.node)?;
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
/// included). Its permission bits are the node's, with read and write for its owner so that
/// later writes by path succeed: with the usual umask they are then the final mode, and
/// [`set_metadata_via`] need not change it (a chmod dirties the inode: 2.6% of a restore's
/// CPU). Special bits (setuid, setgid, sticky) are only ever set last.
fn create_new(dest: &Path, node: &Node) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(node.mode & 0o777 | 0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)
}

/// Creates `dest` at the node's size, all zeros (a hole).
fn create_file(dest: &Path, node: &Node) -> std::io::Result<File> {
    let f = create_new(dest, node)?;
    f.set_len(node.size)?;
    Ok(f)
}

/// Creates a one-blob file with its content (see [`created_by_its_write`]). A blob of zeros
/// stays a hole, as do bytes the blob falls short of (a tree whose size disagrees).
/// When the write fails, the file is removed again: [`BatchFiles::fail`] then leaves it as a
/// file whose blob could not be read is left.
fn create_with(dest: &Path, plain: &[u8], node: &Node) -> std::io::Result<File> {
    let size = node.size;
    let f = create_new(dest, node)?;
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
    /// Where ranges of a local repository's packs are read into.
    pub(super) reads: Arc<crate::buffers::BufferPool>,
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
    pub(super) shared: Arc<Shared>,
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
                if created_by_its_write(f) && create_file(&f.dest, &f.node).is_err() {
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
            let fill = |sealed: &mut [u8]| copy_range(bytes, from..end, sealed);
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
        crate::buffers::trim_resident(buffer, KEEP_DECODE_BUFFER);
    }
}

/// Writes a blob's plaintext at one offset of one file.
fn write_use(ctx: &BatchFiles, file: usize, offset: u64, plain: &[u8]) {
    let shared = &ctx.shared;
    let f = &ctx.files[file];
    // A file of more blobs was created at its size, all zeros: a run of zeros stays a
    // hole. A file of one blob is created here.
    let written = if created_by_its_write(f) {
        create_with(&f.dest, plain, &f.node).map(Some)
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
struct DecodeJob {
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

/// The most of its decode buffer a thread keeps resident, a blob's sealed bytes and plaintext
/// together: chunks average 1 MiB, and the few larger ones need not hold memory for the whole
/// restore.
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

    /// Decodes and writes a downloaded range of `pack` (starting at `start` of it) on a
    /// decoder thread; returns once it is written.
    pub(super) async fn write(
        &self,
        files: &Arc<BatchFiles>,
        pack: Id,
        path: &str,
        start: u64,
        bytes: opendal::Buffer,
        uses: Vec<(PackedBlob, usize, u64)>,
    ) -> Result<()> {
        let (done, written) = tokio::sync::oneshot::channel();
        let job = DecodeJob {
            files: files.clone(),
            pack,
            path: path.to_string(),
            start,
            bytes,
            uses,
            done,
        };
        self.jobs.send(job).map_err(|_| Self::stopped())?;
        written.await.map_err(|_| Self::stopped())
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
    use std::os::unix::fs::MetadataExt;
    // A file this restore created is mostly owned and moded as the snapshot has it already
    // (see `create_new`): a chown or chmod that changes nothing still dirties the inode (3%
    // of a restore's CPU each), where an fstat only reads it.
    let created = open.map(File::metadata).transpose()?;
    let mut as_created = true;
    if owners {
        match (open, &created) {
            (Some(file), Some(md)) => {
                if (md.uid(), md.gid()) != (node.uid, node.gid) {
                    std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))?;
                    as_created = false; // which may have cleared setuid and setgid bits
                }
            }
            _ => std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?,
        }
    }
    let mode = std::fs::Permissions::from_mode(node.mode);
    match (open, &created) {
        (Some(_), Some(md)) if as_created && md.mode() & 0o7777 == node.mode & 0o7777 => {}
        (Some(file), _) => file.set_permissions(mode)?,
        (None, _) if node.node_type != NodeType::Symlink => std::fs::set_permissions(path, mode)?,
        (None, _) => {}
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
    use super::is_zeros;

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
