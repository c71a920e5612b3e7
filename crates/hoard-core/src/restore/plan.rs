//! Step 1 of a restore: walk the snapshot's trees and decide what to create where. Names are
//! checked here, so that a damaged or hostile tree cannot write outside the target.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::GlobSet;

use super::RestoreOptions;
use crate::error::{Error, Result};
use crate::format::snapshot::SnapshotEntry;
use crate::format::tree::{Node, NodeType};
use crate::id::Id;
use crate::repository::Repository;
use crate::walk::{find_path, Found};

#[derive(Clone)]
pub(super) struct PlannedFile {
    pub(super) dest: PathBuf,
    pub(super) node: Node,
    /// Blob locations in file order with their offsets.
    pub(super) blobs: Vec<(Id, u64)>,
}

#[derive(Default)]
pub(super) struct Plan {
    pub(super) dirs: Vec<(PathBuf, Node)>,
    pub(super) files: Vec<PlannedFile>,
    /// (link path, target path) for hard links to a file restored earlier.
    pub(super) hardlinks: Vec<(PathBuf, PathBuf)>,
    pub(super) others: Vec<(PathBuf, Node)>,
    /// Directories restored with everything in them (not only the parts an include pattern
    /// picked): `--delete` may remove what else is in them.
    /// (target directory, its path in the snapshot).
    pub(super) whole_dirs: Vec<(PathBuf, PathBuf)>,
    /// The include and exclude patterns, which `--delete` obeys too.
    pub(super) filter: Filter,
}

/// Which snapshot paths a restore takes: an include match takes the entry and everything
/// below it; an exclude match leaves out the entry and everything below it.
#[derive(Default)]
pub(super) struct Filter {
    include: Vec<GlobSet>,
    exclude: Vec<GlobSet>,
}

impl Filter {
    pub(super) fn new(opts: &RestoreOptions) -> Result<Self> {
        use crate::patterns::{compile_patterns, compile_patterns_nocase};
        let sets = |plain: &[String], nocase: &[String], what| -> Result<Vec<GlobSet>> {
            let mut v = Vec::new();
            if !plain.is_empty() {
                v.push(compile_patterns(plain, what)?);
            }
            if !nocase.is_empty() {
                v.push(compile_patterns_nocase(nocase, what)?);
            }
            Ok(v)
        };
        Ok(Filter {
            include: sets(&opts.include, &opts.iinclude, "include pattern")?,
            exclude: sets(&opts.exclude, &opts.iexclude, "exclude pattern")?,
        })
    }

    fn everything(&self) -> bool {
        self.include.is_empty()
    }

    fn included(&self, p: &Path) -> bool {
        self.include.iter().any(|g| g.is_match(p))
    }

    pub(super) fn excluded(&self, p: &Path) -> bool {
        self.exclude.iter().any(|g| g.is_match(p))
    }
}

fn safe_name(n: &Node) -> Result<&std::ffi::OsStr> {
    let b = &n.name.0;
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::corrupt(
            "tree",
            format!("unsafe file name {:?}", n.name),
        ));
    }
    Ok(std::ffi::OsStr::from_bytes(b))
}

impl Plan {
    /// Whether there is nothing to create.
    pub(super) fn is_empty(&self) -> bool {
        self.dirs.is_empty()
            && self.files.is_empty()
            && self.hardlinks.is_empty()
            && self.others.is_empty()
    }
}

/// Plans the restore `opts` asks for: the whole snapshot below the target by absolute path,
/// or one path of it (a directory's contents, or one entry) straight into the target.
pub(super) async fn plan(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    opts: &RestoreOptions,
) -> Result<Plan> {
    let filter = Filter::new(opts)?;
    let mut plan = Plan::default();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let everything = filter.everything();
    let root = snapshot.snapshot.tree;
    let source = opts
        .source_path
        .as_deref()
        .map(|p| format!("/{}", p.trim_matches('/')))
        .filter(|p| p != "/");
    let found = match &source {
        Some(p) => find_path(repo, root, p).await?,
        None => Found::Root(root),
    };
    // Where planning starts: a tree whose entries go into the target, or one entry.
    let (start, sp) = match found {
        Found::Root(tree) => (Ok(tree), PathBuf::from("/")),
        Found::Node(node) => {
            let sp = PathBuf::from(source.as_deref().unwrap_or("/"));
            match (node.node_type, node.subtree) {
                (NodeType::Dir, Some(tree)) => (Ok(tree), sp),
                _ => (Err(node), sp),
            }
        }
    };
    let (include_set, dest) = (&filter, &opts.target);
    match start {
        Ok(tree) => {
            if everything {
                plan.whole_dirs.push((dest.clone(), sp.clone()));
            }
            plan_tree(
                repo,
                tree,
                dest,
                &sp,
                include_set,
                everything,
                &mut plan,
                &mut links,
            )
            .await?
        }
        Err(node) => {
            let dest = dest.join(safe_name(&node)?);
            plan_node(
                repo,
                *node,
                dest,
                &sp,
                include_set,
                everything,
                &mut plan,
                &mut links,
            )
            .await?
        }
    };
    plan.filter = filter;
    Ok(plan)
}

/// Plans every entry of `tree`, restored below `dest`; `snap_path` is the tree's path in the
/// snapshot. Returns whether anything below was selected.
#[allow(clippy::too_many_arguments)]
fn plan_tree<'a>(
    repo: &'a Repository,
    tree: Id,
    dest: &'a Path,
    snap_path: &'a Path,
    include: &'a Filter,
    selected: bool,
    plan: &'a mut Plan,
    links: &'a mut HashMap<(u64, u64), PathBuf>,
) -> futures::future::BoxFuture<'a, Result<bool>> {
    Box::pin(async move {
        let tree = repo.load_tree(&tree).await?;
        let mut any = false;
        for node in tree.nodes {
            let name = safe_name(&node)?;
            let d = dest.join(name);
            let sp = snap_path.join(name);
            any |= plan_node(repo, node, d, &sp, include, selected, plan, links).await?;
        }
        Ok(any)
    })
}

/// Plans one entry, restored at `d`; `sp` is its path in the snapshot. Returns whether it (or
/// anything below it) was selected.
#[allow(clippy::too_many_arguments)]
async fn plan_node(
    repo: &Repository,
    node: Node,
    d: PathBuf,
    sp: &Path,
    include: &Filter,
    selected: bool,
    plan: &mut Plan,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<bool> {
    if include.excluded(sp) {
        return Ok(false);
    }
    let sel = selected || include.included(sp);
    match node.node_type {
        NodeType::Dir => {
            let Some(sub) = node.subtree else {
                return Err(Error::corrupt(
                    "tree",
                    format!("directory {} has no subtree", sp.display()),
                ));
            };
            let pos = plan.dirs.len();
            plan.dirs.push((d.clone(), node));
            let below = plan_tree(repo, sub, &d, sp, include, sel, plan, links).await?;
            if sel {
                plan.whole_dirs.push((d, sp.to_path_buf()));
                return Ok(true);
            }
            if below {
                return Ok(true);
            }
            plan.dirs.remove(pos);
            Ok(false)
        }
        _ if !sel => Ok(false),
        NodeType::File => {
            if node.links > 1 {
                if let Some(first) = links.get(&(node.device, node.inode)) {
                    plan.hardlinks.push((d, first.clone()));
                    return Ok(true);
                }
                links.insert((node.device, node.inode), d.clone());
            }
            let mut blobs = Vec::new();
            let mut offset = 0u64;
            for id in node.content.iter().flatten() {
                blobs.push((*id, offset));
                let loc = repo.blob_location(id).ok_or(Error::BlobNotInIndex(*id))?;
                offset += loc.blob.raw_length as u64;
            }
            if offset != node.size {
                return Err(Error::corrupt(
                    "tree",
                    format!(
                        "{}: content adds up to {offset} bytes, size says {}",
                        sp.display(),
                        node.size
                    ),
                ));
            }
            plan.files.push(PlannedFile {
                dest: d,
                node,
                blobs,
            });
            Ok(true)
        }
        _ => {
            plan.others.push((d, node));
            Ok(true)
        }
    }
}
