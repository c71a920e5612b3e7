//! Check: is everything the snapshots need present and intact?
//!
//! Read top-down:
//! 1. **Index**: every index file opens; every pack a live index names exists with the size its
//!    entries add up to. Packs no index names are reported as notes (prune removes them).
//! 2. **Snapshots**: every snapshot opens; walking its trees (each distinct tree once), every
//!    tree loads and every file's blobs are in the index as data blobs.
//! 3. **Data** (`read_data`): the chosen packs are downloaded; each must hash to its name, have
//!    a header that matches the index, and every blob must open and hash to its id.
//! 4. **Blame**: blobs found bad in step 3 are traced to every snapshot and file that uses
//!    them, so the report says which files a damaged pack costs.
//!
//! Problems are collected, not fatal: one run reports everything it can see.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Objects named one by one in a note before the rest are only counted.
const NAMED: usize = 20;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::pack::{pack_file_len, read_pack, BlobType, PackedBlob};
use crate::format::snapshot::SnapshotEntry;
use crate::format::tree::NodeType;
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::cache::LastCheck;
use crate::repository::{FileKind, LockNeed, Repository};
use crate::repository::{IndexEvent, LoadIndex};
use crate::walk::{find_path, walk_unique_trees};

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

/// What [`check`] verifies beyond the structure.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Which packs to download and verify blob by blob.
    pub read_data: ReadData,
}

/// What a check error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damaged {
    /// An index file that cannot be read.
    IndexFile,
    /// A pack: missing, the wrong size, or damaged.
    Pack,
    /// A snapshot file that cannot be read.
    Snapshot,
    /// A tree (directory listing) a snapshot needs.
    Tree,
    /// A data blob a file needs.
    Blob,
    /// A file in a snapshot that a damaged blob belongs to.
    File,
}

/// One piece of damage: something a snapshot needs is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckError {
    /// What kind of object is damaged.
    pub kind: Damaged,
    /// The damaged object's id (for [`Damaged::File`], the snapshot's).
    pub id: Id,
    /// The whole finding in words, naming snapshots, paths and packs.
    pub message: String,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Here, not beside [`LastCheck`]: the cache stores what a check found without knowing what a
/// check is.
impl LastCheck {
    /// What `report` says, as of now.
    pub fn of(report: &CheckReport) -> LastCheck {
        LastCheck {
            time: chrono::Utc::now(),
            errors: report.errors.len() as u64,
            first_error: report.errors.first().map(|e| e.to_string()),
            snapshots: report.snapshots,
            packs: report.packs,
            packs_read: report.packs_read,
        }
    }
}

fn damage(kind: Damaged, id: Id, message: String) -> CheckError {
    CheckError { kind, id, message }
}

/// What check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Damage: something a snapshot needs is missing or wrong.
    pub errors: Vec<CheckError>,
    /// Harmless findings (e.g. packs only prune will remove).
    pub notes: Vec<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct trees walked.
    pub trees: u64,
    /// Index files read.
    pub index_files: u64,
    /// Packs on storage.
    pub packs: u64,
    /// Packs downloaded and verified.
    pub packs_read: u64,
    /// Bytes downloaded.
    pub bytes_read: u64,
}

impl CheckReport {
    /// No damage was found (notes do not count).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the repository under an exclusive lock (see the module docs for the steps); problems are
/// collected in the report, not returned as errors.
pub async fn check(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    // Exclusive, as restic's check: nothing changes while it looks. With the handle's
    // `no_lock`, results may be off while a prune runs.
    repo.locked(LockNeed::ReadAll, |_| check_unlocked(repo, opts, progress))
        .await
}

async fn check_unlocked(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let mut r = CheckReport::default();

    // 1. Index: streamed into the in-memory table, keeping of each pack only the length its
    // entries add up to. Blob lists are read again later for the packs whose data is read.
    let ids = repo.list(FileKind::Index).await?;
    progress.phase(Phase::CheckIndex);
    progress.total(ids.len() as u64, 0, true);
    let listed = ids.clone();
    // The table built when the repository was opened stands when these same files were
    // there: a second one would double check's peak memory.
    let build = !repo.index_built_from(&ids);
    let mut packs: HashMap<Id, u64> = HashMap::new();
    // Every index file that cannot be read is reported, whatever the reason.
    let how = LoadIndex {
        build,
        give_up: |_| false,
    };
    let loaded = repo
        .load_live_index(ids, how, |event| match event {
            IndexEvent::Loaded(f) => {
                progress.advance(1, 0);
                for p in &f.packs {
                    packs.entry(p.id).or_insert_with(|| pack_file_len(&p.blobs));
                }
            }
            IndexEvent::Unreadable => progress.advance(1, 0),
            IndexEvent::Restart => packs.clear(),
        })
        .await?;
    r.index_files = (listed.len() - loaded.unreadable.len()) as u64;
    let unreadable: HashSet<Id> = loaded.unreadable.iter().map(|(id, _)| *id).collect();
    for (id, e) in &loaded.unreadable {
        if loaded.superseded.contains(id) {
            // Already replaced (an interrupted repair or prune): nothing reads it any more.
            r.notes.push(format!(
                "index file {} cannot be read but is superseded; prune removes it",
                id.short()
            ));
        } else {
            r.errors.push(damage(
                Damaged::IndexFile,
                *id,
                format!(
                    "index file {}: {e} (`hoard repair index` rebuilds the index)",
                    id.short()
                ),
            ));
        }
    }
    for id in listed
        .iter()
        .filter(|id| loaded.superseded.contains(id) && !unreadable.contains(id))
    {
        r.notes.push(format!(
            "index file {} is superseded; prune removes it",
            id.short()
        ));
    }
    let live_files = loaded.live().to_vec();
    if build {
        repo.install_index(loaded);
    }
    let on_storage: HashMap<Id, u64> = repo.list_sizes(FileKind::Pack).await?.into_iter().collect();
    r.packs = on_storage.len() as u64;
    let mut missing_packs: HashSet<Id> = HashSet::new();
    let mut sorted_packs: Vec<&Id> = packs.keys().collect();
    sorted_packs.sort();
    for id in sorted_packs {
        let expected = packs[id];
        match on_storage.get(id) {
            None => {
                missing_packs.insert(*id);
                r.errors.push(damage(
                    Damaged::Pack,
                    *id,
                    format!("pack {} is indexed but missing", id.short()),
                ));
            }
            Some(size) if *size != expected => r.errors.push(damage(
                Damaged::Pack,
                *id,
                format!(
                    "pack {} has {size} bytes, its index entries add up to {expected}",
                    id.short()
                ),
            )),
            Some(_) => {}
        }
    }
    let mut unreferenced: Vec<String> = on_storage
        .keys()
        .filter(|id| !packs.contains_key(id))
        .map(Id::short)
        .collect();
    if !unreferenced.is_empty() {
        unreferenced.sort();
        let n = unreferenced.len();
        let shown = unreferenced
            .iter()
            .take(NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if n > NAMED {
            format!(" and {} more", n - NAMED)
        } else {
            String::new()
        };
        r.notes.push(format!(
            "{n} packs are not in any index ({shown}{more}; left by an interrupted backup or prune, or planted); prune removes them"
        ));
    }

    // Key files that cannot be used hide nothing, but someone put them there.
    for k in crate::repository::keys::list_keys(repo).await? {
        if let Some(why) = k.unusable {
            r.notes.push(format!(
                "key file {} cannot be used: {why}; `hoard key remove {}` removes it",
                k.id.short(),
                k.id.short()
            ));
        }
    }

    // 2. Snapshots.
    let mut snapshots: Vec<SnapshotEntry> = Vec::new();
    for id in repo.list(FileKind::Snapshot).await? {
        match repo.load_doc(FileKind::Snapshot, &id).await {
            Ok(snapshot) => snapshots.push(SnapshotEntry { id, snapshot }),
            Err(e) => r.errors.push(damage(
                Damaged::Snapshot,
                id,
                format!("snapshot {}: {e}", id.short()),
            )),
        }
    }
    r.snapshots = snapshots.len() as u64;
    let roots: Vec<(Id, Id)> = snapshots.iter().map(|s| (s.id, s.snapshot.tree)).collect();
    let mut trees = 0u64;
    let mut errors = Vec::new();
    progress.phase(Phase::CheckSnapshots);
    progress.total(roots.len() as u64, 0, true);
    walk_unique_trees(repo, &roots, progress, |snap, dir, tree_id, tree| {
        trees += 1;
        let tree = match tree {
            Ok(t) => t,
            Err(e) => {
                errors.push(damage(
                    Damaged::Tree,
                    *tree_id,
                    format!(
                        "snapshot {}: directory {}: tree {} {}",
                        snap.short(),
                        dir.display(),
                        tree_id.short(),
                        short_error(&e)
                    ),
                ));
                return Ok(());
            }
        };
        for node in &tree.nodes {
            let path = dir.join(node.name.as_os_str());
            if node.node_type == NodeType::Dir && node.subtree.is_none() {
                errors.push(damage(
                    Damaged::Tree,
                    *tree_id,
                    format!(
                        "snapshot {}: {}: directory without a tree",
                        snap.short(),
                        path.display()
                    ),
                ));
            }
            for id in node.content.iter().flatten() {
                let problem = match repo.blob_location(id) {
                    None => Some("is not in the index".to_string()),
                    Some(loc) if loc.blob.blob_type != BlobType::Data => {
                        Some("is indexed as a tree".to_string())
                    }
                    Some(loc) if missing_packs.contains(&loc.pack) => {
                        Some(format!("is in missing pack {}", loc.pack.short()))
                    }
                    Some(_) => None,
                };
                if let Some(p) = problem {
                    errors.push(damage(
                        Damaged::Blob,
                        *id,
                        format!(
                            "snapshot {}: {}: data blob {} {p}",
                            snap.short(),
                            path.display(),
                            id.short()
                        ),
                    ));
                }
            }
        }
        Ok(())
    })
    .await?;
    r.trees = trees;
    r.errors.extend(errors);
    // Every path a snapshot was made of must be found in its tree, as restore and dump look
    // for it (trees that failed to load were reported above).
    for s in &snapshots {
        // A path that was not UTF-8 is stored lossily and cannot be looked up by name.
        for p in s.snapshot.paths.iter().filter(|p| !p.contains('\u{FFFD}')) {
            match find_path(repo, s.snapshot.tree, p).await {
                Ok(_) => {}
                Err(Error::PathNotInSnapshot(_)) => r.errors.push(damage(
                    Damaged::Snapshot,
                    s.id,
                    format!(
                        "snapshot {}: {p}, one of the paths it was made of, is not in its tree",
                        s.id.short()
                    ),
                )),
                Err(_) => {}
            }
        }
    }

    // 3. Data. A pack longer than its index entries say was reported above; it is not read
    // whole, since a planted file under a pack's name may be any size.
    let selected: Vec<Id> = select_packs(&packs, &on_storage, opts.read_data)
        .into_iter()
        .filter(|id| on_storage[id] <= packs[id])
        .collect();
    let indexed = blob_lists(repo, &live_files, &selected, &mut r.errors).await?;
    if !selected.is_empty() {
        progress.phase(Phase::CheckData);
        let bytes = selected.iter().map(|id| on_storage[id]).sum();
        progress.total(selected.len() as u64, bytes, true);
    }
    let mut bad_blobs: HashMap<Id, String> = HashMap::new();
    let mut reads = futures::stream::iter(selected)
        .map(|id| async move { (id, repo.operator().read(&FileKind::Pack.path(&id)).await) })
        .buffer_unordered(2);
    while let Some((id, read)) = reads.next().await {
        let bytes = match read {
            Ok(b) => b.to_vec(),
            Err(e) => {
                r.errors.push(damage(
                    Damaged::Pack,
                    id,
                    format!("pack {}: cannot read: {e}", id.short()),
                ));
                progress.advance(1, 0);
                continue;
            }
        };
        r.packs_read += 1;
        r.bytes_read += bytes.len() as u64;
        progress.advance(1, bytes.len() as u64);
        verify_pack(
            repo,
            &id,
            &bytes,
            indexed.get(&id).map_or(&[], Vec::as_slice),
            &mut r.errors,
            &mut bad_blobs,
        );
    }

    // 4. Blame.
    if !bad_blobs.is_empty() {
        let mut memo = HashMap::new();
        for s in &snapshots {
            let files = affected(repo, s.snapshot.tree, &bad_blobs, &mut memo).await;
            for (path, why) in files {
                r.errors.push(damage(
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
    Ok(r)
}

fn short_error(e: &Error) -> String {
    match e {
        Error::BlobNotInIndex(_) => "is not in the index".into(),
        Error::Storage { .. } => format!("cannot be read: {e}"),
        _ => format!("is damaged: {e}"),
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

fn select_packs<T>(
    packs: &HashMap<Id, T>,
    on_storage: &HashMap<Id, u64>,
    how: ReadData,
) -> Vec<Id> {
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

/// Checks one downloaded pack against its name, its header and the index.
fn verify_pack(
    repo: &Repository,
    id: &Id,
    bytes: &[u8],
    indexed: &[PackedBlob],
    errors: &mut Vec<CheckError>,
    bad: &mut HashMap<Id, String>,
) {
    let what = format!("pack {}", id.short());
    let mut push = |message: String| errors.push(damage(Damaged::Pack, *id, message));
    if Id::of_file(bytes) != *id {
        push(format!(
            "{what}: content does not match its name (damaged on storage)"
        ));
    }
    match read_pack(repo.key(), bytes, &what) {
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
    for b in indexed {
        let loc = crate::repository::index::BlobLocation {
            pack: *id,
            blob: *b,
        };
        let range = b.offset as usize..b.offset as usize + b.length as usize;
        let result = match bytes.get(range) {
            Some(sealed) => repo.decode_located_blob(&loc, sealed).map(|_| ()),
            None => Err(Error::corrupt(what.clone(), "shorter than the index says")),
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
        let packs: HashMap<Id, Vec<PackedBlob>> =
            (0..100u8).map(|i| (Id::of_file(&[i]), vec![])).collect();
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
