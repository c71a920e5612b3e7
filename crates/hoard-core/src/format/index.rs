//! Index files (`index/<id>`, FORMAT.md "Index"): sealed documents listing packs and their
//! blobs. `supersedes` names index files a file replaces (prune writes the replacement before
//! deleting anything), so readers skip those.

use serde::{Deserialize, Serialize};

use super::pack::PackedBlob;
use crate::id::Id;

/// One index file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// Index files this one replaces; readers ignore those.
    pub supersedes: Vec<Id>,
    /// The packs it lists.
    pub packs: Vec<IndexPack>,
}

/// One pack and its blobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexPack {
    /// The pack's id (its name under `data/`).
    pub id: Id,
    /// Its blobs, in pack order.
    pub blobs: Vec<PackedBlob>,
}

impl IndexFile {
    /// How many blobs all its packs hold.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}
