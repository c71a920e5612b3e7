//! Diff between two snapshots: which paths were added (`+`), removed (`-`), changed in content
//! (`M`), changed in type (`T`), or changed in metadata only (`U`), as restic prints them.
//! Subtrees with the same id are identical and skipped, so the cost follows the size of the
//! change, not of the snapshots.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::format::tree::{Node, NodeType, Tree};
use crate::id::Id;
use crate::repository::Repository;

/// One path that differs between the two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Its path in the snapshots.
    pub path: String,
    /// `+` added, `-` removed, `M` content changed, `T` type changed, `U` metadata only (as restic
    /// prints them).
    pub modifier: String,
}

/// Counts over the whole diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    /// Files present in both whose content or metadata differ.
    pub changed_files: u64,
    /// Files only in the second snapshot.
    pub added_files: u64,
    /// Directories only in the second snapshot.
    pub added_dirs: u64,
    /// Other entries (links, devices, …) only in the second snapshot.
    pub added_others: u64,
    /// Files only in the first snapshot.
    pub removed_files: u64,
    /// Directories only in the first snapshot.
    pub removed_dirs: u64,
    /// Other entries only in the first snapshot.
    pub removed_others: u64,
    /// Sizes of added files and of the new versions of changed files.
    pub added_bytes: u64,
    /// Sizes of removed files and of the old versions of changed files.
    pub removed_bytes: u64,
}

/// Compares the trees of two snapshots (`a` old, `b` new). Changes come in path order.
pub async fn diff(repo: &Repository, a: Id, b: Id) -> Result<(Vec<Change>, DiffStats)> {
    let mut changes = Vec::new();
    let mut stats = DiffStats::default();
    let mut stack: Vec<(PathBuf, Option<Id>, Option<Id>)> =
        vec![(PathBuf::from("/"), Some(a), Some(b))];
    while let Some((dir, ta, tb)) = stack.pop() {
        if ta == tb {
            continue;
        }
        let load = |t: Option<Id>| async move {
            match t {
                Some(id) => repo.load_tree(&id).await,
                None => Ok(Tree::default()),
            }
        };
        let (old, new) = (load(ta).await?, load(tb).await?);
        let mut subdirs = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.nodes.len() || j < new.nodes.len() {
            let (o, n) = match (old.nodes.get(i), new.nodes.get(j)) {
                (Some(o), Some(n)) if o.name == n.name => {
                    i += 1;
                    j += 1;
                    (Some(o), Some(n))
                }
                (Some(o), Some(n)) if o.name < n.name => {
                    i += 1;
                    (Some(o), None)
                }
                (Some(o), None) => {
                    i += 1;
                    (Some(o), None)
                }
                (_, n) => {
                    j += 1;
                    (None, n)
                }
            };
            let name = o.or(n).map(|x| x.name.as_os_str()).unwrap_or_default();
            let path = dir.join(name);
            let modifier = compare(o, n, &mut stats);
            if let Some(m) = modifier {
                changes.push(Change {
                    path: shown(&path, o.or(n)),
                    modifier: m.into(),
                });
            }
            let sub = |x: Option<&Node>| {
                x.filter(|x| x.node_type == NodeType::Dir)
                    .and_then(|x| x.subtree)
            };
            if sub(o).is_some() || sub(n).is_some() {
                subdirs.push((path, sub(o), sub(n)));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((changes, stats))
}

fn shown(path: &Path, node: Option<&Node>) -> String {
    let mut s = path.to_string_lossy().into_owned();
    if node.is_some_and(|n| n.node_type == NodeType::Dir) {
        s.push('/');
    }
    s
}

fn compare(o: Option<&Node>, n: Option<&Node>, s: &mut DiffStats) -> Option<&'static str> {
    let count = |node: &Node,
                 files: &mut u64,
                 dirs: &mut u64,
                 others: &mut u64,
                 bytes: &mut u64| {
        match node.node_type {
            NodeType::File => {
                *files += 1;
                *bytes += node.size;
            }
            NodeType::Dir => *dirs += 1,
            _ => *others += 1,
        }
    };
    match (o, n) {
        (None, Some(n)) => {
            count(
                n,
                &mut s.added_files,
                &mut s.added_dirs,
                &mut s.added_others,
                &mut s.added_bytes,
            );
            Some("+")
        }
        (Some(o), None) => {
            count(
                o,
                &mut s.removed_files,
                &mut s.removed_dirs,
                &mut s.removed_others,
                &mut s.removed_bytes,
            );
            Some("-")
        }
        (Some(o), Some(n)) if o.node_type != n.node_type => {
            count(
                o,
                &mut s.removed_files,
                &mut s.removed_dirs,
                &mut s.removed_others,
                &mut s.removed_bytes,
            );
            count(
                n,
                &mut s.added_files,
                &mut s.added_dirs,
                &mut s.added_others,
                &mut s.added_bytes,
            );
            Some("T")
        }
        (Some(o), Some(n)) => {
            let content_changed =
                o.content != n.content || o.link_target != n.link_target || o.rdev != n.rdev;
            if content_changed && n.node_type != NodeType::Dir {
                s.changed_files += 1;
                s.added_bytes += n.size;
                s.removed_bytes += o.size;
                return Some("M");
            }
            let meta_changed = o.mode != n.mode
                || o.uid != n.uid
                || o.gid != n.gid
                || o.mtime != n.mtime
                || o.user != n.user
                || o.group != n.group;
            (meta_changed && n.node_type != NodeType::Dir).then_some("U")
        }
        (None, None) => None,
    }
}
