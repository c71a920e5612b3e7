//! Snapshot documents (`snapshots/<id>`, FORMAT.md "Snapshots"): the root tree of one backup and
//! what produced it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub time: DateTime<Utc>,
    pub tree: Id,
    /// Absolute paths given to `backup`, as the user wrote them after making them absolute.
    pub paths: Vec<String>,
    pub hostname: String,
    pub username: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    pub program_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
}

/// Counters of the backup run that made a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SnapshotSummary {
    pub backup_start: Option<DateTime<Utc>>,
    pub backup_end: Option<DateTime<Utc>>,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Bytes of new blobs as stored (compressed and sealed).
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
}

/// A snapshot with its id, as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotEntry {
    pub id: Id,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

impl SnapshotEntry {
    pub fn short_id(&self) -> String {
        self.id.short()
    }
}
