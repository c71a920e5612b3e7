//! Reading one file: FastCDC chunks handed to the saver (FORMAT.md "Chunking").

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::saver::SaverHandle;
use super::CancelToken;
use crate::error::Error;
use crate::format::config::ChunkerParams;
use crate::format::tree::Node;
use crate::progress::Progress;

pub(super) enum ReadError {
    /// This file is left out; the backup goes on.
    Soft(std::io::Error),
    /// The repository side failed; the backup stops.
    Fatal(Error),
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
    let mut file = File::open(path).map_err(ReadError::Soft)?;
    let mut content = Vec::new();
    let mut size = 0u64;
    let mut store = |data: Vec<u8>| -> Result<(), ReadError> {
        if cancel.is_cancelled() {
            return Err(ReadError::Fatal(Error::Interrupted));
        }
        size += data.len() as u64;
        progress.advance(0, data.len() as u64);
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
        let chunker = crate::format::chunker::stream(params, file);
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
