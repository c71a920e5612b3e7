//! Storage: the repository's files on an OpenDAL [`Operator`], typed by folder, checked against
//! their names, and sealed documents (FORMAT.md "Layout" and "Documents").
//!
//! Every file but `config` is written once under the BLAKE3 of its bytes and never modified;
//! only prune deletes. This layer knows nothing of the index or of snapshots' meaning, so the
//! lock module can build on it alone.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use opendal::{ErrorKind, Operator};

pub use super::conditional::conditional_create_works;
use super::conditional::probe_conditional_create;
use serde::de::DeserializeOwned;
use serde::Serialize;

mod staged;
pub(crate) use staged::upload_budget;
pub use staged::{MAX_SINGLE_UPLOAD, MAX_UPLOAD_PART, STALE_STAGING};

use super::cache::{Cache, Cached};
use crate::buffers::BufferPool;
use crate::error::{Error, Result};
use crate::format::blob::{open_doc_in_place, seal_doc};
use crate::format::crypto::MasterKey;
use crate::id::Id;

/// The kinds of files in a repository; each knows its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `keys/`: key files.
    Key,
    /// `data/`: packs.
    Pack,
    /// `index/`: index files.
    Index,
    /// `snapshots/`: snapshot files.
    Snapshot,
    /// `locks/`: lock files.
    Lock,
}

impl FileKind {
    /// The folder, with a trailing slash.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Key => "keys/",
            FileKind::Pack => "data/",
            FileKind::Index => "index/",
            FileKind::Snapshot => "snapshots/",
            FileKind::Lock => "locks/",
        }
    }

    /// Documents read whole are cached under their kind; packs only when they hold trees,
    /// which the caller knows (see [`Cached::TreePack`]).
    fn cached(self) -> Option<Cached> {
        match self {
            FileKind::Index => Some(Cached::Index),
            FileKind::Snapshot => Some(Cached::Snapshot),
            FileKind::Key | FileKind::Pack | FileKind::Lock => None,
        }
    }

    /// The path of the file with this id.
    pub fn path(self, id: &Id) -> String {
        let hex = id.to_hex();
        match self {
            FileKind::Pack => format!("data/{}/{}", &hex[..2], hex),
            _ => format!("{}{}", self.dir(), hex),
        }
    }
}

/// Where the config document lives.
pub const CONFIG_PATH: &str = "config";

/// Where a local repository stages files before renaming them into place (not part of the
/// format; see [`local_operator`]).
pub const STAGING_DIR: &str = ".tmp/";

/// The files of an opened repository: the operator and the master key that seals them. Clones
/// share the conditional-write probe.
#[derive(Clone)]
pub struct Storage {
    op: Operator,
    location: String,
    key: MasterKey,
    key_id: Id,
    /// Whether the backend refuses a conditional create of an existing file (probed once).
    conditional_create: Arc<tokio::sync::OnceCell<bool>>,
    /// Local copies of index files, snapshots and tree packs (S3 repositories).
    cache: Option<Cache>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// How a repository is named in messages: scheme, bucket or name, and root.
pub(crate) fn location_of(op: &Operator) -> String {
    let info = op.info();
    let name = info.name();
    if name.is_empty() {
        format!("{}:{}", info.scheme(), info.root())
    } else {
        format!(
            "{}:{}/{}",
            info.scheme(),
            name,
            info.root().trim_start_matches('/')
        )
    }
}

/// Reads a whole file into one buffer, a piece at a time as the backend delivers it: all the
/// pieces first and then a copy would hold the file twice.
pub(crate) async fn read_all(op: &Operator, path: &str) -> Result<Vec<u8>> {
    read_all_into(op, path, Vec::new()).await
}

/// [`read_all`] into `out`, which may have room for the file already.
async fn read_all_into(op: &Operator, path: &str, mut out: Vec<u8>) -> Result<Vec<u8>> {
    let read = async { op.reader(path).await?.read_into(&mut out, ..).await };
    read.await.map_err(|e| Error::storage("read", path, e))?;
    Ok(out)
}

/// Lists the ids of one kind of file; files whose names are not ids are skipped.
pub async fn list_ids(op: &Operator, kind: FileKind) -> Result<Vec<Id>> {
    let mut ids: Vec<Id> = list_entries(op, kind)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The files of one kind whose names are ids, with their sizes.
async fn list_entries(op: &Operator, kind: FileKind) -> Result<Vec<(Id, u64)>> {
    let entries = match op.list_with(kind.dir()).recursive(true).await {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::storage("list", kind.dir(), e)),
    };
    Ok(entries
        .iter()
        .filter(|e| !e.metadata().is_dir())
        .filter_map(|e| Some((e.name().parse().ok()?, e.metadata().content_length())))
        .collect())
}

/// Up to `n` bytes at `at` of `file`, read into a buffer of `pool` (into its spare room: a
/// file reads there without zeroing it first) and handed on without a copy; the buffer goes
/// back to the pool when the bytes are dropped. For a blocking thread.
fn read_into_pool(
    file: &mut std::fs::File,
    at: u64,
    n: u64,
    pool: &Arc<BufferPool>,
) -> std::io::Result<opendal::Buffer> {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = pool.take();
    file.seek(SeekFrom::Start(at))?;
    file.take(n).read_to_end(buf.vec_mut())?;
    Ok(opendal::Buffer::from(bytes::Bytes::from_owner(buf)))
}

/// Whether a repository exists at `op` (its config file is present).
pub async fn repository_exists(op: &Operator) -> Result<bool> {
    match op.stat(CONFIG_PATH).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::storage("stat", CONFIG_PATH, e)),
    }
}

impl Storage {
    pub(crate) fn new(op: Operator, location: String, key: MasterKey, key_id: Id) -> Storage {
        Storage {
            op,
            location,
            key,
            key_id,
            conditional_create: Default::default(),
            cache: None,
        }
    }

    pub(crate) fn set_cache(&mut self, cache: Option<Cache>) {
        self.cache = cache;
    }

    /// The metadata cache, when this repository has one.
    pub(crate) fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// The storage itself.
    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// How the repository is named in messages (scheme, bucket or name, root).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The master key: crate-private, so no safe public code can reach key material.
    pub(crate) fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The key file this session opened the repository with.
    pub fn key_id(&self) -> Id {
        self.key_id
    }

    /// The ids of one kind of file, sorted; names that are not ids are skipped.
    pub async fn list(&self, kind: FileKind) -> Result<Vec<Id>> {
        list_ids(&self.op, kind).await
    }

    /// Lists the ids of one kind of file with their sizes.
    pub async fn list_sizes(&self, kind: FileKind) -> Result<Vec<(Id, u64)>> {
        list_entries(&self.op, kind).await
    }

    /// Reads a whole file, checking that its name is the hash of its content.
    /// Index files and snapshots come from the cache when it has them.
    pub async fn read_file(&self, kind: FileKind, id: &Id) -> Result<Vec<u8>> {
        let cached = kind.cached();
        if let Some(bytes) = self
            .cache
            .as_ref()
            .zip(cached)
            .and_then(|(c, k)| c.get(k, id))
        {
            return Ok(bytes);
        }
        let path = kind.path(id);
        // Index files and packs are MiBs, freed once decoded: room for them is mapped on its
        // own (see `transient_capacity`), whatever size they turn out to be.
        let room = match kind {
            FileKind::Index | FileKind::Pack => crate::buffers::transient_capacity(1 << 20),
            _ => 0,
        };
        let bytes = read_all_into(&self.op, &path, Vec::with_capacity(room)).await?;
        if Id::of_file(&bytes) != *id {
            return Err(Error::corrupt(path, "content does not match its name"));
        }
        if let Some((c, k)) = self.cache.as_ref().zip(cached) {
            c.put(k, id, &bytes);
        }
        Ok(bytes)
    }

    /// Reads `range` of a file (fewer bytes where the file ends first) for a reader that
    /// reads range after range (restore): from a local repository into a buffer of `pool`,
    /// which goes back when the bytes are dropped; elsewhere as OpenDAL reads it, in the HTTP
    /// client's pieces. OpenDAL's local reads allocated a buffer per range, up to 4 MiB, and
    /// the first one freed raised glibc's thresholds (see [`crate::buffers`]).
    pub(crate) async fn read_range_pooled(
        &self,
        kind: FileKind,
        id: &Id,
        range: std::ops::Range<u64>,
        pool: &Arc<BufferPool>,
    ) -> Result<opendal::Buffer> {
        let path = kind.path(id);
        if range.is_empty() {
            // A pack listed empty (truncated, or planted): nothing to read, no request.
            return Ok(opendal::Buffer::new());
        }
        let Some(root) = self.local_root() else {
            return self
                .op
                .read_with(&path)
                .range(range)
                .await
                .map_err(|e| Error::storage("read", &path, e));
        };
        let file = root.join(&path);
        let pool = pool.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&file)
                .and_then(|mut f| {
                    read_into_pool(&mut f, range.start, range.end - range.start, &pool)
                })
                .map_err(|e| Error::io(&file, e))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Reads `range` of a file (no name check is possible on a part).
    pub async fn read_range(
        &self,
        kind: FileKind,
        id: &Id,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>> {
        let path = kind.path(id);
        self.op
            .read_with(&path)
            .range(range)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| Error::storage("read", path, e))
    }

    /// Stores bytes under their hash.
    /// Index files and snapshots are kept in the cache too: this process wrote them, the
    /// next run need not download them.
    pub async fn write_file(&self, kind: FileKind, bytes: Vec<u8>) -> Result<Id> {
        let id = Id::of_file(&bytes);
        if let Some((c, k)) = self.cache.as_ref().zip(kind.cached()) {
            c.put(k, &id, &bytes);
        }
        self.write_named(kind, id, bytes).await?;
        Ok(id)
    }

    /// Stores bytes whose hash the caller already computed (a pack is hashed as it is closed).
    pub(crate) async fn write_named(&self, kind: FileKind, id: Id, bytes: Vec<u8>) -> Result<()> {
        let path = kind.path(&id);
        self.op
            .write(&path, bytes)
            .await
            .map_err(|e| Error::storage("write", path, e))?;
        Ok(())
    }

    /// The root directory of a local repository given by an absolute path.
    fn local_root(&self) -> Option<std::path::PathBuf> {
        let info = self.op.info();
        let root = std::path::PathBuf::from(&*info.root());
        (info.scheme() == "fs" && root.is_absolute()).then_some(root)
    }

    /// Stores bytes under their hash, refusing to replace an existing file where the backend
    /// can (see [`conditional_create_works`]).
    pub async fn create_file(&self, kind: FileKind, bytes: Vec<u8>) -> Result<Id> {
        let conditional = self.conditional_create().await;
        let id = Id::of_file(&bytes);
        let path = kind.path(&id);
        self.op
            .write_with(&path, bytes)
            .if_not_exists(conditional)
            .await
            .map_err(|e| Error::storage("write", path, e))?;
        Ok(id)
    }

    /// Whether creates here can refuse an existing file: known in this process, else from
    /// the cache, else probed (four requests, and on Garage a warning) and kept in the cache,
    /// so that a sidecar's every run does not ask again.
    async fn conditional_create(&self) -> bool {
        *self
            .conditional_create
            .get_or_init(|| async {
                let cache = self.cache.as_ref();
                if let Some(known) = cache.and_then(|c| c.conditional_writes(&self.location)) {
                    return known;
                }
                let probed = probe_conditional_create(&self.op).await;
                self.knows_conditional_create(probed);
                probed.unwrap_or(false)
            })
            .await
    }

    /// Keeps what a probe found (nothing when it could not tell) for this process and in the
    /// cache.
    pub(crate) fn knows_conditional_create(&self, probed: Option<bool>) {
        if let Some(works) = probed {
            let _ = self.conditional_create.set(works);
            if let Some(c) = &self.cache {
                c.record_conditional_writes(&self.location, works);
            }
        }
    }

    /// Deletes a file; one that is already gone is not an error.
    pub async fn delete_file(&self, kind: FileKind, id: &Id) -> Result<()> {
        // A deleted pack may have been a cached tree pack; the cache cannot tell by name.
        let cached = match kind {
            FileKind::Pack => Some(Cached::TreePack),
            _ => kind.cached(),
        };
        if let Some((c, k)) = self.cache.as_ref().zip(cached) {
            c.remove(k, id);
        }
        let path = kind.path(id);
        match self.op.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage("delete", path, e)),
        }
    }

    /// Deletes files, a few at a time; those already gone are no error.
    pub(crate) async fn delete_all(&self, kind: FileKind, ids: &[Id]) -> Result<()> {
        futures::stream::iter(ids.iter())
            .map(|id| self.delete_file(kind, id))
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Whether a file exists (`false` only when the storage says it is not found).
    pub(crate) async fn exists(&self, kind: FileKind, id: &Id) -> Result<bool> {
        let path = kind.path(id);
        match self.op.stat(&path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::storage("stat", path, e)),
        }
    }

    /// Reads, checks, opens and decodes a sealed document.
    pub async fn load_doc<T: DeserializeOwned>(&self, kind: FileKind, id: &Id) -> Result<T> {
        let mut bytes = self.read_file(kind, id).await?;
        open_doc_in_place(&self.key, &mut bytes, &kind.path(id))
    }

    /// Seals a document and stores it under its hash.
    pub async fn save_doc<T: Serialize>(&self, kind: FileKind, doc: &T) -> Result<Id> {
        let sealed = seal_doc(&self.key, doc)?;
        self.write_file(kind, sealed).await
    }

    /// Like [`Storage::save_doc`], with a conditional create (lock files).
    pub(crate) async fn create_doc<T: Serialize>(&self, kind: FileKind, doc: &T) -> Result<Id> {
        let sealed = seal_doc(&self.key, doc)?;
        self.create_file(kind, sealed).await
    }
}

/// A repository with key files but no config lost it (a partial copy, a stray delete).
pub(crate) fn config_missing() -> Error {
    Error::corrupt(
        CONFIG_PATH,
        "missing, but key files exist; run `hoard repair config`",
    )
}

/// An operator for a repository in a local directory. Files are written to `<root>/.tmp`,
/// synced, and renamed into place, so a crash never leaves a half-written file under its final
/// name. With `create` false a missing directory is [`Error::RepositoryNotFound`] (OpenDAL
/// would otherwise create it).
pub fn local_operator(path: &std::path::Path, create: bool) -> Result<Operator> {
    let shown = path.display().to_string();
    if !create && !path.join(CONFIG_PATH).exists() {
        if path.join(FileKind::Key.dir()).is_dir() {
            return Err(config_missing());
        }
        return Err(Error::RepositoryNotFound(shown));
    }
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let root = abs.to_string_lossy();
    let tmp = abs.join(STAGING_DIR.trim_end_matches('/'));
    let builder = opendal::services::Fs::default()
        .root(&root)
        .atomic_write_dir(&tmp.to_string_lossy());
    Operator::new(builder).map_err(|e| Error::storage("open", shown, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges of a local repository's file are read into the pool's buffers, which come
    /// back; a range past the end gives what there is.
    #[tokio::test]
    async fn local_ranges_are_read_into_pooled_buffers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let op = local_operator(dir.path(), true).expect("local operator");
        let storage = Storage::new(op, "local".into(), MasterKey::random(), Id([0; 32]));
        let id = Id([5; 32]);
        let body: Vec<u8> = (0..300_000u32).map(|n| (n % 253) as u8).collect();
        storage
            .operator()
            .write(&FileKind::Pack.path(&id), body.clone())
            .await
            .expect("write");
        let pool = BufferPool::new(1 << 16);
        for range in [
            0..10,
            1000..200_000,
            299_990..300_000,
            299_990..400_000,
            500_000..500_001,
            7..7,
        ] {
            let got = storage
                .read_range_pooled(FileKind::Pack, &id, range.clone(), &pool)
                .await
                .expect("read")
                .to_vec();
            let end = (range.end as usize).min(body.len());
            let want = body.get(range.start as usize..end).unwrap_or(&[]);
            assert!(got == want, "range {range:?}");
        }
        assert_eq!(pool.created(), 1, "one buffer went round");
        let missing = storage
            .read_range_pooled(FileKind::Pack, &Id([6; 32]), 0..10, &pool)
            .await;
        assert!(missing.is_err(), "a missing file is an error");
    }
}
