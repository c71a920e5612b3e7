//! Index files (`index/<id>`, FORMAT.md "Index"): sealed documents listing packs and their
//! blobs. `supersedes` names index files a file replaces (prune writes the replacement before
//! deleting anything), so readers skip those.

use serde::{Deserialize, Serialize};

use super::pack::PackedBlob;
use crate::id::Id;

/// One index file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files this one replaces; readers ignore those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

/// Blobs per index file written by prune and `repair index`: small enough to load in pieces,
/// large enough that a big repository has few files.
pub(crate) const BLOBS_PER_INDEX_FILE: usize = 50_000;

/// Groups packs into index files of about [`BLOBS_PER_INDEX_FILE`] blobs, the last of which
/// supersedes the files it replaces (prune and `repair index` write this way).
#[derive(Default)]
pub(crate) struct IndexBatcher {
    current: IndexFile,
}

impl IndexBatcher {
    /// Adds a pack; returns a full file to write first when the pack does not fit.
    pub(crate) fn push(&mut self, p: IndexPack) -> Option<IndexFile> {
        let full = (!self.current.packs.is_empty()
            && self.current.blob_count() + p.blobs.len() > BLOBS_PER_INDEX_FILE)
            .then(|| std::mem::take(&mut self.current));
        self.current.packs.push(p);
        full
    }

    /// The last file, which supersedes `old` (written even when it lists no pack).
    pub(crate) fn finish(self, old: Vec<Id>) -> IndexFile {
        IndexFile {
            supersedes: old,
            packs: self.current.packs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;

    #[test]
    fn only_the_last_index_file_supersedes() {
        let blob = |i: u8| PackedBlob {
            id: Id::of_file(&[i]),
            blob_type: BlobType::Data,
            offset: 0,
            length: 10,
            raw_length: 10,
            compressed: false,
        };
        let mut batch = IndexBatcher::default();
        let full: Vec<IndexFile> = (0..3)
            .filter_map(|i| {
                batch.push(IndexPack {
                    id: Id::of_file(&[i, 1]),
                    blobs: vec![blob(i); BLOBS_PER_INDEX_FILE / 2 + 1],
                })
            })
            .collect();
        assert_eq!(full.len(), 2);
        assert!(full
            .iter()
            .all(|f| f.supersedes.is_empty() && f.packs.len() == 1));
        let old = vec![Id::of_file(b"old")];
        let last = batch.finish(old.clone());
        assert_eq!(last.supersedes, old);
        assert_eq!(last.packs.len(), 1);
        // Nothing left to index still writes the superseding file.
        let last = IndexBatcher::default().finish(old.clone());
        assert!(last.packs.is_empty());
        assert_eq!(last.supersedes, old);
    }
}
