//! Restore: writes a snapshot's tree below a target directory.
//!
//! 1. Walk the snapshot's trees and plan: which directories, files, links and special files
//!    to create, filtered by the include patterns. Names are checked so that a damaged or
//!    hostile tree cannot write outside the target.
//! 2. Create directories and files; a file already on disk with the same size is hashed
//!    chunk by chunk and left alone when every blob id matches.
//! 3. Read by pack: every needed blob of a pack is fetched once (neighbouring blobs in one
//!    ranged read), verified against its id, and written at each offset that uses it.
//! 4. Set metadata: files and links first, then directories from the deepest up, so that
//!    writing into a directory does not disturb its restored mtime.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use globset::GlobSet;

use crate::error::{Error, Result};
use crate::format::pack::PackedBlob;
use crate::format::snapshot::SnapshotEntry;
use crate::format::tree::{Node, NodeType};
use crate::id::Id;
use crate::progress::{FileError, Phase, Progress};
use crate::repository::{FileKind, LockNeed, Repository};
use crate::walk::{find_path, Found};

/// Ranged reads merge neighbouring blobs up to this size.
const MAX_READ: u64 = 8 * 1024 * 1024;
/// Packs read at once.
const PACK_CONCURRENCY: usize = 4;
/// Files prepared per blocking task.
const PREPARE_BATCH: usize = 256;

#[derive(Debug, Clone, Default)]
/// Where and what to restore.
pub struct RestoreOptions {
    /// The directory to restore into (created if missing).
    pub target: PathBuf,
    /// Glob patterns over snapshot paths (`/home/u/*.txt`); a match restores that entry and
    /// everything below it. Empty means everything.
    pub include: Vec<String>,
    /// Set owners (uid/gid). Defaults to whether the process runs as root.
    pub owners: Option<bool>,
    /// Restore only this path of the snapshot (restic's `snapshot:path`): a directory's
    /// contents go straight into `target`, anything else lands as `target/<its name>`. `None`
    /// (or `/`) restores the whole snapshot below `target`, by absolute path. Include
    /// patterns still match whole snapshot paths.
    pub source_path: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
/// What a restore did.
pub struct RestoreSummary {
    /// Files written.
    pub files_restored: u64,
    /// Files already identical on disk.
    pub files_skipped: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Hard links made.
    pub links: u64,
    /// Symlinks, fifos and devices made.
    pub specials: u64,
    /// Content bytes written.
    pub bytes_written: u64,
    /// Files that could not be restored whole, and why.
    pub errors: Vec<FileError>,
}

struct PlannedFile {
    dest: PathBuf,
    node: Node,
    /// Blob locations in file order with their offsets.
    blobs: Vec<(Id, u64)>,
}

#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<PlannedFile>,
    /// (link path, target path) for hard links to a file restored earlier.
    hardlinks: Vec<(PathBuf, PathBuf)>,
    others: Vec<(PathBuf, Node)>,
}

fn compile_includes(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    crate::patterns::compile_patterns(patterns, "include pattern").map(Some)
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

/// Restores `snapshot` below `opts.target`.
pub async fn restore(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary> {
    // A shared lock, so that a prune cannot delete packs mid-way.
    repo.locked(LockNeed::Read, |_| {
        restore_unlocked(repo, snapshot, opts, progress)
    })
    .await
}

async fn restore_unlocked(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary> {
    let include = compile_includes(&opts.include)?;
    let started = std::time::Instant::now();
    let mut plan = Plan::default();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let everything = include.is_none();
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
    let (include_set, dest) = (include.as_ref(), &opts.target);
    match start {
        Ok(tree) => {
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
    let owners = opts
        .owners
        .unwrap_or_else(|| nix::unistd::geteuid().is_root());
    tracing::debug!(files = plan.files.len(), dirs = plan.dirs.len(), elapsed = ?started.elapsed(), "restore planned");

    let summary = Arc::new(Mutex::new(RestoreSummary::default()));
    let soft = |s: &Mutex<RestoreSummary>, path: &Path, e: &dyn std::fmt::Display| {
        tracing::debug!("{}: {e}", path.display());
        progress.error(path, &e.to_string());
        s.lock()
            .unwrap_or_else(|e| e.into_inner())
            .errors
            .push(FileError {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
    };

    std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    for (dir, _) in &plan.dirs {
        match std::fs::symlink_metadata(dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                let _ = std::fs::remove_file(dir);
                if let Err(e) = std::fs::create_dir(dir) {
                    soft(&summary, dir, &e);
                }
            }
            Err(_) => {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    soft(&summary, dir, &e);
                }
            }
        }
    }

    // Prepare files: skip identical ones, create the others at their final size.
    let files = std::mem::take(&mut plan.files);
    progress.phase(Phase::Restore);
    let total_bytes = files.iter().map(|f| f.node.size).sum();
    progress.total(files.len() as u64, total_bytes, true);
    // In batches: one blocking task per file would cost more than the file itself.
    let mut batches: Vec<Vec<PlannedFile>> = Vec::new();
    let mut files = files.into_iter().peekable();
    while files.peek().is_some() {
        batches.push(files.by_ref().take(PREPARE_BATCH).collect());
    }
    let prepared_batches: Vec<Vec<(PlannedFile, std::io::Result<bool>)>> =
        futures::stream::iter(batches)
            .map(|batch| {
                let key = repo.key().clone();
                tokio::task::spawn_blocking(move || {
                    batch
                        .into_iter()
                        .map(|f| {
                            let r = prepare_file(&f, &key);
                            (f, r)
                        })
                        .collect()
                })
            })
            .buffered(PACK_CONCURRENCY)
            .try_collect()
            .await?;
    let mut prepared: Vec<(PlannedFile, bool)> = Vec::new();
    for (f, r) in prepared_batches.into_iter().flatten() {
        match r {
            Ok(write) => prepared.push((f, write)),
            Err(e) => soft(&summary, &f.dest, &e),
        }
    }

    tracing::debug!(elapsed = ?started.elapsed(), "files prepared");
    // Plan reads by pack.
    let mut by_pack: HashMap<Id, Vec<(PackedBlob, usize, u64)>> = HashMap::new();
    let mut file_paths = Vec::with_capacity(prepared.len());
    // Blob writes each file still waits for: it is done when they are.
    let mut blobs_left = Vec::with_capacity(prepared.len());
    for (i, (f, write)) in prepared.iter().enumerate() {
        file_paths.push(f.dest.clone());
        let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
        if !write {
            s.files_skipped += 1;
            drop(s);
            blobs_left.push(AtomicUsize::new(0));
            progress.advance(1, f.node.size);
            continue;
        }
        s.files_restored += 1;
        drop(s);
        let mut uses = 0;
        for (id, offset) in &f.blobs {
            match repo.blob_location(id) {
                Some(loc) => {
                    uses += 1;
                    by_pack
                        .entry(loc.pack)
                        .or_default()
                        .push((loc.blob, i, *offset));
                }
                None => soft(&summary, &f.dest, &Error::BlobNotInIndex(*id)),
            }
        }
        if uses == 0 {
            progress.advance(1, 0);
        }
        blobs_left.push(AtomicUsize::new(uses));
    }
    let ctx = Arc::new(PackContext {
        repo: repo.clone(),
        files: file_paths,
        blobs_left,
        progress: progress.clone(),
        summary: summary.clone(),
        failed: Mutex::default(),
    });
    futures::stream::iter(by_pack)
        .map(|(pack, uses)| restore_pack(ctx.clone(), pack, uses))
        .buffer_unordered(PACK_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::debug!(elapsed = ?started.elapsed(), "contents written");
    // Metadata, files first, then directories deepest first.
    for (path, target) in &plan.hardlinks {
        let _ = std::fs::remove_file(path);
        match std::fs::hard_link(target, path) {
            Ok(()) => {
                summary
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .files_restored += 1
            }
            Err(e) => soft(&summary, path, &e),
        }
    }
    for (path, node) in &plan.others {
        match create_special(path, node) {
            Ok(true) => {
                summary.lock().unwrap_or_else(|e| e.into_inner()).specials += 1;
                if let Err(e) = set_metadata(path, node, owners) {
                    soft(&summary, path, &e);
                }
            }
            Ok(false) => {}
            Err(e) => soft(&summary, path, &e),
        }
    }
    for (f, _) in &prepared {
        if let Err(e) = set_metadata(&f.dest, &f.node, owners) {
            soft(&summary, &f.dest, &e);
        }
    }
    plan.dirs
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in &plan.dirs {
        if let Err(e) = set_metadata(path, node, owners) {
            soft(&summary, path, &e);
        }
        summary.lock().unwrap_or_else(|e| e.into_inner()).dirs += 1;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "metadata set");
    let s = summary.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(s)
}

/// Plans every entry of `tree`, restored below `dest`; `snap_path` is the tree's path in the
/// snapshot. Returns whether anything below was selected.
#[allow(clippy::too_many_arguments)]
fn plan_tree<'a>(
    repo: &'a Repository,
    tree: Id,
    dest: &'a Path,
    snap_path: &'a Path,
    include: Option<&'a GlobSet>,
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
    include: Option<&GlobSet>,
    selected: bool,
    plan: &mut Plan,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<bool> {
    let sel = selected || include.is_some_and(|g| g.is_match(sp));
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
            if sel || below {
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

/// Leaves an identical file alone (false) or creates it at its final size (true).
fn prepare_file(f: &PlannedFile, key: &crate::format::crypto::MasterKey) -> std::io::Result<bool> {
    let lens: Vec<u64> = f
        .blobs
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .chain(f.blobs.last().map(|l| f.node.size - l.1))
        .collect();
    if is_identical(&f.dest, &f.node, &f.blobs, &lens, key) {
        return Ok(false);
    }
    create_file(&f.dest, f.node.size).map(|_| true)
}

/// Whether `dest` already holds exactly this content.
fn is_identical(
    dest: &Path,
    node: &Node,
    blobs: &[(Id, u64)],
    lens: &[u64],
    key: &crate::format::crypto::MasterKey,
) -> bool {
    let Ok(md) = std::fs::symlink_metadata(dest) else {
        return false;
    };
    if !md.is_file() || md.len() != node.size {
        return false;
    }
    let Ok(mut f) = File::open(dest) else {
        return false;
    };
    let mut buf = Vec::new();
    for ((id, _), len) in blobs.iter().zip(lens) {
        buf.resize(*len as usize, 0);
        if f.read_exact(&mut buf).is_err() || key.blob_id(&buf) != *id {
            return false;
        }
    }
    true
}

fn create_file(dest: &Path, size: u64) -> std::io::Result<()> {
    if let Ok(md) = std::fs::symlink_metadata(dest) {
        if md.is_dir() {
            return Err(std::io::Error::other("a directory is in the way"));
        }
        std::fs::remove_file(dest)?;
    }
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)?;
    f.set_len(size)
}

/// What the per-pack workers share.
struct PackContext {
    repo: Repository,
    files: Vec<PathBuf>,
    /// Per file, the blob writes still to come.
    blobs_left: Vec<AtomicUsize>,
    progress: Arc<dyn Progress>,
    summary: Arc<Mutex<RestoreSummary>>,
    /// Files already reported as failed, so each is reported once.
    failed: Mutex<std::collections::HashSet<usize>>,
}

impl PackContext {
    fn fail(&self, files: impl Iterator<Item = usize>, e: &Error) {
        for file in files {
            if self
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(file)
            {
                let message = e.to_string();
                self.progress.error(&self.files[file], &message);
                self.summary
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .errors
                    .push(FileError {
                        path: self.files[file].clone(),
                        message,
                    });
            }
        }
    }
}

/// Reads the needed blobs of one pack in few ranged reads and writes them where they belong.
async fn restore_pack(
    ctx: Arc<PackContext>,
    pack: Id,
    mut uses: Vec<(PackedBlob, usize, u64)>,
) -> Result<()> {
    uses.sort_by_key(|u| (u.0.offset, u.1, u.2));
    let path = FileKind::Pack.path(&pack);
    let mut rest = uses.as_slice();
    while !rest.is_empty() {
        let start = rest[0].0.offset as u64;
        let mut end = start + rest[0].0.length as u64;
        let mut n = 1;
        while let Some((b, _, _)) = rest.get(n) {
            let b_end = b.offset as u64 + b.length as u64;
            if (b.offset as u64) > end + 256 * 1024 || b_end - start > MAX_READ {
                break;
            }
            end = end.max(b_end);
            n += 1;
        }
        let (group, tail) = rest.split_at(n);
        rest = tail;
        let group = group.to_vec();
        match ctx.repo.operator().read_with(&path).range(start..end).await {
            Ok(buf) => {
                let ctx = ctx.clone();
                let path = path.clone();
                // Decryption, decompression, hashing and file writes are blocking work.
                tokio::task::spawn_blocking(move || {
                    write_group(&ctx, pack, &path, start, &buf.to_bytes(), &group)
                })
                .await?;
            }
            Err(e) => ctx.fail(
                group.iter().map(|u| u.1),
                &Error::storage("read", path.as_str(), e),
            ),
        }
    }
    Ok(())
}

fn write_group(
    ctx: &PackContext,
    pack: Id,
    path: &str,
    start: u64,
    bytes: &[u8],
    group: &[(PackedBlob, usize, u64)],
) {
    let mut last: Option<(Id, Vec<u8>)> = None;
    for (blob, file, offset) in group {
        if last.as_ref().map(|l| l.0) != Some(blob.id) {
            let from = (blob.offset as u64 - start) as usize;
            let loc = crate::repository::index::BlobLocation { pack, blob: *blob };
            let decoded = bytes
                .get(from..from + blob.length as usize)
                .ok_or_else(|| Error::corrupt(path, "shorter than the index says"))
                .and_then(|sealed| ctx.repo.decode_located_blob(&loc, sealed));
            match decoded {
                Ok(plain) => last = Some((blob.id, plain)),
                Err(e) => {
                    // Every use of this blob fails; the files are reported once each.
                    ctx.fail(group.iter().filter(|u| u.0.id == blob.id).map(|u| u.1), &e);
                    last = None;
                    continue;
                }
            }
        }
        let Some((_, plain)) = &last else { continue };
        let dest = &ctx.files[*file];
        let written = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dest)
            .and_then(|f| f.write_all_at(plain, *offset));
        match written {
            Ok(()) => {
                ctx.progress.advance(0, plain.len() as u64);
                if ctx.blobs_left[*file].fetch_sub(1, Ordering::Relaxed) == 1 {
                    ctx.progress.advance(1, 0);
                }
                ctx.summary
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .bytes_written += plain.len() as u64;
            }
            Err(e) => ctx.fail(std::iter::once(*file), &Error::io(dest, e)),
        }
    }
}

/// Creates a symlink, fifo or device; false for sockets, which cannot be restored.
fn create_special(path: &Path, node: &Node) -> std::io::Result<bool> {
    use nix::sys::stat::{Mode, SFlag};
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.is_dir() {
            return Err(std::io::Error::other("a directory is in the way"));
        }
        std::fs::remove_file(path)?;
    }
    let mode = Mode::from_bits_truncate(node.mode as nix::libc::mode_t);
    match node.node_type {
        NodeType::Symlink => {
            let target = node.link_target.clone().unwrap_or_default();
            std::os::unix::fs::symlink(target.as_os_str(), path)?;
        }
        NodeType::Fifo => nix::unistd::mkfifo(path, mode).map_err(std::io::Error::from)?,
        NodeType::Dev | NodeType::Chardev => {
            let kind = if node.node_type == NodeType::Dev {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFCHR
            };
            nix::sys::stat::mknod(path, kind, mode, node.rdev.unwrap_or(0) as nix::libc::dev_t)
                .map_err(std::io::Error::from)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn set_metadata(path: &Path, node: &Node, owners: bool) -> std::io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    if owners {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?;
    }
    if node.node_type != NodeType::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode))?;
    }
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts(node.atime),
        &ts(node.mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(std::io::Error::from)
}
