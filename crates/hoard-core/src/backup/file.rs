//! Reading one file: FastCDC chunks handed to the saver (FORMAT.md "Chunking").

use std::fs::File;
use std::path::Path;

use super::saver::SaverHandle;
use super::CancelToken;
use crate::buffers::Buffer;
use crate::error::Error;
use crate::format::chunker::Chunks;
use crate::format::config::ChunkerParams;
use crate::format::tree::Node;
use crate::progress::Progress;

pub(super) enum ReadError {
    /// This file is left out; the backup goes on.
    Soft(std::io::Error),
    /// The repository side failed; the backup stops.
    Fatal(Error),
}

/// Opens what the walk listed as a regular file, without trusting that it still is one: the
/// open does not block (a FIFO or device swapped in since the listing would block it
/// forever) and does not follow a symlink swapped in, and the type is checked again on the
/// open file.
///
/// Reading does not touch the file's access time where the kernel allows that (`O_NOATIME`:
/// the owner or root), as restic does: a daily backup would otherwise write every inode it
/// reads once a day (relatime), and every time on a file system mounted `strictatime`, and
/// tools that go by access times would see every file as just used.
pub(super) fn open_regular(path: &Path) -> std::io::Result<File> {
    use nix::libc::{O_NOATIME, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK};
    use std::os::unix::fs::OpenOptionsExt;
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | flags)
            .open(path)
    };
    // EPERM: someone else's file, which only root may read without touching its atime.
    let (file, noatime) = match open(O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => (open(0)?, 0),
        opened => (opened?, O_NOATIME),
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::other(format!(
            "no longer a regular file ({kind:?}): skipped"
        )));
    }
    // Regular files ignore O_NONBLOCK; clear it all the same, so reads are plain reads. The
    // flags F_SETFL sets are all known here (only these two were asked for), so there is no
    // need to read them first.
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let _ = fcntl(&file, FcntlArg::F_SETFL(OFlag::from_bits_truncate(noatime)));
    Ok(file)
}

/// Chunks one file and stores its new chunks; fills in `node.content` and `node.size`.
pub(super) fn read_file(
    saver: &SaverHandle,
    params: &ChunkerParams,
    path: &Path,
    node: &mut Node,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<(), ReadError> {
    let file = open_regular(path).map_err(ReadError::Soft)?;
    // Where a test holds a reader as a hung network mount would.
    crate::testhook::hook_blocking("file-read");
    let mut content = Vec::new();
    let mut size = 0u64;
    let mut store = |data: Buffer| -> Result<(), ReadError> {
        if cancel.is_cancelled() {
            return Err(ReadError::Fatal(Error::Interrupted));
        }
        size += data.len() as u64;
        progress.advance(0, data.len() as u64);
        let (id, _) = saver.save_data_blocking(data).map_err(ReadError::Fatal)?;
        content.push(id);
        Ok(())
    };
    // Small files too go through the chunker: a file listed small may have grown since (a
    // log being written, a large file moved over a small one), and one read to its end would
    // hold all of it in memory as one chunk larger than any chunk may be. Read whole in one
    // go, a small file's buffer is handed on as its only chunk.
    for chunk in Chunks::new(params, file, saver.buffers()) {
        store(chunk.map_err(ReadError::Soft)?)?;
    }
    node.size = size;
    node.content = Some(content);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_fifo_or_symlink_in_place_of_a_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        // A blocking open would wait for a writer forever; this one answers at once.
        let e = open_regular(&fifo).unwrap_err();
        assert!(e.to_string().contains("no longer a regular file"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"data").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_regular(&link).is_err(), "a symlink is not followed");
        let mut f = open_regular(&file).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");
    }

    /// Reading a file for a backup leaves its access time as it was, and what is read is
    /// read with plain (blocking) reads.
    #[test]
    fn reading_leaves_the_access_time_alone() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"data").unwrap();
        // An access time older than the mtime: relatime would update it on the next read.
        let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
        let now = nix::sys::time::TimeSpec::new(2_000_000_000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &file,
            &old,
            &now,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let mut f = open_regular(&file).unwrap();
        let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & nix::libc::O_NONBLOCK, 0, "reads block as usual");
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");
        drop(f);
        assert_eq!(std::fs::metadata(&file).unwrap().atime(), 1_000_000_000);
    }
}
