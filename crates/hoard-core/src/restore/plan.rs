//! Step 1 of a restore: walk the snapshot's trees and decide what to create where, a batch
//! at a time, so that a snapshot of millions of files is restored in memory bounded by the
//! batch. Names are checked here, so that a damaged or hostile tree cannot write outside the
//! target.

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

/// A batch ends after this many files. Restore keeps the files of at most a couple of
/// batches in memory (a path, a node and the blob list each): about 8 MiB at this size.
const BATCH_FILES: usize = 8192;
/// …or after this many blob uses, for batches of large files.
const BATCH_BLOBS: usize = 65536;

pub(super) struct PlannedFile {
    pub(super) dest: PathBuf,
    /// The file's node; its content list is moved into `blobs`.
    pub(super) node: Node,
    /// Blob ids in file order with their offsets.
    pub(super) blobs: Vec<(Id, u64)>,
}

/// What the planner hands out at a time.
#[derive(Default)]
pub(super) struct Batch {
    /// Directories to create before anything else of the batch, parents first.
    pub(super) dirs: Vec<PathBuf>,
    pub(super) files: Vec<PlannedFile>,
    /// Symlinks, fifos, devices and sockets.
    pub(super) others: Vec<(PathBuf, Node)>,
}

/// Which snapshot paths a restore takes: an include match takes the entry and everything
/// below it; an exclude match leaves out the entry and everything below it.
#[derive(Default)]
pub(super) struct Filter {
    include: Vec<GlobSet>,
    exclude: Vec<GlobSet>,
}

impl Filter {
    fn new(opts: &RestoreOptions) -> Result<Self> {
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

/// A directory being walked.
struct Frame {
    /// Its entries not planned yet.
    entries: std::vec::IntoIter<Node>,
    dest: PathBuf,
    /// Its path in the snapshot.
    snap: PathBuf,
    /// Whether everything below it is restored (no include pattern, or one matched it).
    selected: bool,
    /// Its node, until the directory is known to be restored (something below it is, or it
    /// is selected); `None` for the directory restoring starts from, which is the target.
    node: Option<Node>,
}

/// Walks the snapshot depth first and hands out what to create, batch by batch.
pub(super) struct Planner<'r> {
    repo: &'r Repository,
    pub(super) filter: Filter,
    stack: Vec<Frame>,
    /// How many frames from the bottom of `stack` are known to be restored.
    announced: usize,
    /// A single entry to restore (a `source_path` that is not a directory).
    single: Option<(Node, PathBuf, PathBuf)>,
    /// The first path restored for each multiply linked inode.
    links: HashMap<(u64, u64), PathBuf>,
    /// Every directory restored, with its node: their metadata is set last.
    pub(super) dirs: Vec<(PathBuf, Node)>,
    /// (link path, target path) for hard links to a file restored earlier.
    pub(super) hardlinks: Vec<(PathBuf, PathBuf)>,
    /// Directories restored with everything in them (not only the parts an include pattern
    /// picked): `--delete` may remove what else is in them.
    /// (target directory, its path in the snapshot).
    pub(super) whole_dirs: Vec<(PathBuf, PathBuf)>,
}

impl<'r> Planner<'r> {
    /// Starts the restore `opts` asks for: the whole snapshot below the target by absolute
    /// path, or one path of it (a directory's contents, or one entry) straight into the
    /// target.
    pub(super) async fn new(
        repo: &'r Repository,
        snapshot: &SnapshotEntry,
        opts: &RestoreOptions,
    ) -> Result<Planner<'r>> {
        let filter = Filter::new(opts)?;
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
        let sp = PathBuf::from(source.as_deref().unwrap_or("/"));
        let mut planner = Planner {
            repo,
            filter,
            stack: Vec::new(),
            announced: 0,
            single: None,
            links: HashMap::new(),
            dirs: Vec::new(),
            hardlinks: Vec::new(),
            whole_dirs: Vec::new(),
        };
        let tree = match found {
            Found::Root(tree) => tree,
            Found::Node(node) => match (node.node_type, node.subtree) {
                (NodeType::Dir, Some(tree)) => tree,
                _ => {
                    let dest = opts.target.join(safe_name(&node)?);
                    planner.single = Some((*node, dest, sp));
                    return Ok(planner);
                }
            },
        };
        if everything {
            planner.whole_dirs.push((opts.target.clone(), sp.clone()));
        }
        let entries = repo.load_tree(&tree).await?.nodes.into_iter();
        planner.stack.push(Frame {
            entries,
            dest: opts.target.clone(),
            snap: sp,
            selected: everything,
            node: None,
        });
        planner.announced = 1;
        Ok(planner)
    }

    /// The next batch; `None` once everything is planned.
    pub(super) async fn next_batch(&mut self) -> Result<Option<Batch>> {
        let mut batch = Batch::default();
        let mut blobs = 0;
        if let Some((node, dest, sp)) = self.single.take() {
            let selected = self.filter.everything();
            self.visit(node, dest, sp, selected, &mut batch).await?;
        }
        while batch.files.len() < BATCH_FILES && blobs < BATCH_BLOBS {
            let Some(top) = self.stack.last_mut() else {
                break;
            };
            let Some(node) = top.entries.next() else {
                self.stack.pop();
                self.announced = self.announced.min(self.stack.len());
                continue;
            };
            let name = safe_name(&node)?;
            let (dest, sp, selected) = (top.dest.join(name), top.snap.join(name), top.selected);
            let before = batch.files.len();
            self.visit(node, dest, sp, selected, &mut batch).await?;
            blobs += batch.files[before..]
                .iter()
                .map(|f| f.blobs.len())
                .sum::<usize>();
        }
        // The walk only stops short of a full batch when it is done.
        let empty = batch.dirs.is_empty() && batch.files.is_empty() && batch.others.is_empty();
        Ok((!empty).then_some(batch))
    }

    /// Plans one entry, restored at `dest`; `sp` is its path in the snapshot and `selected`
    /// whether its parent is restored whole.
    async fn visit(
        &mut self,
        mut node: Node,
        dest: PathBuf,
        sp: PathBuf,
        selected: bool,
        batch: &mut Batch,
    ) -> Result<()> {
        if self.filter.excluded(&sp) {
            return Ok(());
        }
        let sel = selected || self.filter.included(&sp);
        match node.node_type {
            NodeType::Dir => {
                let Some(sub) = node.subtree else {
                    return Err(Error::corrupt(
                        "tree",
                        format!("directory {} has no subtree", sp.display()),
                    ));
                };
                let entries = self.repo.load_tree(&sub).await?.nodes.into_iter();
                if sel {
                    self.whole_dirs.push((dest.clone(), sp.clone()));
                }
                self.stack.push(Frame {
                    entries,
                    dest,
                    snap: sp,
                    selected: sel,
                    node: Some(node),
                });
                if sel {
                    self.announce(batch);
                }
            }
            _ if !sel => {}
            NodeType::File => {
                if node.links > 1 {
                    if let Some(first) = self.links.get(&(node.device, node.inode)) {
                        self.hardlinks.push((dest, first.clone()));
                        self.announce(batch);
                        return Ok(());
                    }
                    self.links.insert((node.device, node.inode), dest.clone());
                }
                let mut blobs = Vec::new();
                let mut offset = 0u64;
                let mut whole = true;
                for id in node.content.take().into_iter().flatten() {
                    blobs.push((id, offset));
                    match self.repo.blob_location(&id) {
                        Some(loc) => offset += loc.blob.raw_length as u64,
                        None => {
                            // Where the rest goes is unknown: what comes before is restored,
                            // and the write stage reports the file as damaged (as restic
                            // restores the other files of a snapshot with lost data).
                            whole = false;
                            break;
                        }
                    }
                }
                if whole && offset != node.size {
                    return Err(Error::corrupt(
                        "tree",
                        format!(
                            "{}: content adds up to {offset} bytes, size says {}",
                            sp.display(),
                            node.size
                        ),
                    ));
                }
                self.announce(batch);
                batch.files.push(PlannedFile { dest, node, blobs });
            }
            _ => {
                self.announce(batch);
                batch.others.push((dest, node));
            }
        }
        Ok(())
    }

    /// Something below the top of the stack is restored: so is every directory above it.
    fn announce(&mut self, batch: &mut Batch) {
        for frame in &mut self.stack[self.announced..] {
            if let Some(node) = frame.node.take() {
                batch.dirs.push(frame.dest.clone());
                self.dirs.push((frame.dest.clone(), node));
            }
        }
        self.announced = self.stack.len();
    }
}
