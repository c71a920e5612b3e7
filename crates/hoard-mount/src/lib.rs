//! A read-only FUSE view of a repository, laid out as restic's `mount`:
//!
//! ```text
//! ids/<short id>/…              every snapshot's tree
//! snapshots/<time>  -> ../ids/<short id>, and snapshots/latest -> the newest
//! hosts/<host>/<time>  -> ../../ids/<short id>
//! tags/<tag>/<time>    -> ../../ids/<short id>
//! ```
//!
//! Trees are loaded when a directory is first looked at, and a file is read blob by blob
//! where it is read: the blob holding an offset is found from the index's plaintext lengths,
//! so reading the middle of a 10 GiB file fetches only the blobs there. Recently read blobs
//! are kept (a few MiB) so that the kernel's 128 KiB reads do not fetch a blob for each.
//!
//! FUSE calls arrive on the session's own threads; storage is asynchronous, so each call
//! blocks on the runtime it was given. Inode numbers are handed out as entries are first
//! seen and live as long as the mount.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request,
};
use hoard_core::{Id, Node, NodeType, Repository, SnapshotEntry, Tree};

/// How long the kernel may cache names and attributes: nothing here ever changes.
const TTL: Duration = Duration::from_secs(3600);
/// Decoded blobs kept for reads that come back to them.
const BLOB_CACHE: usize = 8;
/// Trees kept in memory; beyond this the oldest are dropped (and reloaded when needed).
const TREE_CACHE: usize = 4096;
/// Files whose blob offsets are kept; beyond this the oldest are dropped (and recomputed
/// from the index when read again).
const OFFSET_CACHE: usize = 4096;

/// What one inode is.
#[derive(Clone)]
enum Inode {
    /// A directory made up for the layout, with its entries.
    Virtual {
        entries: Vec<(Vec<u8>, u64)>,
        time: i64,
    },
    /// A symlink made up for the layout.
    Link { target: Vec<u8>, time: i64 },
    /// A snapshot's root directory.
    Snapshot { tree: Id, time: i64 },
    /// An entry of a snapshot's tree.
    Entry(Box<Node>),
}

#[derive(Default)]
struct State {
    inodes: Vec<Inode>,
    /// (parent inode, name) → inode, for entries of snapshot trees.
    children: HashMap<(u64, Vec<u8>), u64>,
    trees: HashMap<Id, Arc<Tree>>,
    tree_order: VecDeque<Id>,
    blobs: VecDeque<(Id, Arc<Vec<u8>>)>,
    /// Per file inode: where each of its blobs starts.
    offsets: HashMap<u64, Arc<Vec<u64>>>,
    offset_order: VecDeque<u64>,
}

impl State {
    fn add(&mut self, inode: Inode) -> u64 {
        self.inodes.push(inode);
        // Inode 1 is the root; inodes[0] is that root.
        self.inodes.len() as u64
    }

    fn get(&self, ino: u64) -> Option<&Inode> {
        self.inodes.get(ino.checked_sub(1)? as usize)
    }
}

/// The mounted file system.
pub struct HoardFs {
    repo: Repository,
    rt: tokio::runtime::Handle,
    state: Mutex<State>,
    uid: u32,
    gid: u32,
}

fn ns(t: &chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(0)
}

fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// A directory name for a snapshot's time, as restic names them; a second snapshot of the
/// same second gets `-1`, `-2`, ….
fn time_name(s: &SnapshotEntry, taken: &mut HashMap<String, u32>) -> String {
    let base = s.snapshot.time.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let n = taken.entry(base.clone()).or_default();
    *n += 1;
    if *n == 1 {
        base
    } else {
        format!("{base}-{}", *n - 1)
    }
}

impl HoardFs {
    /// The layout for `snapshots`, of `repo`, reading through `rt`.
    pub fn new(repo: Repository, snapshots: &[SnapshotEntry], rt: tokio::runtime::Handle) -> Self {
        let mut st = State::default();
        let now = ns(&chrono::Utc::now());
        let root = st.add(Inode::Virtual {
            entries: Vec::new(),
            time: now,
        });
        let mut snaps: Vec<&SnapshotEntry> = snapshots.iter().collect();
        snaps.sort_by_key(|s| s.snapshot.time);
        let mut ids = Vec::new();
        let mut by_time = Vec::new();
        let mut hosts: HashMap<String, Vec<(Vec<u8>, u64)>> = HashMap::new();
        let mut tags: HashMap<String, Vec<(Vec<u8>, u64)>> = HashMap::new();
        let mut taken = HashMap::new();
        for s in &snaps {
            let time = ns(&s.snapshot.time);
            let short = s.short_id();
            let dir = st.add(Inode::Snapshot {
                tree: s.snapshot.tree,
                time,
            });
            ids.push((short.clone().into_bytes(), dir));
            let name = time_name(s, &mut taken).into_bytes();
            let link = |st: &mut State, up: &str| {
                st.add(Inode::Link {
                    target: format!("{up}ids/{short}").into_bytes(),
                    time,
                })
            };
            let l = link(&mut st, "../");
            by_time.push((name.clone(), l));
            let l = link(&mut st, "../../");
            hosts
                .entry(s.snapshot.hostname.clone())
                .or_default()
                .push((name.clone(), l));
            for t in &s.snapshot.tags {
                let l = link(&mut st, "../../");
                tags.entry(t.clone()).or_default().push((name.clone(), l));
            }
        }
        if let Some((newest, _)) = by_time.last() {
            let target = newest.clone();
            let l = st.add(Inode::Link { target, time: now });
            by_time.push((b"latest".to_vec(), l));
        }
        let group = |st: &mut State, map: HashMap<String, Vec<(Vec<u8>, u64)>>| {
            let mut entries: Vec<(Vec<u8>, u64)> = map
                .into_iter()
                .map(|(k, v)| {
                    let ino = st.add(Inode::Virtual {
                        entries: v,
                        time: now,
                    });
                    (k.into_bytes(), ino)
                })
                .collect();
            entries.sort();
            st.add(Inode::Virtual { entries, time: now })
        };
        let hosts = group(&mut st, hosts);
        let tags = group(&mut st, tags);
        let ids = st.add(Inode::Virtual {
            entries: ids,
            time: now,
        });
        let snapshots_dir = st.add(Inode::Virtual {
            entries: by_time,
            time: now,
        });
        st.inodes[(root - 1) as usize] = Inode::Virtual {
            entries: vec![
                (b"hosts".to_vec(), hosts),
                (b"ids".to_vec(), ids),
                (b"snapshots".to_vec(), snapshots_dir),
                (b"tags".to_vec(), tags),
            ],
            time: now,
        };
        HoardFs {
            repo,
            rt,
            state: Mutex::new(st),
            uid: nix_uid(),
            gid: nix_gid(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attr(&self, ino: u64, inode: &Inode) -> FileAttr {
        let (kind, perm, size, time, uid, gid, nlink) = match inode {
            Inode::Virtual { time, .. } | Inode::Snapshot { time, .. } => {
                (FileType::Directory, 0o555, 0, *time, self.uid, self.gid, 2)
            }
            Inode::Link { target, time } => (
                FileType::Symlink,
                0o777,
                target.len() as u64,
                *time,
                self.uid,
                self.gid,
                1,
            ),
            Inode::Entry(n) => {
                let kind = match n.node_type {
                    NodeType::Dir => FileType::Directory,
                    NodeType::File => FileType::RegularFile,
                    NodeType::Symlink => FileType::Symlink,
                    NodeType::Dev => FileType::BlockDevice,
                    NodeType::Chardev => FileType::CharDevice,
                    NodeType::Fifo => FileType::NamedPipe,
                    NodeType::Socket => FileType::Socket,
                };
                let size = match n.node_type {
                    NodeType::Symlink => n.link_target.as_ref().map_or(0, |t| t.0.len() as u64),
                    _ => n.size,
                };
                let nlink = if n.node_type == NodeType::Dir { 2 } else { 1 };
                (
                    kind,
                    (n.mode & 0o7777) as u16,
                    size,
                    n.mtime,
                    n.uid,
                    n.gid,
                    nlink,
                )
            }
        };
        let t = system_time(time);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The tree `id`, from memory or storage.
    fn tree(&self, id: &Id) -> Result<Arc<Tree>, Errno> {
        if let Some(t) = self.lock().trees.get(id) {
            return Ok(t.clone());
        }
        let tree = self
            .rt
            .block_on(self.repo.load_tree(id))
            .map_err(|e| failed("tree", id, &e))?;
        let tree = Arc::new(tree);
        let mut st = self.lock();
        st.trees.insert(*id, tree.clone());
        st.tree_order.push_back(*id);
        while st.tree_order.len() > TREE_CACHE {
            if let Some(old) = st.tree_order.pop_front() {
                st.trees.remove(&old);
            }
        }
        Ok(tree)
    }

    /// The tree behind a directory inode, if it is one of a snapshot.
    fn tree_of(&self, ino: u64) -> Result<Option<Arc<Tree>>, Errno> {
        let id = match self.lock().get(ino) {
            Some(Inode::Snapshot { tree, .. }) => *tree,
            Some(Inode::Entry(n)) if n.node_type == NodeType::Dir => match n.subtree {
                Some(t) => t,
                None => return Err(Errno::EIO),
            },
            Some(Inode::Entry(_)) => return Err(Errno::ENOTDIR),
            Some(_) => return Ok(None),
            None => return Err(Errno::ENOENT),
        };
        self.tree(&id).map(Some)
    }

    /// The inode of a tree entry, given out the first time it is seen.
    fn child(&self, parent: u64, node: &Node) -> u64 {
        let mut st = self.lock();
        let key = (parent, node.name.0.clone());
        if let Some(ino) = st.children.get(&key) {
            return *ino;
        }
        let ino = st.add(Inode::Entry(Box::new(node.clone())));
        st.children.insert(key, ino);
        ino
    }

    /// A blob's plaintext, from the recent ones or storage.
    fn blob(&self, id: &Id) -> Result<Arc<Vec<u8>>, Errno> {
        if let Some((_, b)) = self.lock().blobs.iter().find(|(b, _)| b == id) {
            return Ok(b.clone());
        }
        let data = self
            .rt
            .block_on(self.repo.read_blob(id))
            .map_err(|e| failed("blob", id, &e))?;
        let data = Arc::new(data);
        let mut st = self.lock();
        st.blobs.push_back((*id, data.clone()));
        while st.blobs.len() > BLOB_CACHE {
            st.blobs.pop_front();
        }
        Ok(data)
    }

    /// Where each blob of a file starts, computed once per file from the index.
    fn offsets(&self, ino: u64, content: &[Id]) -> Result<Arc<Vec<u64>>, Errno> {
        if let Some(o) = self.lock().offsets.get(&ino) {
            return Ok(o.clone());
        }
        let mut starts = Vec::with_capacity(content.len() + 1);
        let mut at = 0u64;
        for id in content {
            starts.push(at);
            at += self.repo.blob_len(id).ok_or_else(|| {
                tracing::warn!("blob {} is not in the index", id.short());
                Errno::EIO
            })?;
        }
        starts.push(at);
        let starts = Arc::new(starts);
        let mut st = self.lock();
        if st.offsets.insert(ino, starts.clone()).is_none() {
            st.offset_order.push_back(ino);
        }
        while st.offset_order.len() > OFFSET_CACHE {
            if let Some(old) = st.offset_order.pop_front() {
                st.offsets.remove(&old);
            }
        }
        Ok(starts)
    }
}

fn failed(what: &str, id: &Id, e: &hoard_core::Error) -> Errno {
    tracing::warn!("cannot read {what} {}: {e}", id.short());
    Errno::EIO
}

fn nix_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

fn nix_gid() -> u32 {
    // SAFETY: getgid cannot fail.
    unsafe { libc::getgid() }
}

impl Filesystem for HoardFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = u64::from(parent);
        let virtual_child = match self.lock().get(parent) {
            Some(Inode::Virtual { entries, .. }) => Some(
                entries
                    .iter()
                    .find(|(n, _)| n.as_slice() == name.as_bytes())
                    .map(|(_, ino)| *ino),
            ),
            _ => None,
        };
        let ino = match virtual_child {
            Some(Some(ino)) => ino,
            Some(None) => return reply.error(Errno::ENOENT),
            None => match self.tree_of(parent) {
                Ok(Some(tree)) => match tree.find(name.as_bytes()) {
                    Some(node) => self.child(parent, node),
                    None => return reply.error(Errno::ENOENT),
                },
                Ok(None) => return reply.error(Errno::ENOENT),
                Err(e) => return reply.error(e),
            },
        };
        let inode = self.lock().get(ino).cloned();
        match inode {
            Some(i) => reply.entry(&TTL, &self.attr(ino, &i), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ino = u64::from(ino);
        let inode = self.lock().get(ino).cloned();
        match inode {
            Some(i) => reply.attr(&TTL, &self.attr(ino, &i)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.lock().get(u64::from(ino)) {
            Some(Inode::Link { target, .. }) => reply.data(target),
            Some(Inode::Entry(n)) if n.node_type == NodeType::Symlink => {
                reply.data(n.link_target.as_ref().map_or(&[][..], |t| &t.0))
            }
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let ino = u64::from(ino);
        let content = match self.lock().get(ino) {
            Some(Inode::Entry(n)) if n.node_type == NodeType::File => {
                n.content.clone().unwrap_or_default()
            }
            _ => return reply.error(Errno::EISDIR),
        };
        let starts = match self.offsets(ino, &content) {
            Ok(s) => s,
            Err(e) => return reply.error(e),
        };
        let file_len = starts.last().copied().unwrap_or(0);
        let end = offset.saturating_add(u64::from(size)).min(file_len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        // The blob that holds `offset`, then on until `end`.
        let mut i = starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let mut at = offset;
        while at < end && i < content.len() {
            let blob = match self.blob(&content[i]) {
                Ok(b) => b,
                Err(e) => return reply.error(e),
            };
            let from = (at - starts[i]) as usize;
            let to = ((end - starts[i]) as usize).min(blob.len());
            if from >= to {
                break;
            }
            out.extend_from_slice(&blob[from..to]);
            at = starts[i] + to as u64;
            i += 1;
        }
        reply.data(&out);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = u64::from(ino);
        let mut entries: Vec<(u64, FileType, Vec<u8>)> = vec![
            (dir, FileType::Directory, b".".to_vec()),
            (dir, FileType::Directory, b"..".to_vec()),
        ];
        let listed = match self.lock().get(dir) {
            Some(Inode::Virtual { entries, .. }) => Some(entries.clone()),
            _ => None,
        };
        match listed {
            Some(list) => {
                for (name, ino) in list {
                    let kind = match self.lock().get(ino) {
                        Some(Inode::Link { .. }) => FileType::Symlink,
                        _ => FileType::Directory,
                    };
                    entries.push((ino, kind, name));
                }
            }
            None => match self.tree_of(dir) {
                Ok(Some(tree)) => {
                    for node in &tree.nodes {
                        let ino = self.child(dir, node);
                        let inode = Inode::Entry(Box::new(node.clone()));
                        entries.push((ino, self.attr(ino, &inode).kind, node.name.0.clone()));
                    }
                }
                Ok(None) => return reply.error(Errno::ENOENT),
                Err(e) => return reply.error(e),
            },
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mounts `fs` read-only at `mountpoint` on a background session; dropping or unmounting
/// the session unmounts it. `allow_other` lets other users (and root) read it.
pub fn mount(
    fs: HoardFs,
    mountpoint: &Path,
    allow_other: bool,
) -> std::io::Result<fuser::BackgroundSession> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("hoard".into()),
        MountOption::Subtype("hoard".into()),
        MountOption::DefaultPermissions,
    ];
    if allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(4);
    fuser::spawn_mount(fs, mountpoint, &config)
}
