//! Files built beside the repository before they are stored: data and tree packs grow in a
//! staging file (a MiB of memory each, not their size), and a finished one is renamed into
//! place (local) or uploaded from the file, mapped into memory, a part at a time (elsewhere).

use std::sync::Arc;

use opendal::ErrorKind;

use super::{read_into_pool, FileKind, Storage, STAGING_DIR};
use crate::buffers::BufferPool;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::cache::Cache;

/// The largest part of an upload from a staging file. A file is sent in equal parts no
/// larger than this: twice the smallest part S3 allows (5 MiB, but for the last), so equal
/// parts are never too small. Larger parts would hold more memory; smaller ones (5 MiB, three
/// or four parts per 16 MiB pack) cost about 15% of backup time on Garage in extra requests.
pub const MAX_UPLOAD_PART: u64 = 10 << 20;

/// The largest file uploaded in one PUT: a pack of the default size (16 MiB, and the blob
/// that took it over) goes in one request, not as a multipart upload of four (create, two
/// parts, complete). A backup of the toolchain copy to Garage made 39 requests instead of 93
/// and took 7 to 10% less time, in alternating runs.
pub const MAX_SINGLE_UPLOAD: u64 = 2 * MAX_UPLOAD_PART;

/// Upload budgets count bytes in units of this.
const UPLOAD_UNIT: u64 = 1 << 20;

/// What [`Storage::store_staged`] draws on for `concurrency` uploads at once.
pub(crate) struct UploadBudget {
    /// Room for that many files of [`MAX_SINGLE_UPLOAD`] in memory together, or for each
    /// upload's two parts of a larger file, in [`UPLOAD_UNIT`]s.
    permits: tokio::sync::Semaphore,
    /// The buffers parts are read into where a staging file cannot be mapped (see
    /// [`Mapped`]). A fresh buffer per part, freed once sent, was the largest block a backup
    /// freed; glibc then raised its mmap threshold to that size and every later part came
    /// from its per-thread arenas, which kept them: an S3 backup of the toolchain copy peaked
    /// at 195 to 240 MiB without the allocator setting (85 with). Pooled,
    /// they are never freed, and a buffer given back keeps only its first MiB resident.
    parts: Arc<BufferPool>,
}

pub(crate) fn upload_budget(concurrency: usize) -> UploadBudget {
    UploadBudget {
        permits: tokio::sync::Semaphore::new(
            concurrency.max(1) * (MAX_SINGLE_UPLOAD / UPLOAD_UNIT) as usize,
        ),
        parts: BufferPool::new(MAX_SINGLE_UPLOAD as usize),
    }
}

/// Staging files untouched for this long were left by a run that died: a live writer renames
/// its file within seconds, and a data pack being built grows by a MiB at a time (only a
/// stream that sends less than that in an hour leaves one this old).
pub const STALE_STAGING: std::time::Duration = std::time::Duration::from_secs(3600);

/// Syncs `staged` and renames it to `target`, making its directory if needed.
fn place_staged(staged: &std::path::Path, target: &std::path::Path) -> Result<()> {
    std::fs::File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(staged, e))?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(staged, target).map_err(|e| Error::io(target, e))
}

/// Bytes `at..at + n` of `file` as a part to send: mapped (see [`Mapped`]) or, where that
/// fails, read into a buffer of `pool` that goes back when OpenDAL drops the part. On the
/// blocking pool, as either may wait for the disk; gives the file back with the part.
async fn read_part(
    file: Option<std::fs::File>,
    at: u64,
    n: u64,
    pool: &Arc<BufferPool>,
) -> std::io::Result<(std::fs::File, opendal::Buffer)> {
    let mut file = file.ok_or_else(|| std::io::Error::other("the staging file was lost"))?;
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let part = match Mapped::new(&file, at, n) {
            Ok(mapped) => opendal::Buffer::from(bytes::Bytes::from_owner(mapped)),
            Err(e) => {
                tracing::debug!("cannot map a staging file, reading it: {e}");
                read_into_pool(&mut file, at, n, &pool)?
            }
        };
        if part.len() as u64 != n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok((file, part))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A range of a staging file mapped read-only: its pages, still in the page cache from being
/// written, are sent as they are. Read into buffers instead, every pack was copied once more
/// and its buffer's pages faulted in again: an S3 backup of the toolchain copy took 190,000
/// page faults instead of 120,000, and about 5% more CPU time.
///
/// A mapping turns a file shortened under it into SIGBUS on access. Staging files are this
/// process's own, created in a directory of its cache and removed by it (an `unlink`
/// elsewhere leaves the mapping whole); only the staging-file clean-up of another run
/// removes them, and only once they are an hour old.
struct Mapped {
    ptr: std::ptr::NonNull<nix::libc::c_void>,
    len: usize,
    /// Where the bytes asked for start in the mapping (which starts at a page boundary).
    skip: usize,
}

// SAFETY: the mapping is read-only and private to this value until it is unmapped on drop.
unsafe impl Send for Mapped {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps bytes `at..at + n` of `file` (`n` > 0, all of them in the file), with their pages
    /// mapped at once rather than fault by fault.
    fn new(file: &std::fs::File, at: u64, n: u64) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        if n == 0 || file.metadata()?.len() < at.saturating_add(n) {
            return Err(std::io::Error::other("not in the file"));
        }
        // SAFETY: a pure query.
        let page = match unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) } {
            p if p > 0 => p as u64,
            _ => return Err(std::io::Error::other("no page size")),
        };
        let from = at - at % page;
        let skip = usize::try_from(at - from).map_err(std::io::Error::other)?;
        let len = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_add(skip))
            .ok_or_else(|| std::io::Error::other("too large to map"))?;
        let offset = nix::libc::off_t::try_from(from).map_err(std::io::Error::other)?;
        // SAFETY: a new read-only private mapping of an open file; no existing memory is
        // touched, and the result is checked before use.
        let ptr = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                len,
                nix::libc::PROT_READ,
                nix::libc::MAP_PRIVATE | nix::libc::MAP_POPULATE,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == nix::libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr).ok_or_else(|| std::io::Error::other("null map"))?;
        Ok(Mapped { ptr, len, skip })
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` for as long as `self` lives, and
        // `skip` < `len`.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr.as_ptr().cast::<u8>().add(self.skip),
                self.len - self.skip,
            )
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no slice of it outlives `self`.
        unsafe { nix::libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}

impl Storage {
    /// Where backup builds packs as files, so that a pack being built costs a MiB of
    /// memory and not its size. For a local repository `<root>/.tmp/` (where OpenDAL stages
    /// its writes too): on the repository's file system, so a finished pack is renamed into
    /// place instead of copied. For other backends the cache's spool directory, from which
    /// the pack is uploaded a part at a time; without a cache, `None` (packs are built in
    /// memory).
    pub(crate) fn staging_dir(&self) -> Option<std::path::PathBuf> {
        match self.local_root() {
            Some(root) => Some(root.join(STAGING_DIR.trim_end_matches('/'))),
            None => self.cache.as_ref().map(Cache::spool_dir),
        }
    }

    /// Stores a finished staging file (see [`Self::staging_dir`]) as `kind` `id`, and removes
    /// it. Locally the file is synced and renamed into place: what the rename publishes is
    /// on disk. Elsewhere it is uploaded in one PUT when it is no larger than
    /// [`MAX_SINGLE_UPLOAD`], else in equal parts of at most [`MAX_UPLOAD_PART`] bytes, each
    /// mapped from the file as it is sent (read, where it cannot be mapped). A part in memory
    /// holds permits of `parts` for its size (see [`upload_budget`]) until it is sent, so
    /// uploads sharing `parts` hold no more than its budget in memory together. An upload holds two parts at most (OpenDAL sends
    /// a part when given the next).
    pub(crate) async fn store_staged(
        &self,
        kind: FileKind,
        id: Id,
        staged: std::path::PathBuf,
        parts: &UploadBudget,
    ) -> Result<()> {
        if let Some(root) = self.local_root() {
            let target = root.join(kind.path(&id));
            return tokio::task::spawn_blocking(move || place_staged(&staged, &target))
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
        }
        let result = self.upload_file(kind, id, &staged, parts).await;
        if let Err(e) = std::fs::remove_file(&staged) {
            tracing::debug!("cannot remove {}: {e}", staged.display());
        }
        result
    }

    async fn upload_file(
        &self,
        kind: FileKind,
        id: Id,
        staged: &std::path::Path,
        parts: &UploadBudget,
    ) -> Result<()> {
        let path = kind.path(&id);
        let file = std::fs::File::open(staged).map_err(|e| Error::io(staged, e))?;
        let len = file.metadata().map_err(|e| Error::io(staged, e))?.len();
        let mut writer = self
            .op
            .writer(&path)
            .await
            .map_err(|e| Error::storage("write", &path, e))?;
        // Even parts: a 24 MiB pack goes as three of 8 MiB, not 10, 10 and 4.
        let part = if len <= MAX_SINGLE_UPLOAD {
            len
        } else {
            len.div_ceil(len.div_ceil(MAX_UPLOAD_PART))
        };
        let mut file = Some(file);
        let mut held = None;
        let mut at = 0;
        let sent = async {
            while at < len {
                let n = (len - at).min(part);
                let units = n
                    .div_ceil(UPLOAD_UNIT)
                    .clamp(1, MAX_SINGLE_UPLOAD / UPLOAD_UNIT);
                let permit = parts
                    .permits
                    .acquire_many(units as u32)
                    .await
                    .map_err(|_| Error::Task("upload budget closed".into()))?;
                let (f, part) = read_part(file.take(), at, n, &parts.parts)
                    .await
                    .map_err(|e| Error::io(staged, e))?;
                file = Some(f);
                writer
                    .write(part)
                    .await
                    .map_err(|e| Error::storage("write", &path, e))?;
                // The part before this one has been sent; this one waits in the writer.
                held = Some(permit);
                at += n;
            }
            writer
                .close()
                .await
                .map_err(|e| Error::storage("write", &path, e))
        }
        .await;
        drop(held);
        if sent.is_err() {
            if let Err(e) = writer.abort().await {
                tracing::debug!("cannot abort the upload of {path}: {e}");
            }
        }
        sent.map(|_| ())
    }

    /// Removes staging files (`.tmp/`, where local writes are prepared before their rename)
    /// at least `min_age` old: what killed or failed runs left. Best effort: a failure is
    /// logged, never fatal. Returns how many were removed.
    pub(crate) async fn clean_staging(&self, min_age: std::time::Duration) -> usize {
        let entries = match self.op.list_with(STAGING_DIR).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return 0,
            Err(e) => {
                tracing::debug!("cannot list {STAGING_DIR}: {e}");
                return 0;
            }
        };
        let mut removed = 0;
        for entry in entries.iter().filter(|e| !e.metadata().is_dir()) {
            let path = entry.path();
            let old = match self.op.stat(path).await {
                Ok(md) => md.last_modified().is_some_and(|t| {
                    let t: std::time::SystemTime = t.into();
                    t.elapsed().unwrap_or_default() >= min_age
                }),
                Err(_) => false,
            };
            if !old {
                continue;
            }
            match self.op.delete(path).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove staging file {path}: {e}"),
            }
        }
        if removed > 0 {
            tracing::info!("removed {removed} staging files left by earlier runs");
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use opendal::Operator;

    use super::*;
    use crate::format::crypto::MasterKey;

    /// Parts of a staging file are exactly the bytes asked for, mapped at any offset; where
    /// mapping is refused (a range past the end) they are read, and a file shorter than the
    /// range is an error, not a short part.
    #[tokio::test]
    async fn parts_read_from_a_staging_file_are_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("staged");
        let body: Vec<u8> = (0..3_000_000u32).map(|n| (n % 253) as u8).collect();
        std::fs::write(&path, &body).expect("write staged file");
        let pool = BufferPool::new(1 << 20);
        let file = std::fs::File::open(&path).ok();
        let (file, part) = read_part(file, 1_000_001, 999_999, &pool)
            .await
            .expect("read");
        assert!(part.to_vec() == body[1_000_001..2_000_000]);
        let short = read_part(Some(file), 2_500_000, 600_000, &pool).await;
        assert_eq!(
            short.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );
        let file = std::fs::File::open(&path).expect("open");
        let mapped = Mapped::new(&file, 1_000_001, 999_999).expect("map");
        assert!(mapped.as_ref() == &body[1_000_001..2_000_000]);
        assert!(Mapped::new(&file, 0, 0).is_err(), "nothing to map");
        assert!(
            Mapped::new(&file, 2_500_000, 600_000).is_err(),
            "past the end"
        );
    }

    /// Staged files uploaded one after another through one budget arrive whole, in one PUT or
    /// in parts, are removed once stored, and give every permit back.
    #[tokio::test]
    async fn staged_uploads_arrive_whole_and_give_their_budget_back() {
        let op = Operator::new(opendal::services::Memory::default()).expect("memory operator");
        let storage = Storage::new(op, "memory".into(), MasterKey::random(), Id([0; 32]));
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = upload_budget(2);
        let sizes = [3 << 20, (1 << 20) + 7, MAX_SINGLE_UPLOAD as usize + 4099];
        for (i, size) in sizes.into_iter().enumerate() {
            let body: Vec<u8> = (0..size).map(|n| (n * 7 + i * 31) as u8).collect();
            let staged = dir.path().join(format!("staged-{i}"));
            std::fs::write(&staged, &body).expect("write staged file");
            let id = Id([i as u8 + 1; 32]);
            storage
                .store_staged(FileKind::Pack, id, staged.clone(), &budget)
                .await
                .expect("upload");
            let stored = storage
                .operator()
                .read(&FileKind::Pack.path(&id))
                .await
                .expect("read back")
                .to_vec();
            assert!(stored == body, "file {i} ({size} bytes) arrived changed");
            assert!(!staged.exists(), "the staged file is removed once stored");
        }
        assert_eq!(
            budget.permits.available_permits(),
            2 * (MAX_SINGLE_UPLOAD / UPLOAD_UNIT) as usize,
            "every permit is given back"
        );
    }
}
