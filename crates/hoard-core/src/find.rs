//! Finding files across snapshots (restic's `find`): by name or path pattern, size and
//! modification time, without restoring anything.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::format::snapshot::SnapshotEntry;
use crate::format::tree::{Node, NodeType};
use crate::repository::Repository;

/// What to look for; every criterion given must hold.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    /// Glob patterns; one without `/` matches a name, one with `/` a path (from the root
    /// when it starts with `/`, else at any depth). A node matches when any pattern does.
    pub patterns: Vec<String>,
    /// Match patterns without regard to case.
    pub ignore_case: bool,
    /// Only entries modified at or after this time.
    pub newer_than: Option<DateTime<Utc>>,
    /// Only entries modified at or before this time.
    pub older_than: Option<DateTime<Utc>>,
    /// Only files of at least this many bytes.
    pub min_size: Option<u64>,
    /// Only files of at most this many bytes.
    pub max_size: Option<u64>,
}

/// One entry found: its path in the snapshot and its node.
#[derive(Debug, Clone)]
pub struct Found {
    /// The path in the snapshot.
    pub path: PathBuf,
    /// Its metadata (content ids and subtree included).
    pub node: Node,
}

/// The compiled criteria.
struct Matcher {
    names: GlobSet,
    paths: GlobSet,
    opts: FindOptions,
}

impl Matcher {
    fn new(opts: &FindOptions) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in &opts.patterns {
            let (set, glob) = if !p.contains('/') {
                (&mut names, p.clone())
            } else if p.starts_with('/') {
                (&mut paths, p.clone())
            } else {
                (&mut paths, format!("**/{p}"))
            };
            let g = GlobBuilder::new(&glob)
                .literal_separator(true)
                .case_insensitive(opts.ignore_case)
                .build()
                .map_err(|e| Error::invalid("find pattern", format!("{p:?}: {e}")))?;
            set.add(g);
        }
        Ok(Matcher {
            names: names
                .build()
                .map_err(|e| Error::invalid_by("find pattern", e))?,
            paths: paths
                .build()
                .map_err(|e| Error::invalid_by("find pattern", e))?,
            opts: opts.clone(),
        })
    }

    fn matches(&self, path: &std::path::Path, node: &Node) -> bool {
        let o = &self.opts;
        let named = o.patterns.is_empty()
            || self.names.is_match(node.name.as_os_str())
            || self.paths.is_match(path);
        let mtime = DateTime::from_timestamp_nanos(node.mtime);
        let is_file = node.node_type == NodeType::File;
        named
            && o.newer_than.is_none_or(|t| mtime >= t)
            && o.older_than.is_none_or(|t| mtime <= t)
            && o.min_size.is_none_or(|m| is_file && node.size >= m)
            && o.max_size.is_none_or(|m| is_file && node.size <= m)
    }
}

/// The entries of `snapshot` that match `opts`, in path order.
pub async fn find(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    opts: &FindOptions,
) -> Result<Vec<Found>> {
    let matcher = Matcher::new(opts)?;
    let mut found = Vec::new();
    crate::walk::walk_tree(repo, snapshot.snapshot.tree, |path, node| {
        if matcher.matches(path, node) {
            found.push(Found {
                path: path.to_path_buf(),
                node: node.clone(),
            });
        }
        Ok(())
    })
    .await?;
    Ok(found)
}
