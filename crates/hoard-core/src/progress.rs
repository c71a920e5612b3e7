//! Progress reporting. The engine never prints; a front end implements [`Progress`] (the CLI
//! draws a bar on a terminal and emits JSON status lines otherwise).
//!
//! Every operation reports the same way: [`Progress::phase`] when a phase starts,
//! [`Progress::total`] with what the phase has to do, [`Progress::advance`] as work gets done.
//! So `done / total` is the fraction of the phase, and it ends at 1 when nothing went wrong.
//! Totals never shrink. A backup learns its totals from a scan of the paths that runs
//! beside it (only when [`Progress::wants_totals`] says so: it costs one more directory
//! walk), so its totals grow until the last `total` call says `complete`.

use std::path::{Path, PathBuf};

/// The phases of the operations, in the order each operation goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// backup: items are regular files, bytes their contents (files taken over unchanged
    /// from the parent snapshot count as done without being read).
    Backup,
    /// restore: items are files, bytes their contents.
    Restore,
    /// prune: finding what snapshots use; items are snapshots.
    PruneMark,
    /// prune: copying used blobs out of partly used packs; items are packs, bytes their size.
    PruneRepack,
    /// prune: deleting packs and index files; items are files.
    PruneDelete,
    /// check: reading index files; items are index files.
    CheckIndex,
    /// check: walking every snapshot's trees; items are snapshots.
    CheckSnapshots,
    /// check with read-data: downloading and verifying packs; items are packs, bytes their
    /// size.
    CheckData,
    /// repair index: reading pack headers; items are packs.
    RepairIndex,
    /// repair packs: salvaging blobs from damaged packs; items are blobs, bytes their size.
    RepairPacks,
    /// copy: snapshots copied into another repository; items are snapshots, bytes the
    /// blobs read from the source.
    Copy,
}

impl Phase {
    /// A short name for displays ("backup", "prune: repack", …).
    pub fn label(self) -> &'static str {
        match self {
            Phase::Backup => "backup",
            Phase::Restore => "restore",
            Phase::PruneMark => "prune: mark",
            Phase::PruneRepack => "prune: repack",
            Phase::PruneDelete => "prune: delete",
            Phase::CheckIndex => "check: index",
            Phase::CheckSnapshots => "check: snapshots",
            Phase::CheckData => "check: data",
            Phase::RepairIndex => "repair: index",
            Phase::RepairPacks => "repair: packs",
            Phase::Copy => "copy",
        }
    }
}

/// Receives progress events. Called from worker threads, so implementations must be cheap
/// and thread-safe; every method has an empty default.
pub trait Progress: Send + Sync {
    /// A phase starts; what follows counts toward it.
    fn phase(&self, _phase: Phase) {}
    /// What the current phase has to do so far: `items` and `bytes` in all (see [`Phase`] for
    /// what an item is). Called again with larger numbers while they grow; `complete` says
    /// they will not grow again.
    fn total(&self, _items: u64, _bytes: u64, _complete: bool) {}
    /// `items` more items and `bytes` more bytes of the current phase are done.
    fn advance(&self, _items: u64, _bytes: u64) {}
    /// A file is finished (backup: `read` is false when its content was taken over from the
    /// parent snapshot; restore: `read` is true when it was written).
    fn file_done(&self, _path: &Path, _size: u64, _read: bool) {}
    /// A file or directory was left out.
    fn error(&self, _path: &Path, _message: &str) {}
    /// Whether a backup should scan its paths ahead to report totals.
    fn wants_totals(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A file or directory that could not be read (backup) or written (restore) and was left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why it was left out.
    pub message: String,
}

/// Bytes for a person: `512 B`, `1.500 MiB` (powers of 1024, `decimals` places past bytes);
/// the CLI and the web console print sizes alike.
pub fn human_size(bytes: u64, decimals: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.decimals$} {}", UNITS[u])
    }
}
