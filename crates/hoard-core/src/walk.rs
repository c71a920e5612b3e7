//! Reading snapshots back: a depth-first walk over a snapshot's trees (for `ls`) and the
//! statistics `stats` reports.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeType, Tree};
use crate::id::Id;
use crate::progress::Progress;
use crate::repository::Repository;

/// What a path in a snapshot names.
#[derive(Debug, Clone)]
pub enum Found {
    /// The snapshot's root directory.
    Root(Id),
    /// An entry below it.
    Node(Box<Node>),
}

/// Looks up `path` (absolute in the snapshot, `/` for the root). Bytes, not text: names in
/// a snapshot need not be UTF-8.
pub async fn find_path(repo: &Repository, root: Id, path: impl AsRef<[u8]>) -> Result<Found> {
    let path = path.as_ref();
    let missing = || Error::PathNotInSnapshot(String::from_utf8_lossy(path).into_owned());
    let mut current = Found::Root(root);
    for part in path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
    {
        let tree_id = match &current {
            Found::Root(id) => *id,
            Found::Node(n) => match (n.node_type, n.subtree) {
                (NodeType::Dir, Some(id)) => id,
                _ => return Err(missing()),
            },
        };
        let tree = repo.load_tree(&tree_id).await?;
        let node = tree.find(part).ok_or_else(missing)?;
        current = Found::Node(Box::new(node.clone()));
    }
    Ok(current)
}

/// Calls `visit` for every node below `tree`, parents before children, with its snapshot path.
pub async fn walk_tree<F>(repo: &Repository, tree: Id, mut visit: F) -> Result<()>
where
    F: FnMut(&Path, &Node) -> Result<()>,
{
    let mut stack: Vec<(PathBuf, Id)> = vec![(PathBuf::from("/"), tree)];
    while let Some((dir, id)) = stack.pop() {
        let t = repo.load_tree(&id).await?;
        let mut subdirs = Vec::new();
        for node in &t.nodes {
            let path = dir.join(node.name.as_os_str());
            visit(&path, node)?;
            if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                subdirs.push((path, sub));
            }
        }
        // Reverse so that the walk visits directories in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Visits every tree reachable from the roots once: a subtree shared by several snapshots or
/// directories is loaded the first time only, so walking hundreds of snapshots of a mostly
/// unchanged tree costs little more than walking one. `visit` gets the root it was reached
/// from first, the directory's path there, and the tree or the error loading it (the walk
/// goes on past broken trees; the visitor decides whether that is fatal). `progress` advances
/// by one item per root walked.
pub async fn walk_unique_trees<F>(
    repo: &Repository,
    roots: &[(Id, Id)],
    progress: &dyn Progress,
    mut visit: F,
) -> Result<()>
where
    F: FnMut(&Id, &Path, &Id, Result<Tree>) -> Result<()>,
{
    let mut seen: HashSet<Id> = HashSet::new();
    for (root, tree) in roots {
        let mut stack: Vec<(PathBuf, Id)> = vec![(PathBuf::from("/"), *tree)];
        while let Some((dir, id)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let loaded = repo.load_tree(&id).await;
            if let Ok(t) = &loaded {
                for node in t.nodes.iter().rev() {
                    if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                        stack.push((dir.join(node.name.as_os_str()), sub));
                    }
                }
            }
            visit(root, &dir, &id, loaded)?;
        }
        progress.advance(1, 0);
    }
    Ok(())
}

/// What `stats` reports about a set of snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoStats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Sum of file sizes over the snapshots, as a restore would write them.
    pub total_restore_size: u64,
    /// Files in them (counted once per snapshot).
    pub total_file_count: u64,
    /// Plaintext of the distinct blobs the snapshots use.
    pub total_uncompressed_size: u64,
    /// Bytes those blobs take in packs.
    pub total_size: u64,
    /// Distinct blobs they use.
    pub total_blob_count: u64,
    /// Restore size divided by the distinct plaintext.
    pub dedup_ratio: f64,
    /// Distinct plaintext divided by stored bytes.
    pub compression_ratio: f64,
}

/// Statistics over the given snapshots.
pub async fn stats(repo: &Repository, trees: &[Id]) -> Result<RepoStats> {
    let mut s = RepoStats {
        snapshots: trees.len() as u64,
        ..Default::default()
    };
    let mut seen: HashSet<Id> = HashSet::new();
    for tree in trees {
        let mut blobs: Vec<Id> = vec![*tree];
        walk_tree(repo, *tree, |_, n| {
            if n.node_type == NodeType::File {
                s.total_file_count += 1;
                s.total_restore_size += n.size;
            }
            blobs.extend(n.content.iter().flatten().copied());
            blobs.extend(n.subtree);
            Ok(())
        })
        .await?;
        for id in blobs {
            if seen.insert(id) {
                let loc = repo.blob_location(&id).ok_or(Error::BlobNotInIndex(id))?;
                s.total_blob_count += 1;
                s.total_uncompressed_size += loc.blob.raw_length as u64;
                s.total_size += loc.blob.length as u64;
            }
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    s.dedup_ratio = ratio(s.total_restore_size, s.total_uncompressed_size);
    s.compression_ratio = ratio(s.total_uncompressed_size, s.total_size);
    Ok(s)
}
