//! Steps 3 and 4 of check (see the module above): the chosen packs downloaded and verified
//! blob by blob, then every bad blob traced to the snapshots and files that use it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::{damage, CheckError, CheckReport, Damaged};
use crate::error::{Error, Result};
use crate::format::pack::{read_pack_from, BlobType, PackedBlob};
use crate::format::snapshot::SnapshotEntry;
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::{copy_range, FileKind, Repository};

/// Which packs `check` downloads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum ReadData {
    #[default]
    /// Download nothing: structure only.
    None,
    /// Every pack.
    All,
    /// Part `n` of `t` (1-based): packs whose id, as a number, is `n - 1` modulo `t`. Running
    /// 1/t … t/t on successive days reads everything once.
    Part {
        /// Which part, from 1.
        n: u64,
        /// Of how many parts.
        t: u64,
    },
    /// A random share of the packs, in percent.
    Percent(f64),
}

impl std::str::FromStr for ReadData {
    type Err = Error;

    /// `n/t` or `x%`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "--read-data-subset",
                format!("{s:?} (use n/t, e.g. 2/7, or x%, e.g. 10%)"),
            )
        };
        if let Some(p) = s.strip_suffix('%') {
            let x: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(x > 0.0 && x <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Percent(x));
        }
        let (n, t) = s.split_once('/').ok_or_else(bad)?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        let t: u64 = t.trim().parse().map_err(|_| bad())?;
        if n == 0 || t == 0 || n > t {
            return Err(bad());
        }
        Ok(ReadData::Part { n, t })
    }
}

/// Step 3: downloads the packs `how` chooses among those indexed (`packs`, with the length their
/// entries add up to) and verifies each; returns the bad blobs the index uses, with why. A pack
/// longer than its index entries say was reported by the structure pass; it is not read whole,
/// since a planted file under a pack's name may be any size.
pub(super) async fn read_packs(
    repo: &Repository,
    packs: &HashMap<Id, u64>,
    on_storage: &HashMap<Id, u64>,
    live_files: &[Id],
    how: ReadData,
    progress: &dyn Progress,
    r: &mut CheckReport,
) -> Result<HashMap<Id, String>> {
    let selected: Vec<Id> = select_packs(packs, on_storage, how)
        .into_iter()
        .filter(|id| on_storage[id] <= packs[id])
        .collect();
    let mut indexed = blob_lists(repo, live_files, &selected, &mut r.errors).await?;
    if !selected.is_empty() {
        progress.phase(Phase::CheckData);
        let bytes = selected.iter().map(|id| on_storage[id]).sum();
        progress.total(selected.len() as u64, bytes, true);
    }
    let jobs: Vec<(Id, Vec<PackedBlob>)> = selected
        .into_iter()
        .map(|id| (id, indexed.remove(&id).unwrap_or_default()))
        .collect();
    // Hashing and decoding a pack is a core's work: each pack is read and then verified on a
    // blocking thread, as many at once as there are cores. Verified in turn on the task that
    // read them, as before, the toolchain copy's check ran on one core, 1.6x slower; a third
    // pack at once was no faster and held 17 MiB more.
    let at_once = std::thread::available_parallelism().map_or(2, |n| n.get());
    // A local pack is read into a buffer that goes round (see `crate::buffers`): a fresh one
    // per pack, freed once verified, had glibc's arenas keep 15 to 25 MiB more.
    let pool = &crate::buffers::BufferPool::new(repo.config().pack_size as usize);
    let mut checked = futures::stream::iter(jobs)
        .map(|(id, blobs)| async move {
            let len = on_storage[&id];
            let read = repo.read_range_pooled(FileKind::Pack, &id, 0..len, pool);
            let bytes = match read.await {
                Ok(b) => b,
                Err(e) => return Ok((id, Err(e))),
            };
            let repo = repo.clone();
            tokio::task::spawn_blocking(move || (id, Ok(verify_pack(&repo, &id, &bytes, &blobs))))
                .await
        })
        .buffer_unordered(at_once);
    let mut bad_blobs: HashMap<Id, String> = HashMap::new();
    while let Some(joined) = checked.next().await {
        let (id, verified) = joined.map_err(|e| Error::Task(e.to_string()))?;
        match verified {
            Ok(found) => {
                r.packs_read += 1;
                r.bytes_read += found.len;
                progress.advance(1, found.len);
                r.errors.extend(found.errors);
                bad_blobs.extend(found.bad);
            }
            Err(e) => {
                r.errors.push(damage(
                    Damaged::Pack,
                    id,
                    format!("pack {}: cannot read: {e}", id.short()),
                ));
                progress.advance(1, 0);
            }
        }
    }
    Ok(bad_blobs)
}

/// What [`verify_pack`] found in one pack of `len` bytes: its damage, and the bad blobs the
/// index uses.
struct Verified {
    len: u64,
    errors: Vec<CheckError>,
    bad: HashMap<Id, String>,
}

/// Step 4: every file of every snapshot that uses a bad blob, as an error naming it.
pub(super) async fn blame(
    repo: &Repository,
    snapshots: &[SnapshotEntry],
    bad: &HashMap<Id, String>,
    errors: &mut Vec<CheckError>,
) {
    if bad.is_empty() {
        return; // nothing to trace, and no tree to load
    }
    let mut memo = HashMap::new();
    for s in snapshots {
        let files = affected(repo, s.snapshot.tree, bad, &mut memo).await;
        for (path, why) in files {
            errors.push(damage(
                Damaged::File,
                s.id,
                format!(
                    "snapshot {} ({} {}): {} is damaged: {why}",
                    s.id.short(),
                    s.snapshot.hostname,
                    s.snapshot.time.format("%Y-%m-%d %H:%M:%S"),
                    Path::new("/").join(path).display(),
                ),
            ));
        }
    }
}

/// The index entries of the packs `wanted`, read again from the live index files: only the
/// packs whose data is read need them, and the structure pass does not hold them all.
async fn blob_lists(
    repo: &Repository,
    live: &[Id],
    wanted: &[Id],
    errors: &mut Vec<CheckError>,
) -> Result<HashMap<Id, Vec<PackedBlob>>> {
    let mut lists = HashMap::new();
    if wanted.is_empty() {
        return Ok(lists);
    }
    let wanted: HashSet<Id> = wanted.iter().copied().collect();
    repo.for_each_index_file(live, |id, f| {
        match f {
            Ok(f) => {
                for p in f.packs.into_iter().filter(|p| wanted.contains(&p.id)) {
                    lists.entry(p.id).or_insert(p.blobs);
                }
            }
            Err(e) => errors.push(damage(
                Damaged::IndexFile,
                id,
                format!("index file {}: cannot be read again: {e}", id.short()),
            )),
        }
        Ok(())
    })
    .await?;
    Ok(lists)
}

fn select_packs(packs: &HashMap<Id, u64>, on_storage: &HashMap<Id, u64>, how: ReadData) -> Vec<Id> {
    let mut ids: Vec<Id> = packs
        .keys()
        .filter(|id| on_storage.contains_key(id))
        .copied()
        .collect();
    ids.sort();
    match how {
        ReadData::None => Vec::new(),
        ReadData::All => ids,
        ReadData::Part { n, t } => ids
            .into_iter()
            .filter(|id| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&id.0[..8]);
                u64::from_be_bytes(b) % t == n - 1
            })
            .collect(),
        ReadData::Percent(x) => {
            let want = ((ids.len() as f64 * x / 100.0).ceil() as usize).min(ids.len());
            // Partial Fisher–Yates with OS randomness: a different sample each run.
            for i in 0..want {
                let mut r = [0u8; 8];
                let _ = getrandom::fill(&mut r);
                let j = i + (u64::from_le_bytes(r) as usize) % (ids.len() - i);
                ids.swap(i, j);
            }
            ids.truncate(want);
            ids
        }
    }
}

/// Checks one downloaded pack against its name, its header and the index. The pack stays in
/// the pieces it was read in (an HTTP body is many): made contiguous, it would be held twice
/// while the copy is made, for each pack being verified.
fn verify_pack(
    repo: &Repository,
    id: &Id,
    bytes: &opendal::Buffer,
    indexed: &[PackedBlob],
) -> Verified {
    let mut errors = Vec::new();
    let mut bad = HashMap::new();
    let what = format!("pack {}", id.short());
    let mut push = |message: String| errors.push(damage(Damaged::Pack, *id, message));
    let mut name = blake3::Hasher::new();
    for piece in bytes.clone() {
        name.update(&piece);
    }
    if Id(*name.finalize().as_bytes()) != *id {
        push(format!(
            "{what}: content does not match its name (damaged on storage)"
        ));
    }
    let bytes_at = |r| std::borrow::Cow::Owned(bytes.slice(r).to_vec());
    match read_pack_from(repo.key(), bytes.len(), bytes_at, &what) {
        Ok(header) => {
            let mut a: Vec<_> = header.iter().map(|b| (b.id, b.offset, b.length)).collect();
            let mut b: Vec<_> = indexed.iter().map(|b| (b.id, b.offset, b.length)).collect();
            a.sort();
            b.sort();
            if a != b {
                push(format!("{what}: header does not match the index"));
            }
        }
        Err(e) => push(format!("{what}: header: {e}")),
    }
    // Blobs are decoded in one buffer, sized for the largest and mapped on its own (see
    // `transient_capacity`): one allocation per pack, not two per blob. Lengths no writer
    // produces (a damaged or planted index) are refused per blob below, not sized for.
    let room = indexed
        .iter()
        .filter(|&&blob| {
            let loc = crate::repository::index::BlobLocation { pack: *id, blob };
            repo.check_lengths(&loc).is_ok()
        })
        .map(|b| b.length as usize + b.raw_length as usize)
        .max()
        .unwrap_or(0);
    let mut buffer = Vec::with_capacity(crate::buffers::transient_capacity(room));
    for b in indexed {
        let loc = crate::repository::index::BlobLocation {
            pack: *id,
            blob: *b,
        };
        let range = b.offset as usize..b.offset as usize + b.length as usize;
        let result = if range.end <= bytes.len() {
            let fill = |sealed: &mut [u8]| copy_range(bytes, range, sealed);
            repo.decode_located_blob_in(&loc, fill, &mut buffer)
                .map(|_| ())
        } else {
            Err(Error::corrupt(what.clone(), "shorter than the index says"))
        };
        if let Err(e) = result {
            let kind = match b.blob_type {
                BlobType::Data => "data",
                BlobType::Tree => "tree",
            };
            push(format!("{what}: {kind} blob {}: {e}", b.id.short()));
            // Only the copy the index uses matters to snapshots.
            if repo.blob_location(&b.id).is_some_and(|l| l.pack == *id) {
                bad.insert(
                    b.id,
                    format!(
                        "{kind} blob {} in pack {} is damaged",
                        b.id.short(),
                        id.short()
                    ),
                );
            }
        }
    }
    Verified {
        len: bytes.len() as u64,
        errors,
        bad,
    }
}

/// Files under `tree` (paths relative to it) that use a bad blob, with the reason; memoised
/// per tree, so shared subtrees are searched once.
fn affected<'a>(
    repo: &'a Repository,
    tree: Id,
    bad: &'a HashMap<Id, String>,
    memo: &'a mut HashMap<Id, Vec<(PathBuf, String)>>,
) -> BoxFuture<'a, Vec<(PathBuf, String)>> {
    async move {
        if let Some(v) = memo.get(&tree) {
            return v.clone();
        }
        let mut out = Vec::new();
        if let Some(why) = bad.get(&tree) {
            out.push((PathBuf::new(), format!("its directory listing: {why}")));
        } else if let Ok(t) = repo.load_tree(&tree).await {
            for node in &t.nodes {
                let name = PathBuf::from(node.name.as_os_str());
                if let Some(why) = node.content.iter().flatten().find_map(|id| bad.get(id)) {
                    out.push((name.clone(), why.clone()));
                }
                if let Some(sub) = node.subtree {
                    for (p, why) in affected(repo, sub, bad, memo).await {
                        out.push((name.join(p), why));
                    }
                }
            }
        }
        memo.insert(tree, out.clone());
        out
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_partition() {
        assert_eq!(
            "2/7".parse::<ReadData>().unwrap(),
            ReadData::Part { n: 2, t: 7 }
        );
        assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Percent(10.0));
        for bad in ["0/3", "4/3", "x", "0%", "101%", "1/0"] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad}");
        }
        let packs: HashMap<Id, u64> = (0..100u8).map(|i| (Id::of_file(&[i]), 1)).collect();
        let sizes: HashMap<Id, u64> = packs.keys().map(|id| (*id, 1)).collect();
        let mut all: Vec<Id> = (1..=3)
            .flat_map(|n| select_packs(&packs, &sizes, ReadData::Part { n, t: 3 }))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100, "the parts cover every pack exactly once");
        assert_eq!(
            select_packs(&packs, &sizes, ReadData::Percent(10.0)).len(),
            10
        );
        assert_eq!(select_packs(&packs, &sizes, ReadData::All).len(), 100);
    }
}
