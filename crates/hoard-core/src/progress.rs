//! Progress reporting. The engine never prints; a front end implements [`Progress`] (the CLI
//! draws a bar on a terminal and emits JSON status lines otherwise).

use std::path::{Path, PathBuf};

/// Called from worker threads, so implementations must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// Bytes of file content read (backup) or written (restore).
    fn bytes_read(&self, _n: u64) {}
    /// A file is finished; `read` is false when backup reused the parent's content.
    fn file_done(&self, _path: &Path, _size: u64, _read: bool) {}
    /// A file or directory was left out.
    fn error(&self, _path: &Path, _message: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A file or directory that could not be read (backup) or written (restore) and was left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}
