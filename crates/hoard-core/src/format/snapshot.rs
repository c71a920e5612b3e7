//! Snapshot documents (`snapshots/<id>`, FORMAT.md "Snapshots"): the root tree of one backup and
//! what produced it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;

/// One snapshot document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// When the backup was taken (or the time it was given).
    pub time: DateTime<Utc>,
    /// The root tree.
    pub tree: Id,
    /// Absolute paths given to `backup`, as the user wrote them after making them absolute.
    pub paths: Vec<String>,
    /// The host that made it.
    pub hostname: String,
    /// The user that made it.
    pub username: String,
    /// Their uid.
    #[serde(default)]
    pub uid: u32,
    /// Their gid.
    #[serde(default)]
    pub gid: u32,
    /// Tags given to the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Exclude patterns it used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// The snapshot whose metadata it compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// `hoard <version>`.
    pub program_version: String,
    /// The backup's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
    /// For a snapshot made by `repair snapshots`: the snapshot it repairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
}

/// Counters of the backup run that made a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SnapshotSummary {
    /// When the backup started.
    pub backup_start: Option<DateTime<Utc>>,
    /// When it finished.
    pub backup_end: Option<DateTime<Utc>>,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose metadata differed from the parent's (read again).
    pub files_changed: u64,
    /// Files taken over from the parent without reading.
    pub files_unmodified: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories whose tree changed.
    pub dirs_changed: u64,
    /// Directories whose tree is the parent's.
    pub dirs_unmodified: u64,
    /// Data blobs stored by this backup.
    pub data_blobs: u64,
    /// Tree blobs stored by this backup.
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Bytes of new blobs as stored (compressed and sealed).
    pub data_added_packed: u64,
    /// Files in the snapshot.
    pub total_files_processed: u64,
    /// Bytes of those files' contents.
    pub total_bytes_processed: u64,
}

/// A snapshot with its id, as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotEntry {
    /// Its id (the hash of its file).
    pub id: Id,
    /// The document.
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

impl SnapshotEntry {
    /// The first 8 hex digits of the id, as listings show it.
    pub fn short_id(&self) -> String {
        self.id.short()
    }
}
