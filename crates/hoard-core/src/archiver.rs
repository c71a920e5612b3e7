//! Backup: turns directory trees into a snapshot.
//!
//! Read top-down:
//! 1. [`backup`] resolves the paths and the parent snapshot, starts a [`BlobSaver`], and lays
//!    the absolute paths out as a virtual tree (`/home/u/docs` becomes `home` → `u` → `docs`,
//!    so restoring to `DIR` gives `DIR/home/u/docs`).
//! 2. [`Archiver::walk_dir`] reads one directory, depth first. Files whose size, mtime, ctime
//!    and inode match the parent snapshot reuse its content ids without being read; other
//!    files go to a blocking reader task (bounded by a semaphore: this is the back-pressure on
//!    the walk). Each directory gets a small completion task that waits for its children and
//!    stores the tree blob, so trees are saved bottom-up while the walk goes on.
//! 3. [`read_file`] chunks a file with FastCDC and hands unknown chunks to the saver.
//! 4. The saver is finished (packs, then index) and only then the snapshot is written.
//!
//! Files that cannot be read are reported in [`BackupResult::errors`] and left out; the
//! snapshot is still written, and callers turn a non-empty error list into exit code 3.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::ids::NameCache;
use crate::lock::{with_lock, LockOptions, LockState};
use crate::progress::Progress;
use crate::repository::{FileKind, Repository};
use crate::saver::{BlobSaver, SaverHandle};
use crate::snapshot::{Snapshot, SnapshotEntry, SnapshotSummary};
use crate::tree::{Node, NodeType, RawName, Tree};

/// Which snapshot to compare against to skip unchanged files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParentSelection {
    /// The newest snapshot with the same host and the same set of paths.
    #[default]
    Latest,
    /// Read every file.
    None,
    Id(Id),
}

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    /// Defaults to this machine's hostname.
    pub host: Option<String>,
    pub tags: Vec<String>,
    /// Glob patterns; a pattern without `/` matches a name at any depth, a pattern starting
    /// with `/` matches from the root, any other is matched at any depth.
    pub excludes: Vec<String>,
    pub parent: ParentSelection,
    /// Defaults to now.
    pub time: Option<DateTime<Utc>>,
    /// Files read at once; defaults to the number of cores.
    pub read_concurrency: Option<usize>,
    /// Stops the backup early: what was uploaded is indexed, no snapshot is written, and
    /// [`Error::Interrupted`] is returned.
    pub cancel: Option<CancelToken>,
    /// The shared lock the backup holds.
    pub lock: LockOptions,
}

/// A flag that asks a running backup to stop.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A file or directory that could not be read and was left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct BackupResult {
    pub snapshot: SnapshotEntry,
    pub summary: SnapshotSummary,
    pub errors: Vec<FileError>,
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
    bytes: AtomicU64,
}

struct Archiver {
    repo: Repository,
    saver: SaverHandle,
    names: NameCache,
    excludes: GlobSet,
    readers: Arc<Semaphore>,
    counters: Counters,
    errors: Mutex<Vec<FileError>>,
    progress: Arc<dyn Progress>,
    cancel: CancelToken,
}

/// A child of a directory: known now, or being read.
enum Pending {
    Ready(Box<Node>),
    /// Left out after a soft error.
    Skipped,
    Task(JoinHandle<Result<Option<Node>>>),
}

/// The requested paths laid out below `/`.
#[derive(Default)]
struct VirtualDir {
    children: BTreeMap<Vec<u8>, Target>,
}

enum Target {
    Path,
    Dir(VirtualDir),
}

fn build_virtual(paths: &[PathBuf]) -> VirtualDir {
    let mut root = VirtualDir::default();
    for p in paths {
        let comps: Vec<Vec<u8>> = p
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        let mut dir = &mut root;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let entry = dir.children.entry(c.clone()).or_insert_with(|| {
                if last {
                    Target::Path
                } else {
                    Target::Dir(VirtualDir::default())
                }
            });
            if last {
                *entry = Target::Path;
                break;
            }
            match entry {
                Target::Path => break, // an ancestor is backed up whole
                Target::Dir(d) => dir = d,
            }
        }
    }
    root
}

/// Makes a path absolute and lexically clean without resolving symlinks, as restic does.
fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    Ok(out)
}

/// Compiles path patterns as restic reads them: one starting with `/` matches from the root,
/// any other matches at any depth (`*.tmp`, `cache`, `sub/dir`); `*` never crosses `/`.
pub(crate) fn compile_patterns(patterns: &[String], what: &'static str) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let full = if p.starts_with('/') {
            p.clone()
        } else {
            format!("**/{p}")
        };
        let g = GlobBuilder::new(&full)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::invalid(what, format!("{p:?}: {e}")))?;
        b.add(g);
    }
    b.build().map_err(|e| Error::invalid(what, e))
}

fn compile_excludes(patterns: &[String]) -> Result<GlobSet> {
    compile_patterns(patterns, "exclude pattern")
}

/// Backs up `opts.paths` into a new snapshot, under a shared lock.
pub async fn backup(
    repo: &Repository,
    opts: BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupResult> {
    let lock = opts.lock;
    crate::testhook::hook("backup-before-lock").await;
    with_lock(repo, false, &lock, |state| async move {
        backup_locked(repo, opts, progress, &state).await
    })
    .await
}

async fn backup_locked(
    repo: &Repository,
    opts: BackupOptions,
    progress: Arc<dyn Progress>,
    lock: &LockState,
) -> Result<BackupResult> {
    let start = Utc::now();
    if opts.paths.is_empty() {
        return Err(Error::invalid("backup paths", "no path given"));
    }
    let mut paths = Vec::new();
    for p in &opts.paths {
        let abs = absolute(p)?;
        std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        paths.push(abs);
    }
    paths.sort();
    paths.dedup();
    let path_strings: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let host = opts.host.clone().unwrap_or_else(crate::hostname);
    let parent = match &opts.parent {
        ParentSelection::None => None,
        ParentSelection::Id(id) => Some(repo.find_snapshot(&id.to_hex()).await?),
        ParentSelection::Latest => repo
            .snapshots()
            .await?
            .into_iter()
            .rev()
            .find(|s| s.snapshot.hostname == host && s.snapshot.paths == path_strings),
    };
    if let Some(p) = &parent {
        tracing::info!(parent = %p.id.short(), "using parent snapshot");
    }

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let saver = BlobSaver::new(repo, cores, 2);
    let handle = saver
        .handle()
        .ok_or_else(|| Error::Task("saver closed".into()))?;
    let archiver = Arc::new(Archiver {
        repo: repo.clone(),
        saver: handle,
        names: NameCache::default(),
        excludes: compile_excludes(&opts.excludes)?,
        readers: Arc::new(Semaphore::new(
            opts.read_concurrency.unwrap_or(cores).max(1),
        )),
        counters: Counters::default(),
        errors: Mutex::new(Vec::new()),
        progress,
        cancel: opts.cancel.clone().unwrap_or_default(),
    });
    let layout = build_virtual(&paths);
    let walked = archiver
        .clone()
        .save_virtual(
            PathBuf::from("/"),
            layout,
            parent.as_ref().map(|p| p.snapshot.tree),
        )
        .await;
    // The archiver holds a saver handle; it must be gone before the saver can finish. After a
    // failed or interrupted walk, file and directory tasks may still hold it: stop them and
    // wait until they let go.
    if walked.is_err() {
        archiver.cancel.cancel();
    }
    let mut archiver = archiver;
    let archiver = loop {
        match Arc::try_unwrap(archiver) {
            Ok(a) => break a,
            Err(still_shared) => {
                archiver = still_shared;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    let Archiver {
        saver: handle,
        counters,
        errors,
        ..
    } = archiver;
    drop(handle);
    // Packs and index are written even when the walk failed or was interrupted, so uploaded
    // data is reusable. A failed upload also fails the walk with a generic error: report the
    // upload's error, the cause.
    let totals = saver.finish().await?;
    let root = walked?;

    let c = &counters;
    let files_new = c.files_new.load(Ordering::Relaxed);
    let files_changed = c.files_changed.load(Ordering::Relaxed);
    let files_unmodified = c.files_unmodified.load(Ordering::Relaxed);
    let mut summary = SnapshotSummary {
        backup_start: Some(start),
        backup_end: None,
        files_new,
        files_changed,
        files_unmodified,
        dirs_new: c.dirs_new.load(Ordering::Relaxed),
        dirs_changed: c.dirs_changed.load(Ordering::Relaxed),
        dirs_unmodified: c.dirs_unmodified.load(Ordering::Relaxed),
        data_blobs: totals.data_blobs,
        tree_blobs: totals.tree_blobs,
        data_added: totals.data_added,
        data_added_packed: totals.data_added_packed,
        total_files_processed: files_new + files_changed + files_unmodified,
        total_bytes_processed: c.bytes.load(Ordering::Relaxed),
    };
    summary.backup_end = Some(Utc::now());
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let snapshot = Snapshot {
        time: opts.time.unwrap_or(start),
        tree: root,
        paths: path_strings,
        hostname: host,
        username: crate::username(),
        uid,
        gid,
        tags: opts.tags.clone(),
        excludes: opts.excludes.clone(),
        parent: parent.map(|p| p.id),
        program_version: format!("hoard {}", env!("CARGO_PKG_VERSION")),
        summary: Some(summary.clone()),
    };
    crate::testhook::hook("backup-before-snapshot").await;
    // A lock lost while running means a prune may have removed blobs this snapshot uses.
    lock.ensure_valid().await?;
    let id = repo.save_doc(FileKind::Snapshot, &snapshot).await?;
    tracing::info!(snapshot = %id.short(), "snapshot saved");
    Ok(BackupResult {
        snapshot: SnapshotEntry { id, snapshot },
        summary,
        errors: errors.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
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
    fn save_virtual(
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
                let md = std::fs::symlink_metadata(&full).map_err(|e| Error::io(&full, e))?;
                let mut node = Node::from_metadata(RawName(name), &md, &self.names);
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
            let nodes = collect(children).await?;
            self.saver.save_tree(Tree { nodes }.to_bytes()).await
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
            NodeType::Dir => self.walk_dir(path, node, old).await,
            NodeType::File => {
                if let Some(old) = old.as_ref().filter(|o| node.same_file_metadata(o)) {
                    let content = old.content.clone().unwrap_or_default();
                    let index = self.repo.index();
                    if content.iter().all(|id| index.contains(id)) {
                        drop(index);
                        self.counters
                            .files_unmodified
                            .fetch_add(1, Ordering::Relaxed);
                        self.counters.bytes.fetch_add(node.size, Ordering::Relaxed);
                        self.progress.file_done(&path, node.size, false);
                        node.content = Some(content);
                        return Ok(Pending::Ready(Box::new(node)));
                    }
                }
                let counter = match &old {
                    Some(_) => &self.counters.files_changed,
                    None => &self.counters.files_new,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let permit = self
                    .readers
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| Error::Task(e.to_string()))?;
                let me = self.clone();
                Ok(Pending::Task(tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    match read_file(
                        &me.saver,
                        &me.repo,
                        &path,
                        &mut node,
                        &*me.progress,
                        &me.cancel,
                    ) {
                        Ok(()) => {
                            me.counters.bytes.fetch_add(node.size, Ordering::Relaxed);
                            me.progress.file_done(&path, node.size, true);
                            Ok(Some(node))
                        }
                        Err(ReadError::Soft(e)) => {
                            me.soft_error(&path, e);
                            Ok(None)
                        }
                        Err(ReadError::Fatal(e)) => Err(e),
                    }
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
            let parent = self.parent_tree(old_subtree).await;
            let p = path.clone();
            let listing = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(std::ffi::OsString, std::io::Result<std::fs::Metadata>)>> {
                let mut v: Vec<_> = std::fs::read_dir(&p)?
                    .map(|e| e.map(|e| (e.file_name(), e.metadata())))
                    .collect::<std::io::Result<_>>()?;
                v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Ok(v)
            })
            .await?;
            let listing = match listing {
                Ok(l) => l,
                Err(e) => {
                    self.soft_error(&path, e);
                    return Ok(Pending::Skipped);
                }
            };
            let mut children = Vec::with_capacity(listing.len());
            for (name, md) in listing {
                let full = path.join(&name);
                if self.excludes.is_match(&full) {
                    continue;
                }
                let md = match md {
                    Ok(md) => md,
                    Err(e) => {
                        self.soft_error(&full, e);
                        continue;
                    }
                };
                let child = Node::from_metadata(RawName::from_os_str(&name), &md, &self.names);
                let old_child = parent.as_ref().and_then(|t| t.find(name.as_bytes())).cloned();
                children.push(self.clone().entry(full, child, old_child).await?);
            }
            let me = self.clone();
            Ok(Pending::Task(tokio::spawn(async move {
                let nodes = collect(children).await?;
                let id = me.saver.save_tree(Tree { nodes }.to_bytes()).await?;
                let counter = match old_subtree {
                    Some(o) if o == id => &me.counters.dirs_unmodified,
                    Some(_) => &me.counters.dirs_changed,
                    None => &me.counters.dirs_new,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                node.subtree = Some(id);
                Ok(Some(node))
            })))
        }
        .boxed()
    }
}

/// Waits for a directory's children, in name order, dropping those that failed softly.
async fn collect(children: Vec<Pending>) -> Result<Vec<Node>> {
    let mut nodes = Vec::with_capacity(children.len());
    for c in children {
        match c {
            Pending::Ready(n) => nodes.push(*n),
            Pending::Skipped => {}
            Pending::Task(h) => {
                if let Some(n) = h.await?? {
                    nodes.push(n);
                }
            }
        }
    }
    Ok(nodes)
}

enum ReadError {
    /// This file is left out; the backup goes on.
    Soft(std::io::Error),
    /// The repository side failed; the backup stops.
    Fatal(Error),
}

/// Chunks one file and stores its new chunks; fills in `node.content` and `node.size`.
fn read_file(
    saver: &SaverHandle,
    repo: &Repository,
    path: &Path,
    node: &mut Node,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<(), ReadError> {
    let params = repo.config().chunker;
    let mut file = File::open(path).map_err(ReadError::Soft)?;
    let mut content = Vec::new();
    let mut size = 0u64;
    let mut store = |data: Vec<u8>| -> Result<(), ReadError> {
        if cancel.is_cancelled() {
            return Err(ReadError::Fatal(Error::Interrupted));
        }
        size += data.len() as u64;
        progress.bytes_read(data.len() as u64);
        let (id, _) = saver.save_data_blocking(data).map_err(ReadError::Fatal)?;
        content.push(id);
        Ok(())
    };
    if node.size < params.min_size as u64 {
        // Too small to be cut: one read, one chunk, no chunker buffer.
        let mut data = Vec::with_capacity(node.size as usize);
        file.read_to_end(&mut data).map_err(ReadError::Soft)?;
        if !data.is_empty() {
            store(data)?;
        }
    } else {
        let chunker = crate::chunker::stream(&params, file);
        for chunk in chunker {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => ReadError::Soft(io),
                other => ReadError::Soft(std::io::Error::other(other.to_string())),
            })?;
            store(chunk.data)?;
        }
    }
    node.size = size;
    node.content = Some(content);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_layout_merges_and_covers() {
        let v = build_virtual(&[
            PathBuf::from("/a/b/c"),
            PathBuf::from("/a/b"),
            PathBuf::from("/a/x"),
        ]);
        let Target::Dir(a) = &v.children[&b"a".to_vec()] else {
            panic!()
        };
        assert!(matches!(a.children[&b"b".to_vec()], Target::Path));
        assert!(matches!(a.children[&b"x".to_vec()], Target::Path));
    }

    #[test]
    fn excludes_match_names_anywhere_and_anchored_paths() {
        let g =
            compile_excludes(&["*.tmp".into(), "/data/cache".into(), "sub/skip".into()]).unwrap();
        assert!(g.is_match("/x/y/z.tmp"));
        assert!(g.is_match("/data/cache"));
        assert!(!g.is_match("/other/data/cache"));
        assert!(g.is_match("/a/sub/skip"));
        assert!(!g.is_match("/x/y/z.tmpx"));
        assert!(compile_excludes(&["[".into()]).is_err());
    }

    #[test]
    fn absolute_cleans_dots() {
        assert_eq!(
            absolute(Path::new("/a/./b/../c")).unwrap(),
            PathBuf::from("/a/c")
        );
    }
}
