//! The local metadata cache: index files, snapshots and tree packs kept as stored (still
//! sealed) under `<cache dir>/<repository id>/`, so that on S3 a re-backup, `snapshots` or
//! `ls` downloads only what it has not seen. restic's cache, with the same layout idea.
//!
//! Nothing read from the cache is trusted more than storage: every file is checked against
//! its name (the BLAKE3 of its content) and a mismatch is removed and fetched again. Several
//! processes may share a cache: files are written under a temporary name and renamed into
//! place, so a reader sees a whole file or none. A cache failure (disk full, permissions) is
//! logged and the operation goes on against storage: the cache is never needed for anything.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::id::Id;

/// Marks the cache directory for backup tools (<https://bford.info/cachedir/>).
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by hoard.\n";

/// The cache's subdirectory for packs on their way to storage ([`Cache::spool_dir`]).
const SPOOL: &str = "spool";

/// A recorded conditional-write probe is trusted this long ([`Cache::conditional_writes`]).
pub const PROBE_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Repository caches not used for this long are removed by `cache --cleanup`.
pub const MAX_CACHE_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// One repository's cache.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// What the cache keeps. Packs only when they hold trees: the caller knows, the name does
/// not say. Keys, locks and data packs are never cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// `index/<id>`
    Index,
    /// `snapshots/<id>`
    Snapshot,
    /// `data/<id>` of a pack of tree blobs.
    TreePack,
}

impl Cached {
    /// Its directory in the cache, named as in the repository.
    fn dir(self) -> &'static str {
        match self {
            Cached::Index => "index",
            Cached::Snapshot => "snapshots",
            Cached::TreePack => "data",
        }
    }
}

impl Cache {
    /// The cache of repository `repo_id` under `base`, created if needed. Marks the base as a
    /// cache directory and the repository's directory as used now.
    pub fn open(base: &Path, repo_id: &Id) -> std::io::Result<Cache> {
        std::fs::create_dir_all(base)?;
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            write_atomic(base, &tag, CACHEDIR_TAG.as_bytes())?;
        }
        let dir = base.join(repo_id.to_hex());
        for kind in [Cached::Index, Cached::Snapshot, Cached::TreePack] {
            std::fs::create_dir_all(dir.join(kind.dir()))?;
        }
        // The directory's mtime says when the repository was last used (cache --cleanup).
        let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(SystemTime::now()));
        Ok(Cache { dir })
    }

    fn path(&self, kind: Cached, id: &Id) -> PathBuf {
        // Flat per kind: packs are not fanned out, a cache holds only tree packs.
        self.dir.join(kind.dir()).join(id.to_hex())
    }

    /// The cached file, if present and intact; a damaged one is removed.
    pub fn get(&self, kind: Cached, id: &Id) -> Option<Vec<u8>> {
        let path = self.path(kind, id);
        let bytes = read_transient(&path).ok()?;
        if Id::of_file(&bytes) != *id {
            tracing::warn!(
                "cache file {} does not match its name; removed",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(bytes)
    }

    /// Keeps a copy of a file just read from or written to storage.
    pub fn put(&self, kind: Cached, id: &Id, bytes: &[u8]) {
        let path = self.path(kind, id);
        if path.exists() {
            return;
        }
        if let Err(e) = write_atomic(&self.dir, &path, bytes) {
            tracing::debug!("cannot cache {}: {e}", path.display());
        }
    }

    /// [`Cache::put`] of a file that is on disk (a staged pack), copied without reading it
    /// into memory.
    pub fn put_file(&self, kind: Cached, id: &Id, file: &Path) {
        let path = self.path(kind, id);
        if path.exists() {
            return;
        }
        if let Err(e) = place_atomic(&self.dir, &path, |tmp| std::fs::copy(file, tmp).map(drop)) {
            tracing::debug!("cannot cache {}: {e}", path.display());
        }
    }

    /// Forgets a file deleted from storage.
    pub fn remove(&self, kind: Cached, id: &Id) {
        let _ = std::fs::remove_file(self.path(kind, id));
    }

    /// Whether storage at `location` refused to replace a file on a conditional create, as
    /// recorded by [`Cache::record_conditional_writes`] in the last [`PROBE_AGE`] (a server
    /// upgraded since may have learnt it).
    pub fn conditional_writes(&self, location: &str) -> Option<bool> {
        let path = self.probe_path(location);
        let age = std::fs::metadata(&path)
            .ok()?
            .modified()
            .ok()?
            .elapsed()
            .ok()?;
        if age > PROBE_AGE {
            return None;
        }
        match std::fs::read(&path).ok()?.as_slice() {
            b"yes" => Some(true),
            b"no" => Some(false),
            _ => None,
        }
    }

    /// Keeps what the conditional-write probe found at `location`.
    pub fn record_conditional_writes(&self, location: &str, works: bool) {
        let path = self.probe_path(location);
        let answer: &[u8] = if works { b"yes" } else { b"no" };
        if let Err(e) = write_atomic(&self.dir, &path, answer) {
            tracing::debug!("cannot cache {}: {e}", path.display());
        }
    }

    /// Per location: a copy of the repository elsewhere has the same id and this cache.
    fn probe_path(&self, location: &str) -> PathBuf {
        let at = Id::of_file(location.as_bytes()).to_hex();
        self.dir.join(format!("conditional-writes-{}", &at[..16]))
    }

    /// Where backup builds the data packs of a remote repository before it uploads them
    /// (see `Storage::staging_dir`): a pack being built then costs a MiB of memory, not its
    /// size. Not a cache of anything; files here live for one upload.
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join(SPOOL)
    }

    /// Removes spool files untouched for `min_age`, left by a run that died (several
    /// processes may share the directory; a live one touches its file within seconds).
    pub fn clean_spool(&self, min_age: Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(self.spool_dir()) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() >= min_age);
            if stale && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!("removed {removed} spool files left by earlier runs");
        }
        removed
    }

    /// Removes cached files of `kind` that storage no longer has (another process pruned).
    pub fn retain(&self, kind: Cached, present: &HashSet<Id>) {
        let Ok(entries) = std::fs::read_dir(self.dir.join(kind.dir())) else {
            return;
        };
        for e in entries.flatten() {
            let keep = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Id>().ok())
                .is_some_and(|id| present.contains(&id));
            if !keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The outcome of the last `check` of a repository on this machine, kept in the cache
/// directory's folder for the repository (not in the repository): what the web console's
/// health page shows. Counts and the first error only.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LastCheck {
    /// When it finished.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Errors found (0: the repository is sound).
    pub errors: u64,
    /// The first of them, in words.
    pub first_error: Option<String>,
    /// Snapshots looked at.
    pub snapshots: u64,
    /// Packs listed.
    pub packs: u64,
    /// Packs read whole (`--read-data`), 0 for a structure check.
    pub packs_read: u64,
}

const LAST_CHECK: &str = "last-check.json";

/// Keeps `c` as the last check of repository `repo_id` under the cache base `base`.
pub fn record_check(base: &Path, repo_id: &Id, c: &LastCheck) -> std::io::Result<()> {
    let dir = base.join(repo_id.to_hex());
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_vec(c).map_err(std::io::Error::other)?;
    write_atomic(&dir, &dir.join(LAST_CHECK), &json)
}

/// The last check recorded by [`record_check`], if any (and if it still parses).
pub fn last_check(base: &Path, repo_id: &Id) -> Option<LastCheck> {
    let bytes = std::fs::read(base.join(repo_id.to_hex()).join(LAST_CHECK)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A whole file, read into a buffer sized by [`crate::buffers::transient_capacity`]: cached
/// index files and tree packs are MiBs, freed once decoded.
fn read_transient(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len() as usize;
    let mut bytes = Vec::with_capacity(crate::buffers::transient_capacity(len));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to a temporary file in `dir` and renames it to `path`: concurrent readers
/// and writers of the same cache see whole files only.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    place_atomic(dir, path, |tmp| {
        std::fs::File::create(tmp)?.write_all(bytes)
    })
}

/// Has `write` create a temporary file in `dir`, then renames it to `path`.
fn place_atomic(
    dir: &Path,
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut random = [0u8; 8];
    crate::random::fill_random(&mut random);
    let tmp = dir.join(format!(
        ".tmp-{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What `cache --cleanup` found under a cache base directory.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CacheCleanup {
    /// Repository caches kept.
    pub kept: Vec<String>,
    /// Repository caches removed (unused for [`MAX_CACHE_AGE`]).
    pub removed: Vec<String>,
}

/// Removes the caches of repositories not used for `max_age` (with `dry_run`, only says
/// which). Anything in `base` that is not a repository cache is left alone.
pub fn cleanup(base: &Path, max_age: Duration, dry_run: bool) -> std::io::Result<CacheCleanup> {
    let mut out = CacheCleanup::default();
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<Id>().is_err() || !e.path().is_dir() {
            continue;
        }
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if age > max_age {
            if !dry_run {
                std::fs::remove_dir_all(e.path())?;
            }
            out.removed.push(name);
        } else {
            out.kept.push(name);
        }
    }
    out.kept.sort();
    out.removed.sort();
    Ok(out)
}

/// Where caches live by default: `$RESTIC_CACHE_DIR`, `$XDG_CACHE_HOME/hoard`, or
/// `~/.cache/hoard`; `None` when none of them is set.
pub fn default_base() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("RESTIC_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("hoard"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache").join("hoard"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditional_write_probe_is_kept_per_location_for_a_week() {
        let base = tempfile::tempdir().unwrap();
        let cache = Cache::open(base.path(), &Id::random()).unwrap();
        let (here, copy) = ("s3:bucket/repo", "s3:other/repo");
        assert_eq!(cache.conditional_writes(here), None);
        cache.record_conditional_writes(here, false);
        cache.record_conditional_writes(copy, true);
        assert_eq!(cache.conditional_writes(here), Some(false));
        assert_eq!(cache.conditional_writes(copy), Some(true));
        // Asked again once the answer is older than PROBE_AGE; garbage is no answer.
        let path = cache.probe_path(here);
        let old = SystemTime::now() - PROBE_AGE - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(cache.conditional_writes(here), None);
        std::fs::write(cache.probe_path(copy), b"maybe").unwrap();
        assert_eq!(cache.conditional_writes(copy), None);
    }

    #[test]
    fn a_file_put_from_disk_is_read_back_verified() {
        let base = tempfile::tempdir().unwrap();
        let cache = Cache::open(base.path(), &Id([1; 32])).unwrap();
        let body = vec![9u8; 200_000];
        let id = Id::of_file(&body);
        let src = base.path().join("staged");
        std::fs::write(&src, &body).unwrap();
        cache.put_file(Cached::TreePack, &id, &src);
        assert_eq!(cache.get(Cached::TreePack, &id), Some(body));
        assert!(src.exists(), "the file is copied, not moved");
        // A file whose bytes are not its name is not served.
        let wrong = Id([2; 32]);
        cache.put_file(Cached::TreePack, &wrong, &src);
        assert_eq!(cache.get(Cached::TreePack, &wrong), None);
    }

    #[test]
    fn files_are_verified_replaced_and_retained() {
        let base = tempfile::tempdir().unwrap();
        let repo = Id::random();
        let cache = Cache::open(base.path(), &repo).unwrap();
        assert!(base.path().join("CACHEDIR.TAG").exists());
        let bytes = b"sealed index bytes".to_vec();
        let id = Id::of_file(&bytes);
        assert_eq!(cache.get(Cached::Index, &id), None);
        cache.put(Cached::Index, &id, &bytes);
        assert_eq!(cache.get(Cached::Index, &id), Some(bytes.clone()));
        // Damaged on disk: not returned, and gone.
        let path = base
            .path()
            .join(repo.to_hex())
            .join("index")
            .join(id.to_hex());
        std::fs::write(&path, b"flipped").unwrap();
        assert_eq!(cache.get(Cached::Index, &id), None);
        assert!(!path.exists());
        // What storage no longer lists goes.
        cache.put(Cached::Index, &id, &bytes);
        cache.retain(Cached::Index, &HashSet::new());
        assert_eq!(cache.get(Cached::Index, &id), None);
    }

    #[test]
    fn clean_spool_removes_only_what_a_dead_run_left() {
        let base = tempfile::tempdir().unwrap();
        let cache = Cache::open(base.path(), &Id::random()).unwrap();
        assert_eq!(cache.clean_spool(Duration::ZERO), 0, "no spool yet");
        std::fs::create_dir_all(cache.spool_dir()).unwrap();
        let (old, live) = (cache.spool_dir().join("a"), cache.spool_dir().join("b"));
        std::fs::write(&old, b"left").unwrap();
        std::fs::write(&live, b"growing").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        assert_eq!(cache.clean_spool(Duration::from_secs(3600)), 1);
        assert!(!old.exists() && live.exists());
    }

    #[test]
    fn cleanup_removes_only_old_repository_caches() {
        let base = tempfile::tempdir().unwrap();
        let old = Id::random();
        let fresh = Id::random();
        Cache::open(base.path(), &old).unwrap();
        Cache::open(base.path(), &fresh).unwrap();
        std::fs::create_dir(base.path().join("not-a-cache")).unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(40 * 24 * 3600);
        std::fs::File::open(base.path().join(old.to_hex()))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let plan = cleanup(base.path(), MAX_CACHE_AGE, true).unwrap();
        assert_eq!(plan.removed, vec![old.to_hex()]);
        assert!(base.path().join(old.to_hex()).exists());
        let done = cleanup(base.path(), MAX_CACHE_AGE, false).unwrap();
        assert_eq!(done.kept, vec![fresh.to_hex()]);
        assert!(!base.path().join(old.to_hex()).exists());
        assert!(base.path().join("not-a-cache").exists());
    }
}
