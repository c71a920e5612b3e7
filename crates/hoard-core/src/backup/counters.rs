//! The one set of counters a backup run keeps: the walk counts files and directories, the
//! saver counts blobs and packs, and the snapshot's summary is read from here.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::format::snapshot::SnapshotSummary;

/// Counters shared by the walk, the file readers and the saver; cheap to bump from any thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub files_new: AtomicU64,
    pub files_changed: AtomicU64,
    pub files_unmodified: AtomicU64,
    pub dirs_new: AtomicU64,
    pub dirs_changed: AtomicU64,
    pub dirs_unmodified: AtomicU64,
    /// Content bytes of every file in the snapshot, read or reused.
    pub bytes_processed: AtomicU64,
    pub data_blobs: AtomicU64,
    pub tree_blobs: AtomicU64,
    /// Plaintext bytes of new blobs.
    pub data_added: AtomicU64,
    /// Their size as stored (compressed and sealed).
    pub data_added_packed: AtomicU64,
    /// Packs uploaded and their bytes (headers included).
    pub packs: AtomicU64,
    pub pack_bytes: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    pub fn packs(&self) -> (u64, u64) {
        (get(&self.packs), get(&self.pack_bytes))
    }

    pub fn summary(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> SnapshotSummary {
        let (new, changed, unmodified) = (
            get(&self.files_new),
            get(&self.files_changed),
            get(&self.files_unmodified),
        );
        SnapshotSummary {
            backup_start: Some(start),
            backup_end: Some(end),
            files_new: new,
            files_changed: changed,
            files_unmodified: unmodified,
            dirs_new: get(&self.dirs_new),
            dirs_changed: get(&self.dirs_changed),
            dirs_unmodified: get(&self.dirs_unmodified),
            data_blobs: get(&self.data_blobs),
            tree_blobs: get(&self.tree_blobs),
            data_added: get(&self.data_added),
            data_added_packed: get(&self.data_added_packed),
            total_files_processed: new + changed + unmodified,
            total_bytes_processed: get(&self.bytes_processed),
        }
    }
}
