//! The in-memory index: which pack holds each blob, and where.
//!
//! All live index files (documents in [`crate::format::index`]) collapse into one sorted
//! table of fixed-size records (46 bytes per blob) searched by binary search within the bucket
//! an id's first bits name, plus a small hash map of blobs added since the table was built.

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

/// A blob's place, 16 bytes: the two flags live in the top bits of the lengths, which never
/// reach 2^31 (a blob is at most 1 GiB plus nonce and tag, and index entries with larger
/// lengths are refused before they get here). A separate flag byte would cost a byte a blob.
#[derive(Clone, Copy)]
struct Loc {
    pack: u32,
    offset: u32,
    /// Bit 31: a tree blob.
    length: u32,
    /// Bit 31: compressed.
    raw_length: u32,
}

const FLAG: u32 = 1 << 31;
const LOC_LEN: usize = 16;
/// A record while loading: the whole id, then its [`Loc`].
const LOADING_LEN: usize = 32 + LOC_LEN;
/// The id bytes a record of the sorted table leaves out: its bucket implies them, since the
/// table always has at least [`MIN_BITS`] bucket bits. Two bytes of 48 are 4% of the index.
const IMPLIED: usize = 2;
const MIN_BITS: u32 = 8 * IMPLIED as u32;
/// A record of the sorted table: the id without its first [`IMPLIED`] bytes, then its [`Loc`].
const RECORD_LEN: usize = LOADING_LEN - IMPLIED;
const TAIL_LEN: usize = 32 - IMPLIED;

impl Loc {
    fn new(pack: u32, b: &PackedBlob) -> Self {
        debug_assert!(b.length < FLAG && b.raw_length < FLAG);
        let flag = |set: bool| if set { FLAG } else { 0 };
        Loc {
            pack,
            offset: b.offset,
            length: (b.length & !FLAG) | flag(b.blob_type == BlobType::Tree),
            raw_length: (b.raw_length & !FLAG) | flag(b.compressed),
        }
    }

    fn to_bytes(self) -> [u8; LOC_LEN] {
        let mut out = [0u8; LOC_LEN];
        for (i, v) in [self.pack, self.offset, self.length, self.raw_length]
            .into_iter()
            .enumerate()
        {
            out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn from_bytes(b: &[u8]) -> Self {
        let word =
            |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Loc {
            pack: word(0),
            offset: word(1),
            length: word(2),
            raw_length: word(3),
        }
    }

    fn blob(self, id: Id) -> PackedBlob {
        PackedBlob {
            id,
            blob_type: if self.length & FLAG != 0 {
                BlobType::Tree
            } else {
                BlobType::Data
            },
            offset: self.offset,
            length: self.length & !FLAG,
            raw_length: self.raw_length & !FLAG,
            compressed: self.raw_length & FLAG != 0,
        }
    }
}

/// All blobs the repository knows, by id.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    /// Records read from index files and not yet sorted ([`LOADING_LEN`] bytes each).
    loading: Vec<[u8; LOADING_LEN]>,
    /// The sorted records ([`RECORD_LEN`] bytes each). Flat bytes rather than a `Vec` of
    /// records, so that sorting can shorten the records where they lie: a second buffer would
    /// double the peak of opening a large repository.
    table: Vec<u8>,
    /// Where each run of the table with the same top `bits` bits of the id starts (one more
    /// at the end): a lookup searches about 16 neighbouring records, not the whole table.
    /// One bucket per 16 to 32 blobs (under 0.25 bytes per blob), and never fewer than
    /// 2^[`MIN_BITS`] (256 KiB, whatever the repository).
    buckets: Vec<u32>,
    bits: u32,
    recent: HashMap<Id, Loc>,
}

/// The first eight bytes of a slice as an integer: ids are uniformly random, so this nearly
/// always decides a comparison without a call to memcmp.
fn head(bytes: &[u8]) -> u64 {
    let mut h = [0u8; 8];
    h.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(h)
}

/// Fewer records than this are sorted on one thread: a thread costs more than it saves.
const SPLIT_FROM: usize = 1 << 16;

/// Sorts loading records by id on up to `threads` threads, without memory beyond the records:
/// they are split in place by bit `bit` of their ids' first byte (above it, all of `records`
/// agree), and each side is sorted on a thread of its own. Ids are uniformly random, so the
/// sides are even. Sorting is a fifth of opening a repository of 10 million blobs.
fn sort_records(records: &mut [[u8; LOADING_LEN]], bit: u32, threads: usize) {
    if threads < 2 || bit >= 8 || records.len() < SPLIT_FROM {
        records.sort_unstable_by(|a, b| head(a).cmp(&head(b)).then_with(|| a[..32].cmp(&b[..32])));
        return;
    }
    let mask = 0x80u8 >> bit;
    let (mut clear, mut end) = (0, records.len());
    while clear < end {
        if records[clear][0] & mask == 0 {
            clear += 1;
        } else {
            end -= 1;
            records.swap(clear, end);
        }
    }
    let (low, high) = records.split_at_mut(clear);
    let half = threads / 2;
    // Whoever takes `low` out sorts it: the other thread, or this one if none could start.
    let low = std::sync::Mutex::new(Some(low));
    let sort_low = || {
        let taken = low.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(l) = taken {
            sort_records(l, bit + 1, half);
        }
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("hoard-index-sort".into())
            .spawn_scoped(s, sort_low);
        sort_records(high, bit + 1, threads - half);
        if let Err(e) = other {
            tracing::debug!("sorting the index on one thread fewer: {e}");
            sort_low();
        }
    });
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

    fn record(&self, i: usize) -> &[u8] {
        &self.table[i * RECORD_LEN..(i + 1) * RECORD_LEN]
    }

    /// Adds a whole index file to the records to sort (used when loading).
    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            let n = self.pack_number(p.id);
            self.loading.reserve(p.blobs.len());
            for b in &p.blobs {
                let mut r = [0u8; LOADING_LEN];
                r[..32].copy_from_slice(&b.id.0);
                r[32..].copy_from_slice(&Loc::new(n, b).to_bytes());
                self.loading.push(r);
            }
        }
    }

    /// Sorts what was loaded into the table; a blob stored twice keeps one location.
    pub fn finish_loading(&mut self) {
        // Records sorted earlier join the new ones (only tests add files after a first sort).
        let sorted = std::mem::take(&mut self.table);
        for (bucket, range) in self.buckets.windows(2).enumerate() {
            let prefix = ((bucket as u64) << (64 - self.bits)).to_be_bytes();
            let records = &sorted[range[0] as usize * RECORD_LEN..range[1] as usize * RECORD_LEN];
            for r in records.chunks_exact(RECORD_LEN) {
                let mut full = [0u8; LOADING_LEN];
                full[..IMPLIED].copy_from_slice(&prefix[..IMPLIED]);
                full[IMPLIED..].copy_from_slice(r);
                self.loading.push(full);
            }
        }
        drop(sorted);

        // Asked only when it matters: the answer costs reads of cgroup files.
        let threads = match self.loading.len() < SPLIT_FROM {
            true => 1,
            false => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        };
        sort_records(&mut self.loading, 0, threads);
        self.loading.dedup_by(|a, b| a[..32] == b[..32]);
        let records = &self.loading;
        let kept = records.len();

        self.bits = (kept / 16).max(1).ilog2().clamp(MIN_BITS, 24);
        self.buckets = Vec::with_capacity((1 << self.bits) + 1);
        let mut at = 0;
        for bucket in 0..1u64 << self.bits {
            while at < kept && self.bucket_of(&records[at]) < bucket {
                at += 1;
            }
            self.buckets.push(at as u32);
        }
        self.buckets.push(kept as u32);

        // Drop the implied bytes of each record, front to back in the same allocation: a
        // record only ever moves onto bytes already read.
        let mut table = std::mem::take(&mut self.loading).into_flattened();
        for i in 0..kept {
            let from = i * LOADING_LEN + IMPLIED;
            table.copy_within(from..from + RECORD_LEN, i * RECORD_LEN);
        }
        table.truncate(kept * RECORD_LEN);
        table.shrink_to_fit();
        self.table = table;
    }

    /// The bucket of a whole id (the table has at least [`MIN_BITS`] bits once sorted).
    fn bucket_of(&self, id: &[u8]) -> u64 {
        head(id) >> (64 - self.bits)
    }

    /// Where `id` is in the sorted table.
    fn search(&self, id: &Id) -> Option<usize> {
        if self.buckets.is_empty() {
            return None; // nothing sorted yet
        }
        let b = self.bucket_of(&id.0) as usize;
        let (mut lo, mut hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let tail = &id.0[IMPLIED..];
        let key = head(tail);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let r = self.record(mid);
            match head(r).cmp(&key).then_with(|| r[..TAIL_LEN].cmp(tail)) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Adds the blobs of a freshly uploaded pack.
    pub fn add_pack(&mut self, pack: Id, blobs: &[PackedBlob]) {
        let n = self.pack_number(pack);
        for b in blobs {
            self.recent.insert(b.id, Loc::new(n, b));
        }
    }

    fn loc(&self, id: &Id) -> Option<Loc> {
        match self.search(id) {
            Some(i) => Some(Loc::from_bytes(&self.record(i)[TAIL_LEN..])),
            None => self.recent.get(id).copied(),
        }
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.loc(id).is_some()
    }

    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.loc(id).map(|l| BlobLocation {
            pack: self.packs[l.pack as usize],
            blob: l.blob(*id),
        })
    }

    /// The position of a blob in the sorted table (blobs loaded from index files), for
    /// per-blob bitmaps that cost one bit instead of a copy of the id.
    pub fn position(&self, id: &Id) -> Option<usize> {
        self.search(id)
    }

    pub fn len(&self) -> usize {
        self.table.len() / RECORD_LEN + self.recent.len()
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
        assert_eq!(idx.bits, MIN_BITS);
        let mut positions: Vec<usize> = ids.iter().map(|id| idx.position(id).unwrap()).collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), ids.len());
        for i in 50_000..50_500u32 {
            assert!(!idx.contains(&Id::of_file(&i.to_le_bytes())));
        }
    }

    #[test]
    fn sorting_on_several_threads_sorts_like_one() {
        let mut records: Vec<[u8; LOADING_LEN]> = (0..70_000u32)
            .map(|i| {
                let mut r = [0u8; LOADING_LEN];
                r[..32].copy_from_slice(&Id::of_file(&i.to_le_bytes()).0);
                r[40..44].copy_from_slice(&i.to_le_bytes());
                r
            })
            .collect();
        // Every record's first byte alike but one: a split that leaves one side empty.
        for r in records.iter_mut().skip(1) {
            r[0] = 0x5a;
        }
        let mut alone = records.clone();
        sort_records(&mut alone, 0, 1);
        sort_records(&mut records, 0, 5);
        assert!(alone.windows(2).all(|w| w[0] <= w[1]));
        assert!(records == alone);
    }

    #[test]
    fn a_blob_listed_twice_is_one_record() {
        let id = Id::of_file(b"twice");
        let mut idx = Index::new();
        for (p, offset) in [(b"p1", 1), (b"p2", 2)] {
            idx.add_file(&IndexFile {
                supersedes: Vec::new(),
                packs: vec![IndexPack {
                    id: Id::of_file(p),
                    blobs: vec![blob(id, offset, false), blob(Id::of_file(p), 0, false)],
                }],
            });
        }
        idx.finish_loading();
        assert_eq!(idx.len(), 3);
        assert!([1, 2].contains(&idx.get(&id).unwrap().blob.offset));
        assert!(idx.contains(&Id::of_file(b"p1")) && idx.contains(&Id::of_file(b"p2")));
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
    fn a_record_is_46_bytes_and_keeps_its_flags_apart_from_the_lengths() {
        let mut idx = Index::new();
        let big = (1u32 << 30) + 40; // the longest sealed tree blob
        let mut added = Vec::new();
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
                    id: Id::of_file(&[b'p', i as u8]),
                    blobs: vec![b],
                }],
            });
            added.push(b);
            // Sorting again keeps what an earlier sort shortened, whole.
            idx.finish_loading();
            assert_eq!(idx.table.len(), added.len() * RECORD_LEN);
            assert_eq!(RECORD_LEN, 46);
            for (j, b) in added.iter().enumerate() {
                let loc = idx.get(&b.id).unwrap();
                assert_eq!(loc.blob, *b);
                assert_eq!(loc.pack, Id::of_file(&[b'p', j as u8]));
            }
        }
    }
}
