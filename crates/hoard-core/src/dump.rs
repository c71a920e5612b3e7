//! Dump: one file's contents, or a directory as a tar stream, from a snapshot to any writer
//! (stdout for `hoard dump`), without a restore to disk first.
//!
//! Blobs are fetched one at a time and written as they arrive, so memory stays at one blob
//! whatever the file size. Tar entries are named by their path in the snapshot without the
//! leading `/`; hard links are written as separate files, sockets are left out (tar has no
//! type for them).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeType};
use crate::id::Id;
use crate::repository::{LockNeed, Repository};
use crate::walk::{find_path, Found};

/// Writes the file at `path` as is, or the directory at `path` as a tar archive, to `out`.
/// Runs on a blocking thread (tar and most writers are synchronous) and returns the writer.
/// Holds a shared lock, so that a prune cannot delete packs while they stream out.
pub async fn dump<W: Write + Send + 'static>(
    repo: &Repository,
    root: Id,
    path: &str,
    out: W,
) -> Result<W> {
    repo.locked(LockNeed::Read, |_| dump_unlocked(repo, root, path, out))
        .await
}

async fn dump_unlocked<W: Write + Send + 'static>(
    repo: &Repository,
    root: Id,
    path: &str,
    out: W,
) -> Result<W> {
    let found = find_path(repo, root, path).await?;
    let repo = repo.clone();
    let handle = tokio::runtime::Handle::current();
    let clean = path.trim_matches('/').to_string();
    tokio::task::spawn_blocking(move || {
        let d = Dumper { repo, handle };
        match found {
            Found::Node(n) if n.node_type != NodeType::Dir => {
                if n.node_type != NodeType::File {
                    return Err(Error::invalid(
                        "dump path",
                        format!("{clean} is a {:?}, not a file or directory", n.node_type),
                    ));
                }
                let mut out = out;
                let mut r = d.reader(&n);
                std::io::copy(&mut r, &mut out).map_err(|e| Error::io(&clean, e))?;
                out.flush().map_err(|e| Error::io(&clean, e))?;
                Ok(out)
            }
            Found::Node(n) => {
                let sub = n
                    .subtree
                    .ok_or_else(|| Error::corrupt(clean.clone(), "directory without a tree"))?;
                d.tar(sub, Some(&n), PathBuf::from(&clean), out)
            }
            Found::Root(id) => d.tar(id, None, PathBuf::new(), out),
        }
    })
    .await?
}

struct Dumper {
    repo: Repository,
    handle: tokio::runtime::Handle,
}

impl Dumper {
    fn reader(&self, node: &Node) -> BlobReader<'_> {
        BlobReader {
            d: self,
            ids: node.content.clone().unwrap_or_default(),
            next: 0,
            buf: Vec::new(),
            pos: 0,
            left: node.size,
        }
    }

    /// `dir` is the directory's own node, absent for the snapshot root.
    fn tar<W: Write>(&self, tree: Id, dir: Option<&Node>, path: PathBuf, out: W) -> Result<W> {
        let mut b = tar::Builder::new(out);
        b.follow_symlinks(false);
        if let Some(dir) = dir {
            self.entry(&mut b, &path, dir)?;
        }
        let mut stack = vec![(path, tree)];
        while let Some((dir, id)) = stack.pop() {
            let t = self.handle.block_on(self.repo.load_tree(&id))?;
            let mut subdirs = Vec::new();
            for node in &t.nodes {
                let p = dir.join(node.name.as_os_str());
                self.entry(&mut b, &p, node)?;
                if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                    subdirs.push((p, sub));
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        b.into_inner().map_err(|e| Error::io("tar stream", e))
    }

    fn entry<W: Write>(&self, b: &mut tar::Builder<W>, path: &Path, n: &Node) -> Result<()> {
        let io = |e| Error::io(path, e);
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode);
        h.set_uid(u64::from(n.uid));
        h.set_gid(u64::from(n.gid));
        h.set_mtime(u64::try_from(n.mtime.div_euclid(1_000_000_000)).unwrap_or(0));
        // Names too long for the field are left out rather than failing the dump.
        let _ = h.set_username(&n.user);
        let _ = h.set_groupname(&n.group);
        h.set_size(0);
        match n.node_type {
            NodeType::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, path, std::io::empty()).map_err(io)
            }
            NodeType::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                b.append_data(&mut h, path, self.reader(n)).map_err(io)
            }
            NodeType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = n
                    .link_target
                    .as_ref()
                    .map(|t| t.as_os_str().to_owned())
                    .unwrap_or_default();
                b.append_link(&mut h, path, Path::new(&target)).map_err(io)
            }
            NodeType::Fifo | NodeType::Dev | NodeType::Chardev => {
                h.set_entry_type(match n.node_type {
                    NodeType::Fifo => tar::EntryType::Fifo,
                    NodeType::Dev => tar::EntryType::Block,
                    _ => tar::EntryType::Char,
                });
                if let Some(rdev) = n.rdev {
                    let _ = h.set_device_major(nix::sys::stat::major(rdev) as u32);
                    let _ = h.set_device_minor(nix::sys::stat::minor(rdev) as u32);
                }
                b.append_data(&mut h, path, std::io::empty()).map_err(io)
            }
            NodeType::Socket => Ok(()),
        }
    }
}

/// A file's content, blob by blob; fails if the blobs do not add up to the recorded size
/// (a tar header already promised that many bytes).
struct BlobReader<'a> {
    d: &'a Dumper,
    ids: Vec<Id>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    left: u64,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.get(self.next).copied() else {
                if self.left > 0 {
                    return Err(std::io::Error::other(format!(
                        "content is {} bytes shorter than recorded",
                        self.left
                    )));
                }
                return Ok(0);
            };
            self.next += 1;
            self.buf = self
                .d
                .handle
                .block_on(self.d.repo.read_blob(&id))
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        if n as u64 > self.left {
            return Err(std::io::Error::other("content is longer than recorded"));
        }
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}
