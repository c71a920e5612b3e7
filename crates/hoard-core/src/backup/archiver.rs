//! The walk: reads directories depth first and starts the work for each entry. Unchanged files
//! reuse the parent snapshot's content ids; other files go to blocking reader tasks (bounded
//! by a semaphore: the back-pressure on the walk). Each directory gets a small completion task
//! that waits for its children and stores the tree blob, so trees are saved bottom-up while
//! the walk goes on.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::counters::{bump, Counters};
use super::exclude::{Excluder, Verdict};
use super::file::{read_file, ReadError};
use super::layout::{Target, VirtualDir};
use super::saver::SaverHandle;
use super::CancelToken;
use crate::buffers::{push_transient, transient_vec};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeType, RawName, Tree};
use crate::host::NameCache;
use crate::id::Id;
use crate::progress::{FileError, Progress};
use crate::repository::Repository;

pub(super) struct Archiver {
    pub(super) repo: Repository,
    pub(super) saver: SaverHandle,
    pub(super) names: NameCache,
    pub(super) exclude: Arc<Excluder>,
    /// Record each entry's atime (else its mtime, so reading files does not change trees).
    pub(super) with_atime: bool,
    /// Two permits per file read through the chunker, one per batch of files small enough to
    /// be read whole ([`SmallFiles`]): small files are read twice as many at a time, while
    /// large files, each holding a chunker buffer of the largest chunk size, stay one per
    /// core.
    pub(super) readers: Arc<Semaphore>,
    /// Directories walked beside the one walk (see [`Archiver::entry`]).
    pub(super) walkers: Arc<Semaphore>,
    pub(super) counters: Arc<Counters>,
    pub(super) errors: Mutex<Vec<FileError>>,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) cancel: CancelToken,
}

/// One directory entry as listed: name, `lstat`, extended attributes, and whether the
/// exclusion rules keep it.
type Listed = (
    std::ffi::OsString,
    std::io::Result<std::fs::Metadata>,
    Vec<crate::format::tree::Xattr>,
    Verdict,
);

/// A child of a directory: known now, or being read.
enum Pending {
    Ready(Box<Node>),
    /// Left out after a soft error.
    Skipped,
    Task(JoinHandle<Result<Option<Node>>>),
    /// Neighbouring small files read by one task, in name order (see [`SmallFiles`]).
    Batch(JoinHandle<Result<Vec<Option<Node>>>>),
}

/// New or changed files of one directory too small to be cut, gathered to be read by one
/// blocking task: most files of a source tree are small, and a task per file cost more in
/// thread hand-offs (futex wake-ups) than in reading.
#[derive(Default)]
struct SmallFiles {
    files: Vec<(PathBuf, Node)>,
    bytes: u64,
}

impl SmallFiles {
    /// At most this many files, or about this many bytes, per task: enough to make the
    /// hand-off cheap, few enough that a directory's files still spread over the readers.
    const FILES: usize = 32;
    const BYTES: u64 = 1 << 20;

    fn push(&mut self, path: PathBuf, node: Node) {
        self.bytes += node.size;
        self.files.push((path, node));
    }

    fn full(&self) -> bool {
        self.files.len() >= Self::FILES || self.bytes >= Self::BYTES
    }
}

impl Archiver {
    fn soft_error(&self, path: &Path, e: impl std::fmt::Display) {
        let message = e.to_string();
        tracing::debug!("{}: {message}", path.display());
        self.progress.error(path, &message);
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FileError {
                path: path.to_path_buf(),
                message,
            });
    }

    fn record_atime(&self, node: &mut Node, md: &std::fs::Metadata) {
        if self.with_atime {
            node.atime = md
                .atime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.atime_nsec());
        }
    }

    async fn parent_tree(&self, id: Option<Id>) -> Option<Tree> {
        let id = id?;
        match self.repo.load_tree(&id).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    "parent tree {} unreadable, reading files again: {e}",
                    id.short()
                );
                None
            }
        }
    }

    /// One level of the virtual tree above the backed-up paths.
    pub(super) fn save_virtual(
        self: Arc<Self>,
        path: PathBuf,
        dir: VirtualDir,
        parent: Option<Id>,
    ) -> BoxFuture<'static, Result<Id>> {
        async move {
            let parent = self.parent_tree(parent).await;
            let mut children = Vec::new();
            for (name, target) in dir.children {
                let full = path.join(std::ffi::OsStr::from_bytes(&name));
                let old = parent.as_ref().and_then(|t| t.find(&name)).cloned();
                let md = match (&target, std::fs::symlink_metadata(&full)) {
                    // A component above a backed-up path is recorded as the directory it
                    // leads to, even through a symlink (`/srv/link/file` with `link` -> a
                    // directory), so that the path is found in the snapshot as it was given.
                    (Target::Dir(_), Ok(md)) if md.file_type().is_symlink() => {
                        std::fs::metadata(&full)
                    }
                    (_, r) => r,
                }
                .map_err(|e| Error::io(&full, e))?;
                let mut node = Node::from_metadata(RawName(name), &md, &self.names);
                node.xattrs = super::xattrs::read(&full);
                self.record_atime(&mut node, &md);
                match target {
                    Target::Path => children.push(self.clone().entry(full, node, old).await?),
                    Target::Dir(sub) => {
                        node.subtree = Some(
                            self.clone()
                                .save_virtual(full, sub, old.and_then(|o| o.subtree))
                                .await?,
                        );
                        children.push(Pending::Ready(Box::new(node)));
                    }
                }
            }
            let nodes = collect(children, &self.cancel).await?;
            self.saver.save_tree(&Tree { nodes }).await
        }
        .boxed()
    }

    /// Starts the work for one entry found by the walk.
    async fn entry(
        self: Arc<Self>,
        path: PathBuf,
        mut node: Node,
        old: Option<Node>,
    ) -> Result<Pending> {
        match node.node_type {
            // A subdirectory is walked by a task of its own while one is free, so that
            // listings (and the parent trees they are compared with) overlap: an unchanged
            // re-backup is mostly this. Else the walk goes on into it depth first. The
            // permit is held until the directory's children are started.
            NodeType::Dir => match self.walkers.clone().try_acquire_owned() {
                Ok(permit) => Ok(Pending::Task(tokio::spawn(async move {
                    let walked = self.walk_dir(path, node, old).await;
                    drop(permit);
                    match walked? {
                        Pending::Ready(n) => Ok(Some(*n)),
                        Pending::Task(h) => h.await?,
                        // walk_dir yields its directory's node, never a batch of files.
                        Pending::Skipped | Pending::Batch(_) => Ok(None),
                    }
                }))),
                Err(_) => self.walk_dir(path, node, old).await,
            },
            NodeType::File => {
                if self.unchanged(&path, &mut node, old.as_ref()) {
                    return Ok(Pending::Ready(Box::new(node)));
                }
                // Two permits for a file cut by the chunker: it holds a buffer of the largest
                // chunk. (A directory's small files are gathered in walk_dir; a small file
                // gets here only when it was named as a backup path.)
                let small = node.size < u64::from(self.repo.config().chunker.min_size);
                let permit = self.reader_permit(if small { 1 } else { 2 }).await?;
                let me = self.clone();
                Ok(Pending::Task(tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    me.read(path, node)
                })))
            }
            NodeType::Symlink => match std::fs::read_link(&path) {
                Ok(target) => {
                    node.link_target = Some(RawName::from_os_str(target.as_os_str()));
                    Ok(Pending::Ready(Box::new(node)))
                }
                Err(e) => {
                    self.soft_error(&path, e);
                    Ok(Pending::Skipped)
                }
            },
            _ => Ok(Pending::Ready(Box::new(node))),
        }
    }

    /// Whether the file is taken over from the parent snapshot (its metadata is the same and
    /// its content all stored; `node` gets that content); else it is counted as new or
    /// changed, to be read.
    fn unchanged(&self, path: &Path, node: &mut Node, old: Option<&Node>) -> bool {
        if let Some(old) = old.filter(|o| node.same_file_metadata(o)) {
            let content = old.content.clone().unwrap_or_default();
            if self.saver.known(&content) {
                bump(&self.counters.files_unmodified, 1);
                bump(&self.counters.bytes_processed, node.size);
                self.progress.advance(1, node.size);
                self.progress.file_done(path, node.size, false);
                node.content = Some(content);
                return true;
            }
        }
        let counter = match old {
            Some(_) => &self.counters.files_changed,
            None => &self.counters.files_new,
        };
        bump(counter, 1);
        false
    }

    async fn reader_permit(&self, permits: u32) -> Result<tokio::sync::OwnedSemaphorePermit> {
        until_cancelled(
            &self.cancel,
            self.readers.clone().acquire_many_owned(permits),
        )
        .await?
        .map_err(|e| Error::Task(e.to_string()))
    }

    /// Reads one file on a blocking thread: its node, or `None` when it was left out.
    fn read(&self, path: PathBuf, mut node: Node) -> Result<Option<Node>> {
        match read_file(
            &self.saver,
            &self.repo.config().chunker,
            &path,
            &mut node,
            &*self.progress,
            &self.cancel,
        ) {
            Ok(()) => {
                bump(&self.counters.bytes_processed, node.size);
                self.progress.advance(1, 0);
                self.progress.file_done(&path, node.size, true);
                Ok(Some(node))
            }
            Err(ReadError::Soft(e)) => {
                self.soft_error(&path, e);
                Ok(None)
            }
            Err(ReadError::Fatal(e)) => Err(e),
        }
    }

    /// Starts the reading of gathered small files (one permit: each is read whole).
    async fn read_small(self: &Arc<Self>, small: &mut SmallFiles) -> Result<Option<Pending>> {
        if small.files.is_empty() {
            return Ok(None);
        }
        let files = std::mem::take(small).files;
        let permit = self.reader_permit(1).await?;
        let me = self.clone();
        Ok(Some(Pending::Batch(tokio::task::spawn_blocking(
            move || {
                let _permit = permit;
                files
                    .into_iter()
                    .map(|(path, node)| me.read(path, node))
                    .collect()
            },
        ))))
    }

    /// Reads a directory and starts its children; returns a task that yields the directory's
    /// node once its tree blob is stored.
    fn walk_dir(
        self: Arc<Self>,
        path: PathBuf,
        mut node: Node,
        old: Option<Node>,
    ) -> BoxFuture<'static, Result<Pending>> {
        async move {
            let old_subtree = old.as_ref().and_then(|o| o.subtree);
            let parent = self.parent_tree(old_subtree).await.map(Arc::new);
            let p = path.clone();
            let known = super::xattrs::Known::from_parent(parent.clone());
            let exclude = self.exclude.clone();
            let listing = until_cancelled(
                &self.cancel,
                tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Listed>> {
                    // A large directory's listing is MiBs, freed soon: sized as `crate::buffers`
                    // sizes such buffers.
                    let mut v = Vec::new();
                    for e in std::fs::read_dir(&p)? {
                        let e = e?;
                        let md = e.metadata();
                        let path = e.path();
                        let verdict = match &md {
                            Ok(md) => exclude.judge(&path, md),
                            Err(_) if exclude.by_path(&path) => Verdict::Leave,
                            Err(_) => Verdict::Keep,
                        };
                        push_transient(&mut v, (e.file_name(), md, path, verdict));
                    }
                    // In the tree's order, so that the parent's entries are found in one pass.
                    // (Names in a directory are unique: an unstable sort, which allocates
                    // nothing, gives the same order.)
                    v.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    let mut in_parent = 0;
                    let mut listed: Vec<Listed> = transient_vec(v.len());
                    listed.extend(v.into_iter().map(|(name, md, path, verdict)| {
                        let attrs = if verdict == Verdict::Leave {
                            Vec::new()
                        } else {
                            let md = md.as_ref().ok();
                            known.attrs(&path, name.as_bytes(), md, &mut in_parent)
                        };
                        (name, md, attrs, verdict)
                    }));
                    Ok(listed)
                }),
            )
            .await??;
            let listing = match listing {
                Ok(l) => l,
                Err(e) => {
                    self.soft_error(&path, e);
                    return Ok(Pending::Skipped);
                }
            };
            let mut children = transient_vec(listing.len());
            let mut small = SmallFiles::default();
            // The listing is in the tree's order: its names are found in the parent tree in
            // one pass.
            let mut in_parent = 0;
            let small_below = u64::from(self.repo.config().chunker.min_size);
            for (name, md, attrs, verdict) in listing {
                let full = path.join(&name);
                if verdict == Verdict::Leave {
                    continue;
                }
                let md = match md {
                    Ok(md) => md,
                    Err(e) => {
                        self.soft_error(&full, e);
                        continue;
                    }
                };
                let mut child = Node::from_metadata(RawName::from_os_str(&name), &md, &self.names);
                child.xattrs = attrs;
                self.record_atime(&mut child, &md);
                if verdict == Verdict::KeepEmpty {
                    // A mount point with --one-file-system: the directory, not what is mounted.
                    child.subtree = Some(self.saver.save_tree(&Tree { nodes: Vec::new() }).await?);
                    children.push(Pending::Ready(Box::new(child)));
                    continue;
                }
                let old_child = parent
                    .as_ref()
                    .and_then(|t| t.find_from(name.as_bytes(), &mut in_parent));
                if child.node_type == NodeType::File && child.size < small_below {
                    if self.unchanged(&full, &mut child, old_child) {
                        // Children stay in name order: gathered files before this one.
                        children.extend(self.read_small(&mut small).await?);
                        children.push(Pending::Ready(Box::new(child)));
                    } else {
                        small.push(full, child);
                        if small.full() {
                            children.extend(self.read_small(&mut small).await?);
                        }
                    }
                    continue;
                }
                children.extend(self.read_small(&mut small).await?);
                children.push(self.clone().entry(full, child, old_child.cloned()).await?);
            }
            children.extend(self.read_small(&mut small).await?);
            let me = self.clone();
            Ok(Pending::Task(tokio::spawn(async move {
                let nodes = collect(children, &me.cancel).await?;
                let id = match (old_subtree, parent) {
                    // The parent's tree blob, read and verified above, holds exactly these
                    // nodes: its id is this directory's without encoding and hashing the tree
                    // again (what most of an unchanged re-backup's directories cost).
                    (Some(old), Some(p)) if p.nodes == nodes && me.saver.known(&[old]) => old,
                    _ => me.saver.save_tree(&Tree { nodes }).await?,
                };
                let counter = match old_subtree {
                    Some(o) if o == id => &me.counters.dirs_unmodified,
                    Some(_) => &me.counters.dirs_changed,
                    None => &me.counters.dirs_new,
                };
                bump(counter, 1);
                node.subtree = Some(id);
                Ok(Some(node))
            })))
        }
        .boxed()
    }
}

/// Waits for a directory's children, in name order, dropping those that failed softly.
async fn collect(children: Vec<Pending>, cancel: &CancelToken) -> Result<Vec<Node>> {
    let mut nodes = transient_vec(children.len());
    for c in children {
        match c {
            Pending::Ready(n) => nodes.push(*n),
            Pending::Skipped => {}
            Pending::Task(h) => {
                if let Some(n) = until_cancelled(cancel, h).await??? {
                    nodes.push(n);
                }
            }
            Pending::Batch(h) => {
                nodes.extend(until_cancelled(cancel, h).await???.into_iter().flatten())
            }
        }
    }
    Ok(nodes)
}

/// How often a wait looks whether the backup was cancelled.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Awaits `work`, or gives up with [`Error::Interrupted`] soon after `cancel` is set: a file
/// read that never returns (a hung network mount) must not keep a cancelled backup waiting.
pub(super) async fn until_cancelled<T>(
    cancel: &CancelToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            _ = tokio::time::sleep(CANCEL_POLL) => {
                if cancel.is_cancelled() {
                    return Err(Error::Interrupted);
                }
            }
        }
    }
}
