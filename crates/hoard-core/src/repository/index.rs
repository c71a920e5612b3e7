//! The in-memory index: which pack holds each blob, and where.
//!
//! All live index files (documents in [`crate::format::index`]) collapse into one sorted
//! table of fixed-size entries (48 bytes per blob) searched by binary search, plus a small
//! hash map of blobs added since the table was built.

use std::collections::HashMap;

use crate::format::index::IndexFile;
use crate::format::pack::{BlobType, PackedBlob};
use crate::id::Id;

/// Where a blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub blob: PackedBlob,
}

/// 48 bytes: the two flags live in the top bits of the lengths, which never reach 2^31 (a
/// blob is at most 1 GiB plus nonce and tag, and index entries with larger lengths are
/// refused before they get here). A separate flag byte would pad the entry to 52.
#[derive(Clone, Copy)]
struct Entry {
    id: [u8; 32],
    pack: u32,
    offset: u32,
    /// Bit 31: a tree blob.
    length: u32,
    /// Bit 31: compressed.
    raw_length: u32,
}

const FLAG: u32 = 1 << 31;

impl Entry {
    fn new(pack: u32, b: &PackedBlob) -> Self {
        debug_assert!(b.length < FLAG && b.raw_length < FLAG);
        let flag = |set: bool| if set { FLAG } else { 0 };
        Entry {
            id: b.id.0,
            pack,
            offset: b.offset,
            length: (b.length & !FLAG) | flag(b.blob_type == BlobType::Tree),
            raw_length: (b.raw_length & !FLAG) | flag(b.compressed),
        }
    }
}

/// All blobs the repository knows, by id.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    sorted: Vec<Entry>,
    /// Where each run of `sorted` with the same top `bits` bits of the id starts (one more
    /// at the end): a lookup searches about 16 neighbouring entries, not the whole table.
    /// One bucket per 16 to 32 blobs: under 0.25 bytes per blob.
    buckets: Vec<u32>,
    bits: u32,
    recent: HashMap<Id, Entry>,
}

/// The first eight bytes of an id as an integer: ids are uniformly random, so this nearly
/// always decides a comparison without a call to memcmp.
fn head(id: &[u8; 32]) -> u64 {
    u64::from_be_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]])
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pack the index names.
    pub fn pack_ids(&self) -> impl Iterator<Item = Id> + '_ {
        self.packs.iter().copied()
    }

    fn pack_number(&mut self, pack: Id) -> u32 {
        if let Some(n) = self.pack_numbers.get(&pack) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack);
        self.pack_numbers.insert(pack, n);
        n
    }

    /// Adds a whole index file to the sorted table (used when loading).
    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            let n = self.pack_number(p.id);
            self.sorted.extend(p.blobs.iter().map(|b| Entry::new(n, b)));
        }
        self.buckets.clear();
    }

    /// Sorts after bulk loading; a blob stored twice keeps one location.
    pub fn finish_loading(&mut self) {
        self.sorted.sort_unstable_by_key(|e| e.id);
        self.sorted.dedup_by(|a, b| a.id == b.id);
        self.sorted.shrink_to_fit();
        self.bits = (self.sorted.len() / 16).max(1).ilog2().min(24);
        self.buckets = Vec::with_capacity((1 << self.bits) + 1);
        let mut at = 0;
        for bucket in 0..1u64 << self.bits {
            while at < self.sorted.len() && self.bucket_of(&self.sorted[at].id) < bucket {
                at += 1;
            }
            self.buckets.push(at as u32);
        }
        self.buckets.push(self.sorted.len() as u32);
    }

    fn bucket_of(&self, id: &[u8; 32]) -> u64 {
        if self.bits == 0 {
            0
        } else {
            head(id) >> (64 - self.bits)
        }
    }

    /// Where `id` is in the sorted table.
    fn search(&self, id: &Id) -> Option<usize> {
        let (lo, hi) = match self.buckets.is_empty() {
            true => (0, self.sorted.len()),
            false => {
                let b = self.bucket_of(&id.0) as usize;
                (self.buckets[b] as usize, self.buckets[b + 1] as usize)
            }
        };
        let key = head(&id.0);
        self.sorted[lo..hi]
            .binary_search_by(|e| head(&e.id).cmp(&key).then_with(|| e.id.cmp(&id.0)))
            .ok()
            .map(|i| lo + i)
    }

    /// Adds the blobs of a freshly uploaded pack.
    pub fn add_pack(&mut self, pack: Id, blobs: &[PackedBlob]) {
        let n = self.pack_number(pack);
        for b in blobs {
            self.recent.insert(b.id, Entry::new(n, b));
        }
    }

    fn entry(&self, id: &Id) -> Option<&Entry> {
        self.search(id)
            .map(|i| &self.sorted[i])
            .or_else(|| self.recent.get(id))
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.entry(id).is_some()
    }

    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.entry(id).map(|e| BlobLocation {
            pack: self.packs[e.pack as usize],
            blob: PackedBlob {
                id: Id(e.id),
                blob_type: if e.length & FLAG != 0 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                },
                offset: e.offset,
                length: e.length & !FLAG,
                raw_length: e.raw_length & !FLAG,
                compressed: e.raw_length & FLAG != 0,
            },
        })
    }

    /// The position of a blob in the sorted table (blobs loaded from index files), for
    /// per-blob bitmaps that cost one bit instead of a copy of the id.
    pub fn position(&self, id: &Id) -> Option<usize> {
        self.search(id)
    }

    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexPack;
    use proptest::prelude::*;

    fn blob(id: Id, offset: u32, tree: bool) -> PackedBlob {
        PackedBlob {
            id,
            blob_type: if tree { BlobType::Tree } else { BlobType::Data },
            offset,
            length: 100 + offset,
            raw_length: 7,
            compressed: (offset % 2 == 0) != tree,
        }
    }

    proptest! {
        #[test]
        fn index_file_round_trip_and_lookup(packs in proptest::collection::vec(proptest::collection::vec((any::<[u8; 32]>(), any::<bool>()), 1..10), 1..10)) {
            let mut file = IndexFile::default();
            for (i, p) in packs.iter().enumerate() {
                let blobs = p.iter().enumerate().map(|(j, (id, t))| blob(Id(*id), j as u32, *t)).collect();
                file.packs.push(IndexPack { id: Id::of_file(&[i as u8]), blobs });
            }
            let json = serde_json::to_vec(&file).unwrap();
            let back: IndexFile = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(&back.packs, &file.packs);
            let mut idx = Index::new();
            idx.add_file(&back);
            idx.finish_loading();
            for p in &file.packs {
                for b in &p.blobs {
                    let loc = idx.get(&b.id).unwrap();
                    // a random id may repeat; whichever copy won must be a real one
                    prop_assert!(file.packs.iter().any(|q| q.id == loc.pack && q.blobs.contains(&loc.blob)));
                }
            }
            prop_assert!(!idx.contains(&Id::of_file(b"absent")));
        }
    }

    #[test]
    fn every_blob_of_a_large_table_is_found_through_its_bucket() {
        let mut ids: Vec<Id> = (0..50_000u32)
            .map(|i| Id::of_file(&i.to_le_bytes()))
            .collect();
        // The edges of the id space, and ids that share their first eight bytes.
        ids.extend([Id([0; 32]), Id([0xff; 32])]);
        let mut twin = ids[7].0;
        twin[31] ^= 1;
        ids.push(Id(twin));
        let mut file = IndexFile::default();
        for (i, chunk) in ids.chunks(1000).enumerate() {
            let blobs = chunk.iter().map(|id| blob(*id, 1, false)).collect();
            file.packs.push(IndexPack {
                id: Id::of_file(&(i as u64).to_le_bytes()),
                blobs,
            });
        }
        let mut idx = Index::new();
        idx.add_file(&file);
        idx.finish_loading();
        assert!(idx.bits > 8, "{}", idx.bits);
        let mut positions: Vec<usize> = ids.iter().map(|id| idx.position(id).unwrap()).collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), ids.len());
        for i in 50_000..50_500u32 {
            assert!(!idx.contains(&Id::of_file(&i.to_le_bytes())));
        }
    }

    #[test]
    fn recent_blobs_are_found() {
        let mut idx = Index::new();
        let id = Id::of_file(b"a");
        idx.add_pack(Id::of_file(b"p"), &[blob(id, 0, true)]);
        assert_eq!(idx.get(&id).unwrap().blob.blob_type, BlobType::Tree);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn an_entry_is_48_bytes_and_keeps_its_flags_apart_from_the_lengths() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
        let mut idx = Index::new();
        let big = (1u32 << 30) + 40; // the longest sealed tree blob
        for (i, (tree, compressed)) in [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .enumerate()
        {
            let b = PackedBlob {
                id: Id::of_file(&[i as u8]),
                blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                offset: 5,
                length: big,
                raw_length: big - 40,
                compressed,
            };
            idx.add_file(&IndexFile {
                supersedes: Vec::new(),
                packs: vec![IndexPack {
                    id: Id::of_file(b"p"),
                    blobs: vec![b],
                }],
            });
            idx.finish_loading();
            assert_eq!(idx.get(&b.id).unwrap().blob, b);
        }
    }
}
