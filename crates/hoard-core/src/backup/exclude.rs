//! What a backup leaves out, decided where the walk (and the progress scan) meets each entry:
//! path patterns (`--exclude`, `--iexclude`), directories marked by a file in them
//! (`--exclude-if-present`, `--exclude-caches`), files above a size, and other file systems.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::GlobSet;

use super::BackupOptions;
use crate::error::{Error, Result};
use crate::patterns::{compile_patterns, compile_patterns_nocase};

/// The marker of a cache directory (<https://bford.info/cachedir/>), as `--exclude-caches`
/// looks for it.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

/// The exclusion rules of one backup.
#[derive(Debug, Clone)]
pub(crate) struct Excluder {
    patterns: GlobSet,
    nocase: GlobSet,
    /// (file name, header it must start with) marking a directory to leave out.
    markers: Vec<(String, Option<Vec<u8>>)>,
    larger_than: Option<u64>,
    /// With one-file-system: the devices of the backup's paths.
    devices: Option<HashSet<u64>>,
}

/// What to do with a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    Leave,
    /// A directory on another file system: recorded, its contents not (restic's mount points).
    KeepEmpty,
}

impl Excluder {
    pub(crate) fn new(opts: &BackupOptions, paths: &[PathBuf]) -> Result<Self> {
        let mut markers = Vec::new();
        let caches = opts.exclude_caches.then(|| CACHEDIR_TAG.to_string());
        for m in opts.exclude_if_present.iter().chain(caches.as_ref()) {
            let (name, header) = match m.split_once(':') {
                Some((n, h)) => (n, Some(h.as_bytes().to_vec())),
                None => (m.as_str(), None),
            };
            if name.is_empty() || name.contains('/') {
                return Err(Error::invalid(
                    "exclude-if-present",
                    format!("{m:?}: give a file name, optionally with :HEADER"),
                ));
            }
            markers.push((name.to_string(), header));
        }
        let devices = opts.one_file_system.then(|| {
            paths
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|md| md.dev())
                .collect()
        });
        Ok(Excluder {
            patterns: compile_patterns(&opts.excludes, "exclude pattern")?,
            nocase: compile_patterns_nocase(&opts.iexcludes, "iexclude pattern")?,
            markers,
            larger_than: opts.exclude_larger_than,
            devices,
        })
    }

    /// Whether the path alone excludes an entry (checked before its metadata is used).
    pub(crate) fn by_path(&self, path: &Path) -> bool {
        self.patterns.is_match(path) || self.nocase.is_match(path)
    }

    /// The verdict on an entry the walk listed, with its `lstat` metadata. Reads the
    /// directory's marker files, so it runs where blocking is allowed.
    pub(crate) fn judge(&self, path: &Path, md: &std::fs::Metadata) -> Verdict {
        if self.by_path(path) {
            return Verdict::Leave;
        }
        if md.is_file() && self.larger_than.is_some_and(|max| md.len() > max) {
            return Verdict::Leave;
        }
        if md.is_dir() && self.markers.iter().any(|m| marked(path, m)) {
            return Verdict::Leave;
        }
        match &self.devices {
            Some(devs) if !devs.contains(&md.dev()) => {
                if md.is_dir() {
                    Verdict::KeepEmpty
                } else {
                    Verdict::Leave
                }
            }
            _ => Verdict::Keep,
        }
    }
}

/// Whether `dir` holds the marker file (starting with its header, when one is given).
fn marked(dir: &Path, (name, header): &(String, Option<Vec<u8>>)) -> bool {
    let file = dir.join(name);
    match header {
        None => std::fs::symlink_metadata(&file).is_ok(),
        Some(h) => {
            let mut start = vec![0u8; h.len()];
            super::file::open_regular(&file)
                .and_then(|mut f| f.read_exact(&mut start))
                .is_ok_and(|()| &start == h)
        }
    }
}
