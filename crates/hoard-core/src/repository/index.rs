//! The in-memory index: which pack holds each blob, and where.
//!
//! All live index files (documents in [`crate::format::index`]) collapse into one sorted
//! table of fixed-size records (46 bytes per blob) searched by binary search within the bucket
//! an id's first bits name, plus a small hash map of blobs added since the table was built.
//!
//! Loading never holds more than the table itself and a little: a record leaves out the first
//! two bytes of its id from the start. Records are added in runs of about a million, each
//! grouped in place by those two bytes (kept beside the run until then, two bytes a record),
//! so that a run's 65,536 group sizes name them afterwards. The runs are then regrouped in
//! place into one table by the same two bytes, each group (about 150 records at 10 million)
//! is sorted, and duplicates are dropped. Whole 48-byte records while loading would have made the peak of
//! opening 10 million blobs 480 MB where the table is 460.

mod grouping;

use std::collections::HashMap;

use grouping::{
    dedup_groups, ends_of, flag_sort, merge_runs, prefix_of, push_runs, sort_groups, starts_of,
    Run, SPLIT_FROM,
};

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
/// The id bytes a record leaves out: in the sorted table its bucket implies them, since the
/// table always has at least [`MIN_BITS`] bucket bits; while loading, its group or `heads`.
/// Two bytes of 48 are 4% of the index.
const IMPLIED: usize = 2;
const MIN_BITS: u32 = 8 * IMPLIED as u32;
/// The groups of ids by their first [`IMPLIED`] bytes.
const PREFIXES: usize = 1 << MIN_BITS;
const TAIL_LEN: usize = 32 - IMPLIED;
/// A record: the id without its first [`IMPLIED`] bytes, then its [`Loc`].
const RECORD_LEN: usize = TAIL_LEN + LOC_LEN;
type Record = [u8; RECORD_LEN];

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
pub struct Index {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    /// The records. Once sorted, in id order. While loading: [`Index::runs`], each grouped by
    /// the first two bytes of the ids, then the records not yet grouped, whose first two id
    /// bytes are in `heads`.
    table: Vec<Record>,
    heads: Vec<[u8; IMPLIED]>,
    runs: Vec<Run>,
    /// How many records make a run ([`RUN_LEN`]; tests make it small).
    run_len: usize,
    /// Where each run of the sorted table with the same top `bits` bits of the id starts (one
    /// more at the end, the number of sorted records): a lookup searches about 16 neighbouring
    /// records, not the whole table. One bucket per 16 to 32 blobs (under 0.25 bytes per
    /// blob), and never fewer than 2^[`MIN_BITS`] (256 KiB, whatever the repository).
    buckets: Vec<u32>,
    bits: u32,
    recent: HashMap<Id, Loc>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            table: Vec::new(),
            heads: Vec::new(),
            runs: Vec::new(),
            run_len: RUN_LEN,
            buckets: Vec::new(),
            bits: 0,
            recent: HashMap::new(),
        }
    }
}

/// Records grouped at a time while loading: their heads cost 2 MiB until then, the run's
/// group sizes 128 KiB after (an eighth of a byte a record).
const RUN_LEN: usize = 1 << 20;

/// Heads reserved at once ([`Index::add_loading`]): 32 MiB and a page.
const HEADS_RESERVED: usize = (1 << 24) + 2048;

/// Where to take the index back to when a file being loaded turns out unusable.
#[derive(Clone, Copy)]
pub(crate) struct LoadMark {
    records: usize,
    packs: usize,
}

/// The first eight bytes of a slice as an integer: ids are uniformly random, so this nearly
/// always decides a comparison without a call to memcmp.
fn head(bytes: &[u8]) -> u64 {
    let mut h = [0u8; 8];
    h.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(h)
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

    /// How many records the last [`Index::finish_loading`] sorted.
    fn sorted_len(&self) -> usize {
        self.buckets.last().map_or(0, |&n| n as usize)
    }

    /// Adds a whole index file to the records to sort.
    #[cfg(test)]
    pub fn add_file(&mut self, file: &crate::format::index::IndexFile) {
        for p in &file.packs {
            for b in &p.blobs {
                self.add_loading(b);
            }
            self.name_pack(p.id, p.blobs.len());
        }
        self.end_file();
    }

    /// Where to go back to if the file about to be loaded is refused.
    pub(crate) fn mark(&self) -> LoadMark {
        LoadMark {
            records: self.table.len(),
            packs: self.packs.len(),
        }
    }

    /// Forgets what was loaded since `mark` (records and packs first named since).
    pub(crate) fn back_to(&mut self, mark: LoadMark) {
        let dropped = self.table.len().saturating_sub(mark.records);
        self.table.truncate(mark.records);
        self.heads
            .truncate(self.heads.len().saturating_sub(dropped));
        for id in self.packs.drain(mark.packs..) {
            self.pack_numbers.remove(&id);
        }
    }

    /// Adds a blob read from an index file; [`Index::name_pack`] names its pack. Its lengths
    /// were checked: they stay under 2^31.
    pub(crate) fn add_loading(&mut self, b: &PackedBlob) {
        let mut r = [0u8; RECORD_LEN];
        r[..TAIL_LEN].copy_from_slice(&b.id.0[IMPLIED..]);
        r[TAIL_LEN..].copy_from_slice(&Loc::new(0, b).to_bytes());
        self.table.push(r);
        if self.heads.capacity() == 0 {
            // Reserved, not touched: above 32 MiB, glibc maps it apart from its heap and unmaps
            // it when freed, so only the pages of the current run are ever resident.
            self.heads
                .reserve_exact(HEADS_RESERVED.max(2 * self.run_len));
        }
        self.heads.push([b.id.0[0], b.id.0[1]]);
    }

    /// Names the pack of the last `count` blobs added.
    pub(crate) fn name_pack(&mut self, pack: Id, count: usize) {
        let n = self.pack_number(pack).to_le_bytes();
        let from = self.table.len() - count.min(self.heads.len());
        for r in &mut self.table[from..] {
            r[TAIL_LEN..TAIL_LEN + 4].copy_from_slice(&n);
        }
    }

    /// Ends a file: once a run's worth of records is waiting, they are grouped and their heads
    /// dropped. Never within a file, which may still be taken back.
    pub(crate) fn end_file(&mut self) {
        if self.heads.len() >= self.run_len {
            self.group_waiting();
        }
    }

    /// Groups the records not yet grouped by prefix, in place, into a run: by the first byte
    /// over the whole run, then by the second within each first byte's stretch, which fits in
    /// the cache (one pass over 65,536 groups at once missed it on nearly every record).
    fn group_waiting(&mut self) {
        let start = self.table.len() - self.heads.len();
        let records = &mut self.table[start..];
        let heads = &mut self.heads;
        let mut ends = vec![0u32; PREFIXES];
        for h in heads.iter() {
            ends[prefix_of(*h)] += 1;
        }
        ends_of(&mut ends);
        let firsts: Vec<u32> = ends.chunks(256).map(|c| c[255]).collect();
        flag_sort(records, heads, |h| usize::from(h[0]), &firsts);
        let mut from = 0;
        for (b, seconds) in ends.chunks(256).enumerate() {
            let to = firsts[b];
            let seconds: Vec<u32> = seconds.iter().map(|&e| e - from).collect();
            let (f, t) = (from as usize, to as usize);
            flag_sort(
                &mut records[f..t],
                &mut heads[f..t],
                |h| usize::from(h[1]),
                &seconds,
            );
            from = to;
        }
        // Freed rather than kept for the next run: pages touched and kept would count.
        self.heads = Vec::new();
        push_runs(&mut self.runs, start, &ends);
    }

    /// Sorts what was loaded into the table; a blob stored twice keeps one location.
    pub fn finish_loading(&mut self) {
        // Asked only when it matters: the answer costs reads of cgroup files.
        let threads = match self.table.len() < SPLIT_FROM {
            true => 1,
            false => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        };
        self.finish_loading_on(threads);
    }

    fn finish_loading_on(&mut self, threads: usize) {
        // Records sorted earlier are a run of their own (only tests add files after a sort).
        if let Some(&sorted) = self.buckets.last() {
            let shift = self.bits - MIN_BITS;
            let ends: Vec<u32> = (1..=PREFIXES).map(|p| self.buckets[p << shift]).collect();
            debug_assert_eq!(
                self.table.len() - self.heads.len() - sorted as usize,
                self.runs.iter().map(Run::len).sum::<usize>()
            );
            let mut runs = Vec::new();
            push_runs(&mut runs, 0, &ends);
            runs.append(&mut self.runs);
            self.runs = runs;
            self.buckets = Vec::new();
        }
        if !self.heads.is_empty() {
            self.group_waiting();
        }
        self.heads = Vec::new();
        let runs = std::mem::take(&mut self.runs);
        let ends = merge_runs(&mut self.table, &runs);
        drop(runs);
        sort_groups(&mut self.table, &starts_of(&ends), threads);
        let ends = dedup_groups(&mut self.table, &ends);
        self.table.shrink_to_fit();
        self.make_buckets(&ends);
    }

    /// The buckets of the sorted table, whose prefix groups end at `ends`: each group splits
    /// into 2^(bits - 16) buckets by the next bits of its ids.
    fn make_buckets(&mut self, ends: &[u32]) {
        let kept = self.table.len();
        self.bits = (kept / 16).max(1).ilog2().clamp(MIN_BITS, 24);
        let shift = self.bits - MIN_BITS;
        let sub_of = |r: &Record| match shift {
            0 => 0,
            s => head(r) >> (64 - s),
        };
        self.buckets = Vec::with_capacity((1 << self.bits) + 1);
        let mut at = 0;
        for &end in ends {
            for sub in 0..1u64 << shift {
                while at < end as usize && sub_of(&self.table[at]) < sub {
                    at += 1;
                }
                self.buckets.push(at as u32);
            }
            at = end as usize;
        }
        self.buckets.push(kept as u32);
    }

    /// The bucket of a whole id (the table has at least [`MIN_BITS`] bits once sorted).
    fn bucket_of(&self, id: &[u8]) -> u64 {
        head(id) >> (64 - self.bits)
    }

    /// Where `id` is in the sorted table.
    ///
    /// Ids are keyed hashes, spread evenly: the bits after the bucket's say about where in
    /// the bucket an id lies, and the few records next to that guess usually settle it, in
    /// the one or two cache lines the guess brings in. A binary search over the bucket's 16
    /// records or so took five probes in lines apart, each a miss in a table of hundreds of
    /// MiB: 38% of prune's plan on 10 million blobs, whose plan went from 12.1 s to 11.3 s
    /// and check's structure pass from 7.0 s to 6.1 s (what is left is the miss on the first
    /// record). Planted ids bunched in one bucket only make the guess wrong: what the steps
    /// from it leave is binary searched.
    fn search(&self, id: &Id) -> Option<usize> {
        if self.buckets.is_empty() {
            return None; // nothing sorted yet
        }
        let b = self.bucket_of(&id.0) as usize;
        let (mut lo, mut hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let tail = &id.0[IMPLIED..];
        let key = head(tail);
        let order = |i: usize| {
            let r = &self.table[i];
            head(r).cmp(&key).then_with(|| r[..TAIL_LEN].cmp(tail))
        };
        if lo < hi {
            // The id's place within its bucket, as a fraction of 2^64.
            let within = key << (self.bits - MIN_BITS);
            let guess = lo + ((u128::from(within) * (hi - lo) as u128) >> 64) as usize;
            const STEPS: usize = 4;
            match order(guess) {
                std::cmp::Ordering::Equal => return Some(guess),
                std::cmp::Ordering::Less => {
                    lo = guess + 1;
                    while lo < hi.min(guess + 1 + STEPS) {
                        match order(lo) {
                            std::cmp::Ordering::Less => lo += 1,
                            std::cmp::Ordering::Equal => return Some(lo),
                            std::cmp::Ordering::Greater => return None,
                        }
                    }
                }
                std::cmp::Ordering::Greater => {
                    hi = guess;
                    while hi > lo.max(guess.saturating_sub(STEPS)) {
                        match order(hi - 1) {
                            std::cmp::Ordering::Greater => hi -= 1,
                            std::cmp::Ordering::Equal => return Some(hi - 1),
                            std::cmp::Ordering::Less => return None,
                        }
                    }
                }
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match order(mid) {
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
            Some(i) => Some(Loc::from_bytes(&self.table[i][TAIL_LEN..])),
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
        self.sorted_len() + self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{IndexFile, IndexPack};
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

    /// Ids bunched in one bucket (as a planted index file can have them) defeat the guess
    /// of where in its bucket an id lies: the search still finds each, and nothing else.
    #[test]
    fn ids_bunched_in_one_bucket_are_found_and_their_neighbours_are_not() {
        let id = |i: u32, spread: bool| {
            let mut b = Id::of_file(&i.to_le_bytes()).0;
            b[..2].copy_from_slice(&[0xab, 0xcd]);
            if !spread {
                b[2..6].fill(0); // all at the very start of the bucket
            }
            Id(b)
        };
        let ids: Vec<Id> = (0..6000).map(|i| id(i, i % 3 == 0)).collect();
        let mut file = IndexFile::default();
        for (i, chunk) in ids.chunks(500).enumerate() {
            file.packs.push(IndexPack {
                id: Id::of_file(&(i as u64).to_le_bytes()),
                blobs: chunk.iter().map(|id| blob(*id, 1, false)).collect(),
            });
        }
        let mut idx = Index::new();
        idx.add_file(&file);
        idx.finish_loading();
        for (i, want) in ids.iter().enumerate() {
            let at = idx
                .position(want)
                .unwrap_or_else(|| panic!("id {i} not found"));
            assert_eq!(&idx.table[at][..TAIL_LEN], &want.0[IMPLIED..]);
            for bit in [0, 7] {
                let mut near = want.0;
                near[31] ^= 1 << bit;
                assert!(!idx.contains(&Id(near)), "a neighbour of id {i}");
            }
        }
        assert!(!idx.contains(&id(6000, false)) && !idx.contains(&id(6001, true)));
    }

    /// An index of `ids` (in pack order, 7 blobs a pack) loaded in runs of `run_len`.
    fn loaded(ids: &[Id], run_len: usize, threads: usize) -> Index {
        let mut idx = Index {
            run_len,
            ..Index::default()
        };
        for (i, chunk) in ids.chunks(7).enumerate() {
            let blobs = chunk
                .iter()
                .enumerate()
                .map(|(j, id)| blob(*id, j as u32, j % 3 == 0))
                .collect();
            idx.add_file(&IndexFile {
                supersedes: Vec::new(),
                packs: vec![IndexPack {
                    id: Id::of_file(&(i as u64).to_le_bytes()),
                    blobs,
                }],
            });
        }
        idx.finish_loading_on(threads);
        idx
    }

    /// The ids of a sorted table, in its order, rebuilt from bucket and record.
    fn table_ids(idx: &Index) -> Vec<Id> {
        let mut out = Vec::new();
        for (b, w) in idx.buckets.windows(2).enumerate() {
            let prefix = ((b as u64) << (64 - idx.bits)).to_be_bytes();
            for r in &idx.table[w[0] as usize..w[1] as usize] {
                let mut id = [0u8; 32];
                id[..IMPLIED].copy_from_slice(&prefix[..IMPLIED]);
                id[IMPLIED..].copy_from_slice(&r[..TAIL_LEN]);
                out.push(Id(id));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// However the records fall into runs, and whatever their first two bytes (a planted
        /// index may crowd them into a few), the table is the sorted set of ids.
        #[test]
        fn runs_of_any_length_sort_like_one(
            seeds in proptest::collection::vec((any::<u32>(), 0u16..4), 1..3000),
            run_len in 1usize..400,
            crowded in any::<bool>(),
        ) {
            let ids: Vec<Id> = seeds.iter().map(|(seed, twin)| {
                let mut id = Id::of_file(&seed.to_le_bytes()).0;
                if crowded {
                    id[0] = 0x7f;
                    id[1] = (*twin as u8) * 85; // 0x00, 0x55, 0xaa or 0xff
                }
                Id(id)
            }).collect();
            let idx = loaded(&ids, run_len, 1);
            let mut want = ids.clone();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(table_ids(&idx), want);
            for id in &ids {
                prop_assert!(idx.contains(id));
            }
        }
    }

    #[test]
    fn sorting_on_several_threads_sorts_like_one() {
        let mut ids: Vec<Id> = (0..70_000u32)
            .map(|i| Id::of_file(&i.to_le_bytes()))
            .collect();
        // All in the upper half of prefixes but one: a split that leaves one side nearly empty.
        for id in ids.iter_mut().skip(1) {
            id.0[0] |= 0x80;
        }
        let alone = loaded(&ids, 5000, 1);
        let several = loaded(&ids, 5000, 5);
        assert!(alone.table == several.table && alone.buckets == several.buckets);
        let order = table_ids(&alone);
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(order.len(), ids.len());
    }

    #[test]
    fn a_group_too_large_for_a_run_is_split() {
        // 70,000 ids under one prefix: more than a run's group can count.
        let ids: Vec<Id> = (0..70_000u32)
            .map(|i| {
                let mut id = Id::of_file(&i.to_le_bytes()).0;
                id[..2].copy_from_slice(&[0x42, 0x42]);
                Id(id)
            })
            .collect();
        let mut idx = loaded(&ids[..40_000], RUN_LEN, 1);
        // The sorted table is taken apart into runs again when more files follow.
        idx.add_file(&IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexPack {
                id: Id::of_file(b"more"),
                blobs: ids[40_000..].iter().map(|id| blob(*id, 3, false)).collect(),
            }],
        });
        idx.finish_loading_on(1);
        let mut want = ids.clone();
        want.sort_unstable();
        assert_eq!(table_ids(&idx), want);
        let mut runs = Vec::new();
        push_runs(&mut runs, 5, &[10, 10, 70_010, 70_011]);
        let sizes: Vec<Vec<u16>> = runs.iter().map(|r| r.sizes.clone()).collect();
        assert_eq!(sizes, [vec![10, 0, 34_995, 0], vec![0, 0, 35_005, 1]]);
        assert_eq!((runs[0].start, runs[1].start), (5, 35_010));
    }

    #[test]
    fn a_refused_file_leaves_nothing_behind() {
        let mut idx = Index::new();
        let kept = Id::of_file(b"kept");
        idx.add_loading(&blob(kept, 0, false));
        idx.name_pack(Id::of_file(b"p1"), 1);
        idx.end_file();
        let mark = idx.mark();
        // A pack already known, and one named only by the refused file.
        for (pack, id) in [(b"p1", b"x1"), (b"p2", b"x2")] {
            idx.add_loading(&blob(Id::of_file(id), 0, false));
            idx.name_pack(Id::of_file(pack), 1);
        }
        idx.add_loading(&blob(Id::of_file(b"x3"), 0, false));
        idx.back_to(mark);
        idx.finish_loading();
        assert_eq!(idx.len(), 1);
        assert!(idx.contains(&kept));
        assert_eq!(idx.pack_ids().collect::<Vec<_>>(), vec![Id::of_file(b"p1")]);
        assert!(!idx.contains(&Id::of_file(b"x1")));
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
            assert_eq!(idx.table.len(), added.len());
            assert_eq!(std::mem::size_of::<Record>(), 46);
            for (j, b) in added.iter().enumerate() {
                let loc = idx.get(&b.id).unwrap();
                assert_eq!(loc.blob, *b);
                assert_eq!(loc.pack, Id::of_file(&[b'p', j as u8]));
            }
        }
    }
}
