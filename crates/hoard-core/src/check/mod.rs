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
//!
//! Steps 1 and 2 are here, 3 and 4 in `data`.

use std::collections::{HashMap, HashSet};

/// Objects named one by one in a note before the rest are only counted.
const NAMED: usize = 20;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::pack::BlobType;
use crate::format::snapshot::SnapshotEntry;
use crate::format::tree::NodeType;
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::cache::LastCheck;
use crate::repository::{FileKind, LockNeed, Repository};
use crate::repository::{IndexEvent, LoadIndex};
use crate::walk::{find_path, walk_unique_trees};

mod data;
pub use data::ReadData;

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
            IndexEvent::Loaded(listed) => {
                progress.advance(1, 0);
                for &(id, len) in listed {
                    packs.entry(id).or_insert(len);
                }
            }
            IndexEvent::Unreadable => progress.advance(1, 0),
            IndexEvent::Restart => packs.clear(),
        })
        .await?;
    r.index_files = (loaded.listed().len() - loaded.unreadable.len()) as u64;
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
    for id in loaded
        .listed()
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

    // 3. Data, and 4. Blame.
    let bad_blobs = data::read_packs(
        repo,
        &packs,
        &on_storage,
        &live_files,
        opts.read_data,
        progress,
        &mut r,
    )
    .await?;
    data::blame(repo, &snapshots, &bad_blobs, &mut r.errors).await;
    Ok(r)
}

fn short_error(e: &Error) -> String {
    match e {
        Error::BlobNotInIndex(_) => "is not in the index".into(),
        Error::Storage { .. } => format!("cannot be read: {e}"),
        _ => format!("is damaged: {e}"),
    }
}
