//! `repair snapshots`: snapshots rewritten without what is gone.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::backup::counters::Counters;
use crate::backup::saver::{BlobSaver, IndexMode, SaverHandle};
use crate::error::{Error, Result};
use crate::format::tree::Tree;
use crate::id::Id;
use crate::repository::{FileKind, LockNeed, Repository};
use serde::Serialize;

/// What `repair_snapshots` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSnapshotsStats {
    /// Snapshots looked at.
    pub snapshots: u64,
    /// Snapshots that needed a repair, and the repaired snapshot written for each.
    pub repaired: Vec<(Id, Id)>,
    /// What each repair left out: `snapshot: path: why`.
    pub removed: Vec<String>,
    /// Original snapshots removed (with `forget`).
    pub forgotten: u64,
    /// Snapshots of which nothing could be saved: no repaired snapshot was written (with
    /// `forget`, the original is removed).
    pub unsalvageable: Vec<Id>,
}

/// Options for [`repair_snapshots`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairSnapshotsOptions {
    /// Remove each original snapshot once its repaired one is written.
    pub forget: bool,
    /// Report only; write nothing.
    pub dry_run: bool,
}

/// Rewrites every snapshot whose trees need blobs that are gone (not indexed, or in a missing
/// pack), as restic's `repair snapshots` does: a file with a missing blob is left out, a
/// directory whose listing is missing becomes empty. The repaired snapshot keeps the original's
/// metadata, gains the tag `repaired` and names the original; the original stays unless
/// `forget` is set. Runs under an exclusive lock; writes trees, then the index, then the new
/// snapshot, then removes the original, so a crash leaves at worst both.
pub async fn repair_snapshots(
    repo: &Repository,
    opts: RepairSnapshotsOptions,
) -> Result<RepairSnapshotsStats> {
    repo.locked(LockNeed::Exclusive, |_| repair_snapshots_locked(repo, opts))
        .await
}

async fn repair_snapshots_locked(
    repo: &Repository,
    opts: RepairSnapshotsOptions,
) -> Result<RepairSnapshotsStats> {
    let mut stats = RepairSnapshotsStats::default();
    let on_storage: HashSet<Id> = repo.list(FileKind::Pack).await?.into_iter().collect();
    let present = |id: &Id| {
        repo.blob_location(id)
            .is_some_and(|loc| on_storage.contains(&loc.pack))
    };
    let snapshots = repo.snapshots().await?;
    stats.snapshots = snapshots.len() as u64;
    let counters = Arc::new(Counters::default());
    let saver = BlobSaver::new(repo, counters, IndexMode::Write, 1, 2);
    let handle = saver
        .handle()
        .ok_or_else(|| Error::Task("saver closed".into()))?;
    let mut rewritten: HashMap<Id, Rewrite> = HashMap::new();
    let mut plans = Vec::new();
    let walked = async {
        for s in &snapshots {
            let mut removed = Vec::new();
            let root = rewrite_tree(
                repo,
                &handle,
                &present,
                s.snapshot.tree,
                PathBuf::from("/"),
                &mut rewritten,
                &mut removed,
                opts.dry_run,
            )
            .await?;
            if root != s.snapshot.tree {
                plans.push((s.clone(), root, removed));
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(handle);
    // Trees first, then the index that names them: only then may snapshots point at them.
    saver.finish().await?;
    walked?;
    for (s, root, mut removed) in plans {
        let mut snapshot = s.snapshot.clone();
        snapshot.tree = root;
        snapshot.original = Some(s.id);
        // A path whose directory listings were lost is no longer in the tree: the repaired
        // snapshot does not claim it (check verifies every claimed path). With none left,
        // nothing of the snapshot could be saved. (A dry run wrote no trees to look in.)
        if !opts.dry_run {
            let mut kept = Vec::new();
            for p in snapshot.paths {
                let lossy = p.contains('\u{FFFD}');
                match crate::walk::find_path(repo, root, &p).await {
                    Err(Error::PathNotInSnapshot(_)) if !lossy => removed.push(format!(
                        "{p}: nothing of it is left; dropped from the snapshot's paths"
                    )),
                    Err(e @ Error::Storage { .. }) => return Err(e),
                    _ => kept.push(p),
                }
            }
            snapshot.paths = kept;
            if snapshot.paths.is_empty() {
                stats.removed.extend(
                    removed
                        .into_iter()
                        .map(|r| format!("snapshot {}: {r}", s.id.short())),
                );
                stats.unsalvageable.push(s.id);
                if opts.forget {
                    repo.delete_file(FileKind::Snapshot, &s.id).await?;
                    stats.forgotten += 1;
                }
                continue;
            }
        }
        if !snapshot.tags.iter().any(|t| t == "repaired") {
            snapshot.tags.push("repaired".into());
        }
        stats.removed.extend(
            removed
                .into_iter()
                .map(|r| format!("snapshot {}: {r}", s.id.short())),
        );
        if opts.dry_run {
            stats.repaired.push((s.id, Id::default()));
            continue;
        }
        let new = repo.save_doc(FileKind::Snapshot, &snapshot).await?;
        stats.repaired.push((s.id, new));
        if opts.forget {
            repo.delete_file(FileKind::Snapshot, &s.id).await?;
            stats.forgotten += 1;
        }
    }
    Ok(stats)
}

/// A tree's repaired id (the same id when nothing below it is missing).
type Rewrite = Id;

/// Rewrites one tree without what is missing; returns its (possibly new) id. Shared subtrees
/// are rewritten once.
#[allow(clippy::too_many_arguments)]
fn rewrite_tree<'a>(
    repo: &'a Repository,
    saver: &'a SaverHandle,
    present: &'a (dyn Fn(&Id) -> bool + Sync),
    id: Id,
    path: PathBuf,
    done: &'a mut HashMap<Id, Rewrite>,
    removed: &'a mut Vec<String>,
    dry_run: bool,
) -> futures::future::BoxFuture<'a, Result<Id>> {
    Box::pin(async move {
        if let Some(new) = done.get(&id) {
            return Ok(*new);
        }
        let tree = if present(&id) {
            match repo.load_tree(&id).await {
                Ok(t) => Some(t),
                Err(e @ Error::Storage { .. }) => return Err(e),
                Err(e) => {
                    removed.push(format!(
                        "{}: its listing is damaged ({e}); it is now empty",
                        path.display()
                    ));
                    None
                }
            }
        } else {
            removed.push(format!(
                "{}: its listing is missing; it is now empty",
                path.display()
            ));
            None
        };
        let Some(tree) = tree else {
            let empty = Tree { nodes: Vec::new() };
            let new = if dry_run {
                repo.key().blob_id(&empty.to_bytes())
            } else {
                saver.save_tree(&empty).await?
            };
            done.insert(id, new);
            return Ok(new);
        };
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut changed = false;
        for mut node in tree.nodes {
            let child = path.join(node.name.as_os_str());
            if let Some(sub) = node.subtree {
                let new = rewrite_tree(
                    repo,
                    saver,
                    present,
                    sub,
                    child.clone(),
                    done,
                    removed,
                    dry_run,
                )
                .await?;
                changed |= new != sub;
                node.subtree = Some(new);
            }
            if let Some(missing) = node.content.iter().flatten().find(|b| !present(b)) {
                removed.push(format!(
                    "{}: blob {} is missing; the file is left out",
                    child.display(),
                    missing.short()
                ));
                changed = true;
                continue;
            }
            nodes.push(node);
        }
        let new = if !changed {
            id
        } else {
            let tree = Tree { nodes };
            if dry_run {
                repo.key().blob_id(&tree.to_bytes())
            } else {
                saver.save_tree(&tree).await?
            }
        };
        done.insert(id, new);
        Ok(new)
    })
}
