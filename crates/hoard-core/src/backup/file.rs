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
pub(super) fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::other(format!(
            "no longer a regular file ({kind:?}): skipped"
        )));
    }
    // Regular files ignore O_NONBLOCK; clear it all the same, so reads are plain reads.
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(&file, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
        let _ = fcntl(&file, FcntlArg::F_SETFL(flags));
    }
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
}
