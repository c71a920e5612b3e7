//! A repository on any OpenDAL [`Operator`].
//!
//! Layout under the operator's root:
//! ```text
//! config            sealed document: format version, chunker parameters, pack size
//! keys/<id>         JSON key files (argon2id parameters, sealed master key)
//! data/<xx>/<id>    packs, sharded by the first two hex digits of their id
//! index/<id>        sealed index documents
//! snapshots/<id>    sealed snapshot documents
//! locks/<id>        sealed lock documents
//! ```
//! Every file is written once under the BLAKE3 of its bytes and never modified; only prune
//! deletes. `config` is written last by `init`, so a repository exists exactly when its config
//! does.

use std::sync::{Arc, RwLock};

use futures::{StreamExt, TryStreamExt};
use opendal::{ErrorKind, Operator};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::blob::{decode_blob, open_doc, seal_doc};
use crate::config::{Config, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE};
use crate::crypto::{KdfParams, KeyFile, MasterKey};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobLocation, Index, IndexFile};
use crate::pack::BlobType;
use crate::snapshot::{Snapshot, SnapshotEntry};
use crate::tree::Tree;

/// The kinds of files in a repository; each knows its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
}

impl FileKind {
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Key => "keys/",
            FileKind::Pack => "data/",
            FileKind::Index => "index/",
            FileKind::Snapshot => "snapshots/",
            FileKind::Lock => "locks/",
        }
    }

    pub fn path(self, id: &Id) -> String {
        let hex = id.to_hex();
        match self {
            FileKind::Pack => format!("data/{}/{}", &hex[..2], hex),
            _ => format!("{}{}", self.dir(), hex),
        }
    }
}

pub const CONFIG_PATH: &str = "config";

/// Options for [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub pack_size: u32,
    pub compression_level: i32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::default(),
            pack_size: DEFAULT_PACK_SIZE,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

/// An open repository: cheap to clone, shareable across tasks.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

struct Inner {
    op: Operator,
    location: String,
    key: MasterKey,
    key_id: Id,
    config: Config,
    index: RwLock<Index>,
    /// Which index files the in-memory index was built from.
    index_source: std::sync::Mutex<IndexSource>,
    /// Whether the backend refuses a conditional create of an existing file (probed once).
    conditional_create: tokio::sync::OnceCell<bool>,
    /// Whole tree packs recently read: walking a snapshot reads many small tree blobs that
    /// sit together in few packs.
    tree_packs: std::sync::Mutex<Vec<(Id, Arc<bytes::Bytes>)>>,
}

/// The index files present when the in-memory index was built (sorted), and the live ones
/// among them (not superseded), which it holds.
#[derive(Debug, Clone, Default)]
struct IndexSource {
    listed: Vec<Id>,
    live: Vec<Id>,
}

/// Tree packs kept in memory (each at most a pack size).
const TREE_PACK_CACHE: usize = 4;

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

fn location_of(op: &Operator) -> String {
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

async fn read_all(op: &Operator, path: &str) -> Result<Vec<u8>> {
    op.read(path)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| Error::storage("read", path, e))
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

/// Whether a repository exists at `op` (its config file is present).
pub async fn repository_exists(op: &Operator) -> Result<bool> {
    match op.stat(CONFIG_PATH).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::storage("stat", CONFIG_PATH, e)),
    }
}

impl Repository {
    fn assemble(
        op: Operator,
        location: String,
        key: MasterKey,
        key_id: Id,
        config: Config,
    ) -> Repository {
        Repository {
            inner: Arc::new(Inner {
                op,
                location,
                key,
                key_id,
                config,
                index: RwLock::new(Index::new()),
                conditional_create: Default::default(),
                index_source: Default::default(),
                tree_packs: Default::default(),
            }),
        }
    }

    /// Creates a new repository protected by `password`.
    pub async fn init(op: Operator, password: &[u8], opts: InitOptions) -> Result<Repository> {
        let location = location_of(&op);
        if repository_exists(&op).await? {
            return Err(Error::AlreadyInitialised(location));
        }
        let config = Config::new(opts.pack_size, opts.compression_level);
        config
            .chunker
            .validate()
            .map_err(|e| Error::invalid("chunker parameters", e))?;
        let key = MasterKey::random();
        let key_file = KeyFile::create(&key, password, opts.kdf)?;
        let key_id = write_key_file(&op, &key_file).await?;
        let sealed = seal_doc(&key, &config)?;
        // Two pods racing to initialise must not overwrite each other's config (the loser's
        // key would open nothing). Where the backend cannot refuse an existing file, the
        // check above is all there is.
        let conditional = conditional_create_works(&op).await;
        match op
            .write_with(CONFIG_PATH, sealed)
            .if_not_exists(conditional)
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
                return Err(Error::AlreadyInitialised(location))
            }
            Err(e) => return Err(Error::storage("write", CONFIG_PATH, e)),
        }
        tracing::info!(%location, "initialised repository {}", config.id.short());
        Ok(Repository::assemble(op, location, key, key_id, config))
    }

    /// Opens the repository, or creates it when there is none (as backup operators do on the
    /// first run). Never re-initialises: a wrong password on an existing repository is
    /// [`Error::WrongPassword`]. Returns whether it was created.
    pub async fn open_or_init(
        op: Operator,
        password: &[u8],
        opts: InitOptions,
    ) -> Result<(Repository, bool)> {
        if repository_exists(&op).await? {
            return Ok((Self::open(op, password).await?, false));
        }
        match Self::init(op.clone(), password, opts).await {
            Ok(r) => Ok((r, true)),
            // Another writer won the race.
            Err(Error::AlreadyInitialised(_)) => Ok((Self::open(op, password).await?, false)),
            Err(e) => Err(e),
        }
    }

    /// Opens an existing repository and loads its index.
    pub async fn open(op: Operator, password: &[u8]) -> Result<Repository> {
        let location = location_of(&op);
        if !repository_exists(&op).await? {
            return Err(Error::RepositoryNotFound(location));
        }
        let (key, key_id) = find_key(&op, password).await?;
        let config: Config = open_doc(&key, &read_all(&op, CONFIG_PATH).await?, "config")?;
        if config.version != crate::config::FORMAT_VERSION {
            return Err(Error::corrupt(
                "config",
                format!("unsupported format version {}", config.version),
            ));
        }
        config
            .chunker
            .validate()
            .map_err(|e| Error::corrupt("config", e))?;
        let repo = Repository::assemble(op, location, key, key_id, config);
        repo.reload_index().await?;
        Ok(repo)
    }

    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    pub fn location(&self) -> &str {
        &self.inner.location
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn key(&self) -> &MasterKey {
        &self.inner.key
    }

    /// The key file this session opened the repository with.
    pub fn key_id(&self) -> Id {
        self.inner.key_id
    }

    pub(crate) fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn blob_location(&self, id: &Id) -> Option<BlobLocation> {
        self.index().get(id)
    }

    /// Number of blobs in the index.
    pub fn indexed_blobs(&self) -> usize {
        self.index().len()
    }

    /// Every indexed blob with its location.
    pub fn indexed_blob_locations(&self) -> Vec<BlobLocation> {
        self.index().iter().collect()
    }

    /// Re-reads every index file not superseded by another, streaming: at most a few index
    /// files are decoded at once, so the peak is the in-memory table, not the table plus every
    /// file's document.
    pub async fn reload_index(&self) -> Result<()> {
        let ids = self.list(FileKind::Index).await?;
        let mut skip: std::collections::HashSet<Id> = Default::default();
        loop {
            let todo: Vec<Id> = ids
                .iter()
                .filter(|id| !skip.contains(id))
                .copied()
                .collect();
            let mut index = Index::new();
            let mut superseded: std::collections::HashSet<Id> = Default::default();
            self.for_each_index_file(&todo, |_, f| {
                let f = f?;
                superseded.extend(f.supersedes.iter().copied());
                index.add_file(&f);
                Ok(())
            })
            .await?;
            if todo.iter().any(|id| superseded.contains(id)) {
                // Only after an interrupted prune: load again without the replaced files.
                skip.extend(superseded);
                continue;
            }
            self.set_index(
                index,
                IndexSource {
                    listed: ids,
                    live: todo,
                },
            );
            return Ok(());
        }
    }

    /// Ids of the live index files the in-memory index was built from.
    pub fn loaded_index_files(&self) -> Vec<Id> {
        self.index_source().live
    }

    /// Whether the in-memory index was built when exactly these index files (sorted) existed.
    pub fn index_built_from(&self, listed: &[Id]) -> bool {
        self.index_source().listed == listed
    }

    fn index_source(&self) -> IndexSource {
        self.inner
            .index_source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Calls `each` with every listed index file (or the error reading it), a few downloads in
    /// flight at once, in no particular order.
    pub async fn for_each_index_file<F>(&self, ids: &[Id], mut each: F) -> Result<()>
    where
        F: FnMut(Id, Result<IndexFile>) -> Result<()>,
    {
        let mut files = futures::stream::iter(ids.iter().copied())
            .map(|id| async move { (id, self.load_doc::<IndexFile>(FileKind::Index, &id).await) })
            .buffer_unordered(4);
        while let Some((id, f)) = files.next().await {
            each(id, f)?;
        }
        Ok(())
    }

    /// Builds the in-memory index from these index files (those superseded by another one in
    /// the list are skipped).
    pub fn install_index(&self, files: &[(Id, IndexFile)]) {
        let superseded: std::collections::HashSet<Id> = files
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        let mut index = Index::new();
        let mut source = IndexSource::default();
        for (id, f) in files {
            source.listed.push(*id);
            if !superseded.contains(id) {
                index.add_file(f);
                source.live.push(*id);
            }
        }
        source.listed.sort();
        self.set_index(index, source);
    }

    fn set_index(&self, mut index: Index, source: IndexSource) {
        index.finish_loading();
        tracing::debug!(
            blobs = index.len(),
            files = source.live.len(),
            "loaded index"
        );
        *self.index_mut() = index;
        *self
            .inner
            .index_source
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = source;
    }

    /// Reloads the index when an index file it was built from is gone (prune replaced it).
    pub async fn reload_index_if_changed(&self) -> Result<()> {
        let present: std::collections::HashSet<Id> =
            self.list(FileKind::Index).await?.into_iter().collect();
        if self
            .loaded_index_files()
            .iter()
            .any(|id| !present.contains(id))
        {
            tracing::info!("index files were replaced since the repository was opened; reloading");
            self.reload_index().await?;
        }
        Ok(())
    }

    /// Lists the ids of one kind of file with their sizes.
    pub async fn list_sizes(&self, kind: FileKind) -> Result<Vec<(Id, u64)>> {
        list_entries(&self.inner.op, kind).await
    }

    pub async fn list(&self, kind: FileKind) -> Result<Vec<Id>> {
        list_ids(&self.inner.op, kind).await
    }

    /// Reads a whole file, checking that its name is the hash of its content.
    pub async fn read_file(&self, kind: FileKind, id: &Id) -> Result<Vec<u8>> {
        let path = kind.path(id);
        let bytes = read_all(&self.inner.op, &path).await?;
        if Id::of_file(&bytes) != *id {
            return Err(Error::corrupt(path, "content does not match its name"));
        }
        Ok(bytes)
    }

    /// Stores bytes under their hash.
    pub async fn write_file(&self, kind: FileKind, bytes: Vec<u8>) -> Result<Id> {
        let id = Id::of_file(&bytes);
        let path = kind.path(&id);
        self.inner
            .op
            .write(&path, bytes)
            .await
            .map_err(|e| Error::storage("write", path, e))?;
        Ok(id)
    }

    /// Stores bytes under their hash, refusing to replace an existing file where the backend
    /// can (see [`conditional_create_works`]).
    pub async fn create_file(&self, kind: FileKind, bytes: Vec<u8>) -> Result<Id> {
        let conditional = *self
            .inner
            .conditional_create
            .get_or_init(|| conditional_create_works(&self.inner.op))
            .await;
        let id = Id::of_file(&bytes);
        let path = kind.path(&id);
        self.inner
            .op
            .write_with(&path, bytes)
            .if_not_exists(conditional)
            .await
            .map_err(|e| Error::storage("write", path, e))?;
        Ok(id)
    }

    /// Deletes a file; one that is already gone is not an error.
    pub async fn delete_file(&self, kind: FileKind, id: &Id) -> Result<()> {
        let path = kind.path(id);
        match self.inner.op.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage("delete", path, e)),
        }
    }

    pub async fn load_doc<T: DeserializeOwned>(&self, kind: FileKind, id: &Id) -> Result<T> {
        let bytes = self.read_file(kind, id).await?;
        open_doc(&self.inner.key, &bytes, &kind.path(id))
    }

    pub async fn save_doc<T: Serialize>(&self, kind: FileKind, doc: &T) -> Result<Id> {
        let sealed = seal_doc(&self.inner.key, doc)?;
        self.write_file(kind, sealed).await
    }

    /// Writes an index file and adds its blobs to the in-memory index.
    pub async fn save_index(&self, file: &IndexFile) -> Result<Id> {
        let id = self.save_doc(FileKind::Index, file).await?;
        let mut index = self.index_mut();
        for p in &file.packs {
            index.add_pack(p.id, &p.blobs);
        }
        Ok(id)
    }

    /// Reads, opens and verifies one blob.
    pub async fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.blob_location(id).ok_or(Error::BlobNotInIndex(*id))?;
        let path = FileKind::Pack.path(&loc.pack);
        let start = loc.blob.offset as u64;
        let sealed = self
            .inner
            .op
            .read_with(&path)
            .range(start..start + loc.blob.length as u64)
            .await
            .map_err(|e| Error::storage("read", path.as_str(), e))?
            .to_vec();
        self.decode_located_blob(&loc, &sealed)
    }

    /// Opens a blob's sealed bytes and checks them against its id.
    pub fn decode_located_blob(&self, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
        let what = format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short());
        let plain = decode_blob(
            &self.inner.key,
            sealed,
            loc.blob.compressed,
            loc.blob.raw_length,
            &what,
        )?;
        if self.inner.key.blob_id(&plain) != loc.blob.id {
            return Err(Error::corrupt(what, "content does not match its id"));
        }
        Ok(plain)
    }

    pub async fn load_tree(&self, id: &Id) -> Result<Tree> {
        match self.blob_location(id) {
            Some(loc) if loc.blob.blob_type == BlobType::Tree => {}
            Some(_) => {
                return Err(Error::corrupt(
                    format!("tree {}", id.short()),
                    "indexed as a data blob",
                ))
            }
            None => return Err(Error::BlobNotInIndex(*id)),
        }
        let bytes = self.read_tree_blob(id).await?;
        Tree::from_bytes(&bytes).map_err(|e| Error::corrupt(format!("tree {}", id.short()), e))
    }

    /// Reads a tree blob through the tree-pack cache.
    async fn read_tree_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.blob_location(id).ok_or(Error::BlobNotInIndex(*id))?;
        let cached = {
            let cache = self
                .inner
                .tree_packs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            cache
                .iter()
                .find(|(p, _)| *p == loc.pack)
                .map(|(_, b)| b.clone())
        };
        let pack = match cached {
            Some(b) => b,
            None => {
                let path = FileKind::Pack.path(&loc.pack);
                let b = Arc::new(
                    self.inner
                        .op
                        .read(&path)
                        .await
                        .map_err(|e| Error::storage("read", path.as_str(), e))?
                        .to_bytes(),
                );
                let mut cache = self
                    .inner
                    .tree_packs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if cache.len() >= TREE_PACK_CACHE {
                    cache.remove(0);
                }
                cache.push((loc.pack, b.clone()));
                b
            }
        };
        let range = loc.blob.offset as usize..loc.blob.offset as usize + loc.blob.length as usize;
        let sealed = pack.get(range).ok_or_else(|| {
            Error::corrupt(
                FileKind::Pack.path(&loc.pack),
                "shorter than the index says",
            )
        })?;
        self.decode_located_blob(&loc, sealed)
    }

    /// All snapshots, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let ids = self.list(FileKind::Snapshot).await?;
        let mut out: Vec<SnapshotEntry> = futures::stream::iter(ids)
            .map(|id| async move {
                let snapshot = self.load_doc::<Snapshot>(FileKind::Snapshot, &id).await?;
                Ok::<_, Error>(SnapshotEntry { id, snapshot })
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Finds a snapshot by `latest`, a full id or a unique id prefix.
    pub async fn find_snapshot(&self, spec: &str) -> Result<SnapshotEntry> {
        if spec == "latest" {
            return self
                .snapshots()
                .await?
                .pop()
                .ok_or_else(|| Error::SnapshotNotFound(spec.to_string()));
        }
        let id = self.find_id(FileKind::Snapshot, spec).await?;
        Ok(SnapshotEntry {
            id,
            snapshot: self.load_doc(FileKind::Snapshot, &id).await?,
        })
    }

    /// Resolves a full id or unique prefix among the files of one kind.
    pub async fn find_id(&self, kind: FileKind, prefix: &str) -> Result<Id> {
        let p = prefix.to_ascii_lowercase();
        let ids: Vec<Id> = self
            .list(kind)
            .await?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&p))
            .collect();
        let what = kind.dir().trim_end_matches('/');
        match (ids.as_slice(), kind) {
            ([id], _) => Ok(*id),
            ([], FileKind::Snapshot) => Err(Error::SnapshotNotFound(prefix.to_string())),
            ([], _) => Err(Error::invalid(
                "id",
                format!("no {what} file matches {prefix:?}"),
            )),
            (_, FileKind::Snapshot) => Err(Error::AmbiguousSnapshot(prefix.to_string())),
            (_, _) => Err(Error::invalid(
                "id",
                format!("{prefix:?} matches several {what} files; give more digits"),
            )),
        }
    }

    /// Adds a key file that opens this repository with another password.
    pub async fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let kf = KeyFile::create(&self.inner.key, password, kdf)?;
        write_key_file(&self.inner.op, &kf).await
    }
}

/// Whether `write_with(..).if_not_exists(true)` really refuses to replace a file here. Backends
/// that do not claim the capability are not asked; those that do are tested once, because some
/// (Garage) accept If-None-Match and overwrite anyway.
pub async fn conditional_create_works(op: &Operator) -> bool {
    if !op.info().capability().write_with_if_not_exists {
        return false;
    }
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        return false;
    }
    let path = format!("{}probe-{}", FileKind::Lock.dir(), hex::encode(nonce));
    let first = op
        .write_with(&path, b"1".to_vec())
        .if_not_exists(true)
        .await;
    let second = op
        .write_with(&path, b"2".to_vec())
        .if_not_exists(true)
        .await;
    let works = first.is_ok()
        && matches!(&second, Err(e) if e.kind() == ErrorKind::ConditionNotMatch)
        && op
            .read(&path)
            .await
            .is_ok_and(|b| b.to_vec() == b"1".to_vec());
    if let Err(e) = op.delete(&path).await {
        tracing::warn!("cannot remove probe file {path}: {e}");
    }
    if !works {
        tracing::warn!(
            "the storage does not honour conditional writes (If-None-Match); lock and config \
             files are written unconditionally"
        );
    }
    works
}

async fn write_key_file(op: &Operator, kf: &KeyFile) -> Result<Id> {
    let bytes = serde_json::to_vec_pretty(kf).map_err(|e| Error::invalid("key file", e))?;
    let id = Id::of_file(&bytes);
    let path = FileKind::Key.path(&id);
    op.write(&path, bytes)
        .await
        .map_err(|e| Error::storage("write", path, e))?;
    Ok(id)
}

/// Tries every key file with the password.
async fn find_key(op: &Operator, password: &[u8]) -> Result<(MasterKey, Id)> {
    let ids = list_ids(op, FileKind::Key).await?;
    for id in ids {
        let path = FileKind::Key.path(&id);
        let bytes = read_all(op, &path).await?;
        let kf: KeyFile = match serde_json::from_slice(&bytes) {
            Ok(kf) => kf,
            Err(e) => {
                tracing::warn!("skipping unreadable key file {path}: {e}");
                continue;
            }
        };
        let pw = zeroize::Zeroizing::new(password.to_vec());
        let opened = tokio::task::spawn_blocking(move || kf.open(&pw)).await??;
        if let Some(key) = opened {
            return Ok((key, id));
        }
    }
    Err(Error::WrongPassword)
}

/// An operator for a repository in a local directory. Files are written to `<root>/.tmp`,
/// synced, and renamed into place, so a crash never leaves a half-written file under its final
/// name. With `create` false a missing directory is [`Error::RepositoryNotFound`] (OpenDAL
/// would otherwise create it).
pub fn local_operator(path: &std::path::Path, create: bool) -> Result<Operator> {
    let shown = path.display().to_string();
    if !create && !path.join(CONFIG_PATH).exists() {
        return Err(Error::RepositoryNotFound(shown));
    }
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let root = abs.to_string_lossy();
    let tmp = abs.join(".tmp");
    let builder = opendal::services::Fs::default()
        .root(&root)
        .atomic_write_dir(&tmp.to_string_lossy());
    Operator::new(builder).map_err(|e| Error::storage("open", shown, e))
}
