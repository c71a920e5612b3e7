//! Dump: one file's contents, or a directory as a tar or zip stream, from a snapshot to any
//! writer (stdout for `hoard dump`, an upload for `hoard share`), without a restore to disk
//! first.
//!
//! Blobs are fetched one at a time and written as they arrive, so memory stays at one blob
//! whatever the file size. Archive entries are named by their path in the snapshot without
//! the leading `/`; hard links are written as separate files, sockets are left out (neither
//! format has a type for them). Zip has no devices or fifos either, and names in zip are
//! UTF-8 (a name that is not valid UTF-8 is written with U+FFFD in place of the bad bytes);
//! tar keeps every name byte for byte.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeType};
use crate::id::Id;
use crate::repository::{LockNeed, Repository};
use crate::walk::{find_path, Found};

/// How a directory is written out (a file is always written as is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Archive {
    /// POSIX tar (GNU headers): every name byte, owners, modes, devices, symlinks.
    #[default]
    Tar,
    /// Zip with stored (uncompressed) entries and Zip64 where a file needs it: what a
    /// browser user double-clicks. Most of a backup's content is compressed already.
    Zip,
}

/// What [`dump_as`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dumped {
    /// The path is a file; its bytes were written.
    File {
        /// Its size.
        size: u64,
    },
    /// The path is a directory; an archive was written.
    Archive(Archive),
}

/// Writes the file at `path` as is, or the directory at `path` as a tar archive, to `out`.
/// Runs on a blocking thread (tar and most writers are synchronous) and returns the writer.
/// Holds a shared lock, so that a prune cannot delete packs while they stream out.
pub async fn dump<W: Write + Send + 'static>(
    repo: &Repository,
    root: Id,
    path: impl AsRef<[u8]>,
    out: W,
) -> Result<W> {
    dump_as(repo, root, path, Archive::Tar, out)
        .await
        .map(|(w, _)| w)
}

/// [`dump`] with the archive format for a directory chosen, and what was written returned.
pub async fn dump_as<W: Write + Send + 'static>(
    repo: &Repository,
    root: Id,
    path: impl AsRef<[u8]>,
    archive: Archive,
    out: W,
) -> Result<(W, Dumped)> {
    let path = path.as_ref();
    repo.locked(LockNeed::Read, |_| {
        dump_unlocked(repo, root, path, archive, out)
    })
    .await
}

/// [`dump_as`] as a stream of byte pieces, for async consumers (an upload, an HTTP body).
/// The last item is an error if the dump failed: a consumer must not commit what it got
/// before that (the stream just ends after a successful dump). Memory: a few pieces of
/// [`PIECE`] bytes, whatever the size.
pub fn dump_stream(
    repo: &Repository,
    root: Id,
    path: impl AsRef<[u8]>,
    archive: Archive,
) -> tokio::sync::mpsc::Receiver<Result<bytes::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(PIECES_QUEUED);
    let repo = repo.clone();
    let path = path.as_ref().to_vec();
    tokio::spawn(async move {
        let sink = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        let last = match dump_as(&repo, root, &path, archive, sink).await {
            Ok((sink, _)) => sink.finish().await,
            Err(e) => Err(e),
        };
        if let Err(e) = last {
            // A consumer that went away has nothing left to be told.
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

/// What [`dump_stream`] hands over at a time, and how many pieces may wait.
pub const PIECE: usize = 1 << 20;
const PIECES_QUEUED: usize = 4;

/// The dump thread's writer: bytes go to the stream in [`PIECE`]-sized pieces.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(Ok(piece.into()))
            .map_err(|_| std::io::Error::other("the reader of the dump went away"))
    }

    /// The last piece, from async code (the dump thread has returned).
    async fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Ok(self.buf.into()))
            .await
            .map_err(|_| Error::Task("the reader of the dump went away".into()))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Pieces go when full; the last one goes with `finish`.
        Ok(())
    }
}

async fn dump_unlocked<W: Write + Send + 'static>(
    repo: &Repository,
    root: Id,
    path: &[u8],
    archive: Archive,
    out: W,
) -> Result<(W, Dumped)> {
    use std::os::unix::ffi::OsStrExt;
    let found = find_path(repo, root, path).await?;
    let repo = repo.clone();
    let handle = tokio::runtime::Handle::current();
    let trimmed = {
        let start = path.iter().position(|b| *b != b'/').unwrap_or(path.len());
        let end = path
            .iter()
            .rposition(|b| *b != b'/')
            .map_or(start, |e| e + 1);
        &path[start..end.max(start)]
    };
    let base = PathBuf::from(std::ffi::OsStr::from_bytes(trimmed));
    let clean = String::from_utf8_lossy(trimmed).into_owned();
    tokio::task::spawn_blocking(move || {
        let d = Dumper { repo, handle };
        let (tree, dir) = match found {
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
                return Ok((out, Dumped::File { size: n.size }));
            }
            Found::Node(n) => {
                let sub = n
                    .subtree
                    .ok_or_else(|| Error::corrupt(clean.clone(), "directory without a tree"))?;
                (sub, Some(n))
            }
            Found::Root(id) => (id, None),
        };
        let out = match archive {
            Archive::Tar => {
                let mut b = tar::Builder::new(out);
                b.follow_symlinks(false);
                d.walk(tree, dir.as_deref(), base, &mut b)?;
                b.into_inner().map_err(|e| Error::io("tar stream", e))?
            }
            Archive::Zip => {
                let mut z = zip::ZipWriter::new_stream(out);
                d.walk(tree, dir.as_deref(), base, &mut z)?;
                z.finish()
                    .map_err(|e| Error::io("zip stream", std::io::Error::other(e)))?
                    .into_inner()
            }
        };
        Ok((out, Dumped::Archive(archive)))
    })
    .await?
}

struct Dumper {
    repo: Repository,
    handle: tokio::runtime::Handle,
}

/// One archive format's entries; the walk is shared.
trait Entries {
    fn entry(&mut self, d: &Dumper, path: &Path, n: &Node) -> Result<()>;
}

impl Dumper {
    fn reader(&self, node: &Node) -> BlobReader<'_> {
        BlobReader {
            d: self,
            ids: Some(node.content.clone().unwrap_or_default()),
            blobs: None,
            buf: Vec::new(),
            pos: 0,
            left: node.size,
        }
    }

    /// Fetches `ids` in order, [`PREFETCH`] at a time, into a short queue: one blob at a
    /// time would wait a round trip per blob (a few ms each on S3, 80 MB/s at 1 MiB chunks).
    /// The task stops when the reader goes away or a blob fails.
    fn prefetch(&self, ids: Vec<Id>) -> tokio::sync::mpsc::Receiver<Result<Vec<u8>>> {
        use futures::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH);
        let repo = self.repo.clone();
        self.handle.spawn(async move {
            let mut blobs = futures::stream::iter(ids)
                .map(|id| {
                    let repo = repo.clone();
                    async move { repo.read_blob(&id).await }
                })
                .buffered(PREFETCH);
            while let Some(b) = blobs.next().await {
                let failed = b.is_err();
                if tx.send(b).await.is_err() || failed {
                    break;
                }
            }
        });
        rx
    }

    /// Depth first in name order, parents before children. `dir` is the directory's own
    /// node, absent for the snapshot root.
    fn walk(
        &self,
        tree: Id,
        dir: Option<&Node>,
        path: PathBuf,
        out: &mut dyn Entries,
    ) -> Result<()> {
        if let Some(dir) = dir {
            out.entry(self, &path, dir)?;
        }
        let mut stack = vec![(path, tree)];
        while let Some((dir, id)) = stack.pop() {
            let t = self.handle.block_on(self.repo.load_tree(&id))?;
            let mut subdirs = Vec::new();
            for node in &t.nodes {
                let p = dir.join(node.name.as_os_str());
                out.entry(self, &p, node)?;
                if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                    subdirs.push((p, sub));
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }
}

impl<W: Write> Entries for tar::Builder<W> {
    fn entry(&mut self, d: &Dumper, path: &Path, n: &Node) -> Result<()> {
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
                self.append_data(&mut h, path, std::io::empty()).map_err(io)
            }
            NodeType::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                self.append_data(&mut h, path, d.reader(n)).map_err(io)
            }
            NodeType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                self.append_link(&mut h, path, Path::new(&link_target(n)))
                    .map_err(io)
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
                self.append_data(&mut h, path, std::io::empty()).map_err(io)
            }
            NodeType::Socket => Ok(()),
        }
    }
}

impl<W: Write> Entries for zip::ZipWriter<zip::write::StreamWriter<W>> {
    fn entry(&mut self, d: &Dumper, path: &Path, n: &Node) -> Result<()> {
        let zip_err = |e: zip::result::ZipError| Error::io(path, std::io::Error::other(e));
        let name = path.to_string_lossy();
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(n.mode)
            .last_modified_time(zip_time(n.mtime));
        match n.node_type {
            NodeType::Dir => self.add_directory(name, opts).map_err(zip_err),
            NodeType::File => zip_file(self, &name, opts, n.size, &mut d.reader(n))
                .map_err(|e| Error::io(path, e)),
            NodeType::Symlink => {
                let target = link_target(n);
                self.add_symlink(name, target.to_string_lossy(), opts)
                    .map_err(zip_err)
            }
            NodeType::Fifo | NodeType::Dev | NodeType::Chardev | NodeType::Socket => Ok(()),
        }
    }
}

/// One stored file entry; a stream's entries need their size class (Zip64 or not) up front.
fn zip_file<W: Write>(
    z: &mut zip::ZipWriter<zip::write::StreamWriter<W>>,
    name: &str,
    opts: zip::write::SimpleFileOptions,
    size: u64,
    content: &mut dyn Read,
) -> std::io::Result<()> {
    let opts = opts.large_file(size >= u64::from(u32::MAX));
    z.start_file(name, opts).map_err(std::io::Error::other)?;
    std::io::copy(content, z)?;
    Ok(())
}

fn link_target(n: &Node) -> std::ffi::OsString {
    n.link_target
        .as_ref()
        .map(|t| t.as_os_str().to_owned())
        .unwrap_or_default()
}

/// Zip's MS-DOS time: local-time-free, two-second steps, 1980–2107; outside that, 1980.
fn zip_time(mtime_ns: i64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    chrono::DateTime::from_timestamp(mtime_ns.div_euclid(1_000_000_000), 0)
        .and_then(|t| {
            let year = u16::try_from(t.year()).ok()?;
            zip::DateTime::from_date_and_time(
                year,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

/// Blobs in flight per file being read.
const PREFETCH: usize = 4;

/// A file's content, blob by blob, fetched ahead from the first read on; fails if the blobs
/// do not add up to the recorded size (an archive header already promised that many bytes).
struct BlobReader<'a> {
    d: &'a Dumper,
    /// Until the first read.
    ids: Option<Vec<Id>>,
    blobs: Option<tokio::sync::mpsc::Receiver<Result<Vec<u8>>>>,
    buf: Vec<u8>,
    pos: usize,
    left: u64,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if let Some(ids) = self.ids.take() {
                self.blobs = Some(self.d.prefetch(ids));
            }
            let next = match &mut self.blobs {
                Some(rx) => rx.blocking_recv(),
                None => None,
            };
            let Some(blob) = next else {
                if self.left > 0 {
                    return Err(std::io::Error::other(format!(
                        "content is {} bytes shorter than recorded",
                        self.left
                    )));
                }
                return Ok(0);
            };
            self.buf = blob.map_err(std::io::Error::other)?;
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};

    use super::*;

    /// Writes runs of zeros as holes, so a 4 GiB archive costs no disk.
    struct Sparse(std::fs::File);

    impl Write for Sparse {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.iter().all(|b| *b == 0) {
                self.0.seek(SeekFrom::Current(buf.len() as i64))?;
                Ok(buf.len())
            } else {
                self.0.write(buf)
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Entries that start past 4 GiB need Zip64 offsets, and readers must find them: zip 7
    /// wrote central records that Info-ZIP and Python refused. Checked with the zip crate's
    /// reader and with Python's zipfile, an independent one.
    #[test]
    fn zip_entries_past_four_gib_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.zip");
        let big = (4u64 << 30) + 4097;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(0o640);
        let mut z = zip::ZipWriter::new_stream(Sparse(std::fs::File::create(&path).unwrap()));
        zip_file(
            &mut z,
            "zeros",
            opts,
            big,
            &mut std::io::repeat(0).take(big),
        )
        .unwrap();
        zip_file(&mut z, "after", opts, 5, &mut &b"hello"[..]).unwrap();
        let mut out = z.finish().unwrap().into_inner().0;
        let end = out.stream_position().unwrap();
        out.set_len(end).unwrap();
        drop(out);

        let mut a = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(a.by_name("zeros").unwrap().size(), big);
        let mut after = String::new();
        a.by_name("after")
            .unwrap()
            .read_to_string(&mut after)
            .unwrap();
        assert_eq!(after, "hello");

        let check = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.read('after') == b'hello'\nassert z.getinfo('zeros').file_size == int(sys.argv[2])\n";
        let py = std::process::Command::new("python3")
            .args(["-c", check])
            .arg(&path)
            .arg(big.to_string())
            .output()
            .unwrap();
        assert!(
            py.status.success(),
            "{}",
            String::from_utf8_lossy(&py.stderr)
        );
    }
}
