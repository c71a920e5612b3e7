//! Backing up one stream (a database dump on stdin, a command's output) as one file.
//!
//! The stream is chunked as it arrives and handed to the same saver as a file backup, so
//! memory stays at the chunker's buffer and the saver's queue whatever the stream's size. A
//! read error, or the end of a stream whose producer failed, fails the backup: its data and
//! index are stored (a retry reuses them) but no snapshot is written, because a snapshot of a
//! half-written dump would restore as if it were whole.
//!
//! The file sits at `/<filename>` in the snapshot (restic's layout for `--stdin`), in
//! directories made up for it when the name has several components.

use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::archiver::until_cancelled;
use super::counters::{bump, Counters};
use super::saver::{BlobSaver, IndexMode, SaverHandle};
use super::{new_snapshot, save_snapshot, BackupResult, CancelToken};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeType, RawName, Tree};
use crate::id::Id;
use crate::progress::{Phase, Progress};
use crate::repository::{Lease, LockNeed, Repository};

/// What a stream backup records.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// The stream's path in the snapshot (`dump.sql`, `db/dump.sql`); empty means `stdin`,
    /// as in restic.
    pub filename: String,
    /// Defaults to this machine's hostname.
    pub host: Option<String>,
    /// Tags recorded in the snapshot.
    pub tags: Vec<String>,
    /// Defaults to now.
    pub time: Option<DateTime<Utc>>,
    /// Stops the backup early, as for a file backup.
    pub cancel: Option<CancelToken>,
}

/// Backs up everything `reader` yields, until its end, as the file `opts.filename`.
pub async fn backup_stream<R: Read + Send + 'static>(
    repo: &Repository,
    opts: StreamOptions,
    reader: R,
    progress: Arc<dyn Progress>,
) -> Result<BackupResult> {
    let name = if opts.filename.is_empty() {
        "stdin".to_string()
    } else {
        opts.filename.clone()
    };
    let components = components(&name)?;
    repo.locked(LockNeed::Append, |lease| async move {
        stream_locked(repo, &opts, &name, components, reader, progress, &lease).await
    })
    .await
}

/// The path's components, refusing what cannot be a path in a snapshot.
fn components(name: &str) -> Result<Vec<Vec<u8>>> {
    let parts: Vec<&str> = name.trim_start_matches('/').split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(Error::invalid(
            "stdin filename",
            format!("{name:?}: give a file name or a relative path like db/dump.sql"),
        ));
    }
    Ok(parts.into_iter().map(|p| p.as_bytes().to_vec()).collect())
}

async fn stream_locked<R: Read + Send + 'static>(
    repo: &Repository,
    opts: &StreamOptions,
    name: &str,
    mut components: Vec<Vec<u8>>,
    reader: R,
    progress: Arc<dyn Progress>,
    lock: &Lease,
) -> Result<BackupResult> {
    let start = Utc::now();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let counters = Arc::new(Counters::default());
    let saver = BlobSaver::new(repo, counters.clone(), IndexMode::Write, cores, 2);
    let handle = saver
        .handle()
        .ok_or_else(|| Error::Task("saver closed".into()))?;
    progress.phase(Phase::Backup);
    progress.total(1, 0, false);
    let cancel = opts.cancel.clone().unwrap_or_default();
    let read = {
        let (handle, progress, cancel) = (handle.clone(), progress.clone(), cancel.clone());
        let params = repo.config().chunker;
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            read_stream(&handle, &params, reader, &*progress, &cancel, &name)
        })
    };
    // A stream that blocks (a producer that hangs) must not keep a cancelled backup waiting:
    // the read is abandoned, and ends with the process.
    let read = match until_cancelled(&cancel, read).await {
        Ok(joined) => joined
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|r| r),
        Err(e) => Err(e),
    };
    // Whatever was stored is indexed before the outcome counts, so that a retry reuses it.
    let root = match read {
        Ok((content, size)) => {
            let file_name = components.pop().unwrap_or_default();
            progress.advance(1, 0);
            progress.file_done(std::path::Path::new(name), size, true);
            bump(&counters.files_new, 1);
            bump(&counters.bytes_processed, size);
            save_trees(&handle, &counters, components, file_name, content, size).await
        }
        Err(e) => Err(e),
    };
    drop(handle);
    saver.finish().await?;
    let root = root?;
    let summary = counters.summary(start, Utc::now());
    let snapshot = Snapshot {
        time: opts.time.unwrap_or(start),
        tree: root,
        paths: vec![format!("/{}", name.trim_start_matches('/'))],
        hostname: opts.host.clone().unwrap_or_else(crate::host::hostname),
        tags: opts.tags.clone(),
        summary: Some(summary.clone()),
        ..new_snapshot()
    };
    let snapshot = save_snapshot(repo, lock, snapshot).await?;
    Ok(BackupResult {
        snapshot,
        summary,
        errors: Vec::new(),
        written: super::Written::Saved,
    })
}

/// Chunks the stream to its end; returns its blob ids and length.
fn read_stream<R: Read>(
    saver: &SaverHandle,
    params: &crate::format::config::ChunkerParams,
    reader: R,
    progress: &dyn Progress,
    cancel: &CancelToken,
    name: &str,
) -> Result<(Vec<Id>, u64)> {
    let mut content = Vec::new();
    let mut size = 0u64;
    for chunk in crate::format::chunker::Chunks::new(params, reader, saver.buffers()) {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let chunk = chunk.map_err(|source| Error::StreamFailed {
            name: name.to_string(),
            source,
        })?;
        size += chunk.len() as u64;
        progress.advance(0, chunk.len() as u64);
        let (id, _) = saver.save_data_blocking(chunk)?;
        content.push(id);
    }
    Ok((content, size))
}

/// Stores the file's node in its made-up directories, innermost first; returns the root tree.
async fn save_trees(
    saver: &SaverHandle,
    counters: &Counters,
    dirs: Vec<Vec<u8>>,
    file_name: Vec<u8>,
    content: Vec<Id>,
    size: u64,
) -> Result<Id> {
    let mut node = made_up(file_name, NodeType::File, 0o644);
    node.size = size;
    node.content = Some(content);
    for dir in dirs.into_iter().rev() {
        let subtree = saver.save_tree(&Tree { nodes: vec![node] }).await?;
        bump(&counters.dirs_new, 1);
        node = made_up(dir, NodeType::Dir, 0o755);
        node.subtree = Some(subtree);
    }
    saver.save_tree(&Tree { nodes: vec![node] }).await
}

/// A node for something that has no file on disk: owned by this process, dated now.
fn made_up(name: Vec<u8>, node_type: NodeType, mode: u32) -> Node {
    let names = crate::host::NameCache::default();
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    Node {
        name: RawName(name),
        node_type,
        mode,
        uid,
        gid,
        user: names.user(uid),
        group: names.group(gid),
        mtime: now,
        atime: now,
        ctime: now,
        inode: 0,
        device: 0,
        links: 1,
        size: 0,
        link_target: None,
        rdev: None,
        content: None,
        subtree: None,
        xattrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::components;

    #[test]
    fn stream_names_are_relative_paths_without_dot_components() {
        assert_eq!(components("dump.sql").unwrap(), vec![b"dump.sql".to_vec()]);
        assert_eq!(
            components("/db/dump.sql").unwrap(),
            vec![b"db".to_vec(), b"dump.sql".to_vec()]
        );
        for bad in ["", "db/", "a//b", "../x", "a/./b", "a\0b"] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
    }
}
