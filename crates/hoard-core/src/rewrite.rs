//! Removing files from existing snapshots (restic's `rewrite --exclude`): what should never
//! have been backed up (a key, a dump with personal data) goes out of new copies of the
//! snapshots, and with `forget` the originals go; a prune then frees the data.
//!
//! Order as everywhere: the new trees and their index, then the new snapshot (tagged
//! `rewrite`, naming its original), then the original's removal. A crash leaves both
//! snapshots, never neither.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use globset::GlobSet;

use crate::backup::counters::Counters;
use crate::backup::saver::{BlobSaver, IndexMode, SaverHandle};
use crate::error::{Error, Result};
use crate::format::snapshot::SnapshotEntry;
use crate::format::tree::{NodeType, Tree};
use crate::id::Id;
use crate::patterns::{compile_patterns, compile_patterns_nocase};
use crate::repository::{FileKind, LockNeed, Repository};

/// What to remove, and whether to keep the originals.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// Glob patterns over snapshot paths, as backup's `--exclude`.
    pub exclude: Vec<String>,
    /// As `exclude`, ignoring case.
    pub iexclude: Vec<String>,
    /// Remove each original once its rewritten snapshot is saved.
    pub forget: bool,
    /// Say what would change; write nothing.
    pub dry_run: bool,
}

/// One snapshot that changed (or would).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rewritten {
    /// The original snapshot.
    pub original: Id,
    /// The new one (zero in a dry run).
    pub new: Id,
    /// Snapshot paths that were removed.
    pub removed: Vec<PathBuf>,
}

/// Rewrites `snapshots` without what `opts` excludes; snapshots with nothing to remove are
/// left as they are.
pub async fn rewrite(
    repo: &Repository,
    snapshots: &[SnapshotEntry],
    opts: &RewriteOptions,
) -> Result<Vec<Rewritten>> {
    let mut sets = Vec::new();
    if !opts.exclude.is_empty() {
        sets.push(compile_patterns(&opts.exclude, "exclude pattern")?);
    }
    if !opts.iexclude.is_empty() {
        sets.push(compile_patterns_nocase(&opts.iexclude, "iexclude pattern")?);
    }
    if sets.is_empty() {
        return Err(Error::invalid(
            "rewrite",
            "nothing to remove: give --exclude or --iexclude",
        ));
    }
    repo.locked(LockNeed::Append, |lease| async move {
        let saver = BlobSaver::new(repo, Arc::new(Counters::default()), IndexMode::Write, 1, 2);
        let handle = saver
            .handle()
            .ok_or_else(|| Error::Task("saver closed".into()))?;
        let ctx = Arc::new(Ctx {
            repo: repo.clone(),
            saver: handle,
            exclude: sets,
            dry_run: opts.dry_run,
        });
        let mut plans = Vec::new();
        let walked = async {
            for s in snapshots {
                let mut removed = Vec::new();
                let root = ctx
                    .clone()
                    .tree(s.snapshot.tree, PathBuf::from("/"), &mut removed)
                    .await?;
                if !removed.is_empty() {
                    plans.push((s, root, removed));
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        drop(ctx);
        saver.finish().await?;
        walked?;
        // Every new snapshot is checked before the first is written.
        let mut ready = Vec::new();
        for (s, root, removed) in plans {
            let mut snapshot = s.snapshot.clone();
            snapshot.tree = root;
            snapshot.original = Some(s.snapshot.original.unwrap_or(s.id));
            // A backed-up path that is gone entirely is no longer claimed.
            snapshot
                .paths
                .retain(|p| !removed.iter().any(|r| Path::new(p).starts_with(r)));
            if snapshot.paths.is_empty() {
                return Err(Error::invalid(
                    "rewrite",
                    format!(
                        "the patterns remove everything snapshot {} holds; use forget for that",
                        s.short_id()
                    ),
                ));
            }
            if !snapshot.tags.iter().any(|t| t == "rewrite") {
                snapshot.tags.push("rewrite".into());
            }
            ready.push((s, snapshot, removed));
        }
        let mut done = Vec::new();
        for (s, snapshot, removed) in ready {
            let new = if opts.dry_run {
                Id::default()
            } else {
                lease.ensure_valid().await?;
                let new = repo.save_doc(FileKind::Snapshot, &snapshot).await?;
                if opts.forget {
                    repo.delete_file(FileKind::Snapshot, &s.id).await?;
                }
                tracing::info!(original = %s.id.short(), new = %new.short(), "snapshot rewritten");
                new
            };
            done.push(Rewritten {
                original: s.id,
                new,
                removed,
            });
        }
        Ok(done)
    })
    .await
}

struct Ctx {
    repo: Repository,
    saver: SaverHandle,
    exclude: Vec<GlobSet>,
    dry_run: bool,
}

impl Ctx {
    /// The tree `id` at snapshot path `path` without the excluded entries; the same id when
    /// nothing below is excluded.
    fn tree<'a>(
        self: Arc<Self>,
        id: Id,
        path: PathBuf,
        removed: &'a mut Vec<PathBuf>,
    ) -> BoxFuture<'a, Result<Id>> {
        async move {
            let tree = self.repo.load_tree(&id).await?;
            let before = removed.len();
            let mut nodes = Vec::with_capacity(tree.nodes.len());
            for mut node in tree.nodes {
                let p = path.join(node.name.as_os_str());
                if self.exclude.iter().any(|g| g.is_match(&p)) {
                    removed.push(p);
                    continue;
                }
                if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                    node.subtree = Some(self.clone().tree(sub, p, removed).await?);
                }
                nodes.push(node);
            }
            if removed.len() == before {
                return Ok(id);
            }
            let tree = Tree { nodes };
            if self.dry_run {
                return Ok(self.repo.key().blob_id(&tree.to_bytes()));
            }
            self.saver.save_tree(&tree).await
        }
        .boxed()
    }
}
