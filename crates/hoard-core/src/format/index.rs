//! Index files (`index/<id>`, FORMAT.md "Index"): sealed documents listing packs and their
//! blobs. `supersedes` names index files a file replaces (prune writes the replacement before
//! deleting anything), so readers skip those.

use serde::{Deserialize, Serialize};

use super::pack::PackedBlob;
use crate::id::Id;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    pub packs: Vec<IndexPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexPack {
    pub id: Id,
    pub blobs: Vec<PackedBlob>,
}

impl IndexFile {
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}
