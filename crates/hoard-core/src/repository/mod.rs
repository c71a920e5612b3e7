//! A repository on any OpenDAL [`Operator`] (FORMAT.md "Layout").
//!
//! ```text
//! config            sealed document: format version, chunker parameters, pack size
//! keys/<id>         JSON key files (argon2id parameters, sealed master key)
//! data/<xx>/<id>    packs, sharded by the first two hex digits of their id
//! index/<id>        sealed index documents
//! snapshots/<id>    sealed snapshot documents
//! locks/<id>        sealed lock documents
//! ```
//! Read bottom-up, each file builds only on those above it in this list:
//! - [`storage`]: typed files checked against their names, sealed documents;
//! - [`keys`]: key files, finding the one the password opens;
//! - [`lock`]: lock files, staleness, refresh;
//! - `index`: the in-memory index table;
//! - this file: [`Repository`] = storage + config + index, `init` and `open`;
//! - `index_files`, `blobs`, `snapshots`: loading the index, reading blobs and trees (with a
//!   small tree-pack cache), finding snapshots;
//! - `locked`: the one way an operation takes its lock.
//!
//! `config` is written last by `init`, so a repository exists exactly when its config does.

mod blobs;
pub(crate) use blobs::copy_range;
pub mod cache;
mod conditional;
pub(crate) mod index;
mod index_files;
pub mod keys;
pub mod lock;
mod locked;
mod snapshots;
pub mod storage;

use std::sync::{Arc, Mutex, RwLock};

use opendal::{ErrorKind, Operator};

use crate::error::{Error, Result};
use crate::format::blob::{open_doc, seal_doc};
use crate::format::config::{Config, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE};
use crate::format::crypto::MasterKey;
use crate::format::keyfile::{KdfParams, KeyFile};
use crate::id::Id;
use index::Index;
use lock::LockOptions;
use storage::{location_of, read_all, Storage};

pub(crate) use index_files::{IndexEvent, LoadIndex};
pub use locked::{Lease, LockNeed};
pub use storage::{
    conditional_create_works, list_ids, local_operator, repository_exists, FileKind, CONFIG_PATH,
};

/// Options for [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// argon2id cost for the first key.
    pub kdf: KdfParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// zstd level for blobs.
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

/// Options for [`Repository::open_with`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Keep index files, snapshots and tree packs in `<dir>/<repository id>/` (see
    /// [`cache`]); worth it where storage is remote. `None`: no cache.
    pub cache_dir: Option<std::path::PathBuf>,
}

/// An open repository: cheap to clone, shareable across tasks. It dereferences to its
/// [`Storage`] for file-level access.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<Inner>,
    /// How operations on this handle lock (see [`Repository::with_lock_options`]).
    lock: LockOptions,
}

struct Inner {
    storage: Storage,
    config: Config,
    index: RwLock<Index>,
    /// Which index files the in-memory index was built from.
    index_source: Mutex<IndexSource>,
    /// Whole tree packs recently read: walking a snapshot reads many small tree blobs that
    /// sit together in few packs.
    tree_packs: Mutex<Vec<(Id, Arc<bytes::Bytes>)>>,
}

/// The index files present when the in-memory index was built (sorted), and the live ones
/// among them (not superseded), which it holds.
#[derive(Debug, Clone, Default)]
struct IndexSource {
    listed: Vec<Id>,
    live: Vec<Id>,
    /// Index files that could not be read (damaged or planted): left out of the index.
    damaged: Vec<Id>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Repository {
    type Target = Storage;

    fn deref(&self) -> &Storage {
        &self.inner.storage
    }
}

impl Repository {
    fn assemble(storage: Storage, config: Config) -> Repository {
        Repository {
            inner: Arc::new(Inner {
                storage,
                config,
                index: RwLock::new(Index::new()),
                index_source: Default::default(),
                tree_packs: Default::default(),
            }),
            lock: LockOptions::default(),
        }
    }

    /// Creates a new repository protected by `password`.
    pub async fn init(op: Operator, password: &[u8], opts: InitOptions) -> Result<Repository> {
        Self::init_with(op, password, opts, &OpenOptions::default()).await
    }

    /// [`Repository::init`] with the cache `open` asks for (where, among other things, the
    /// probe of conditional writes that init makes is kept for later commands).
    pub async fn init_with(
        op: Operator,
        password: &[u8],
        opts: InitOptions,
        open: &OpenOptions,
    ) -> Result<Repository> {
        let location = location_of(&op);
        if repository_exists(&op).await? {
            return Err(Error::AlreadyInitialised(location));
        }
        // Key files without a config: a repository that lost its config, whose data a new
        // master key could never read.
        if !list_ids(&op, FileKind::Key).await?.is_empty() {
            return Err(storage::config_missing());
        }
        let config = Config::new(opts.pack_size, opts.compression_level);
        config
            .validate()
            .map_err(|e| Error::invalid("repository settings", e))?;
        let key = MasterKey::random();
        let key_file = KeyFile::create(&key, password, opts.kdf)?;
        let key_id = keys::write_key_file(&op, &key_file).await?;
        let sealed = seal_doc(&key, &config)?;
        // Two pods racing to initialise must not overwrite each other's config (the loser's
        // key would open nothing). Where the backend cannot refuse an existing file, the
        // check above is all there is.
        let probed = conditional::probe_conditional_create(&op).await;
        match op
            .write_with(CONFIG_PATH, sealed)
            .if_not_exists(probed.unwrap_or(false))
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
                return Err(Error::AlreadyInitialised(location))
            }
            Err(e) => return Err(Error::storage("write", CONFIG_PATH, e)),
        }
        tracing::info!(%location, "initialised repository {}", config.id.short());
        let mut storage = Storage::new(op, location, key, key_id);
        storage.set_cache(open_cache(open, &config));
        // The first lock need not ask again.
        storage.knows_conditional_create(probed);
        Ok(Repository::assemble(storage, config))
    }

    /// Opens the repository, or creates it when there is none (as backup operators do on the
    /// first run). Never re-initialises: a wrong password on an existing repository is
    /// [`Error::WrongPassword`]. Returns whether it was created.
    pub async fn open_or_init(
        op: Operator,
        password: &[u8],
        opts: InitOptions,
    ) -> Result<(Repository, bool)> {
        Self::open_or_init_with(op, password, opts, &OpenOptions::default()).await
    }

    /// [`Repository::open_or_init`] with open options.
    pub async fn open_or_init_with(
        op: Operator,
        password: &[u8],
        init: InitOptions,
        opts: &OpenOptions,
    ) -> Result<(Repository, bool)> {
        if repository_exists(&op).await? {
            return Ok((Self::open_with(op, password, opts).await?, false));
        }
        match Self::init_with(op.clone(), password, init, opts).await {
            Ok(r) => Ok((r, true)),
            // Another writer won the race.
            Err(Error::AlreadyInitialised(_)) => {
                Ok((Self::open_with(op, password, opts).await?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens an existing repository and loads its index (no cache).
    pub async fn open(op: Operator, password: &[u8]) -> Result<Repository> {
        Self::open_with(op, password, &OpenOptions::default()).await
    }

    /// Opens an existing repository with options, and loads its index (through the cache,
    /// when there is one).
    pub async fn open_with(
        op: Operator,
        password: &[u8],
        opts: &OpenOptions,
    ) -> Result<Repository> {
        let location = location_of(&op);
        if !repository_exists(&op).await? {
            if !list_ids(&op, FileKind::Key).await?.is_empty() {
                return Err(storage::config_missing());
            }
            return Err(Error::RepositoryNotFound(location));
        }
        let (key, key_id) = keys::find_key(&op, password).await?;
        let config = read_config(&op, &key).await?;
        let mut storage = Storage::new(op, location, key, key_id);
        storage.set_cache(open_cache(opts, &config));
        let repo = Repository::assemble(storage, config);
        repo.reload_index().await?;
        Ok(repo)
    }

    /// The storage and key of a repository whose config may be damaged: all `repair config`
    /// needs.
    pub(crate) async fn open_keys_only(op: Operator, password: &[u8]) -> Result<Storage> {
        let location = location_of(&op);
        let (key, key_id) = keys::find_key(&op, password).await?;
        Ok(Storage::new(op, location, key, key_id))
    }

    /// This handle with other lock options; every operation run through it locks that way.
    pub fn with_lock_options(mut self, lock: LockOptions) -> Repository {
        self.lock = lock;
        self
    }

    /// How operations on this handle take their locks.
    pub fn lock_options(&self) -> &LockOptions {
        &self.lock
    }

    /// The repository's config (chunker parameters, pack size, …).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a key file that opens this repository with another password.
    pub async fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        keys::add_key(self, password, kdf).await
    }
}

/// Reads and checks the config. Damage and hostile values are reported as a damaged config
/// with the command that fixes it.
pub(crate) async fn read_config(op: &Operator, key: &MasterKey) -> Result<Config> {
    let hint = "run `hoard repair config`";
    let bytes = read_all(op, CONFIG_PATH).await?;
    let config: Config = open_doc(key, &bytes, "config").map_err(|e| match e {
        Error::Corrupt { detail, .. } => Error::corrupt("config", format!("{detail}; {hint}")),
        Error::Authentication(_) => {
            Error::corrupt("config", format!("cannot be authenticated; {hint}"))
        }
        other => other,
    })?;
    if config.version != crate::format::config::FORMAT_VERSION {
        // Written by another hoard: never a case for repair, which would downgrade it.
        return Err(Error::corrupt(
            "config",
            format!(
                "format version {} is not supported by this hoard (it reads version {})",
                config.version,
                crate::format::config::FORMAT_VERSION
            ),
        ));
    }
    config
        .validate()
        .map_err(|e| Error::corrupt("config", format!("{e}; {hint}")))?;
    Ok(config)
}

/// The repository's cache under the configured directory; a cache that cannot be made (no
/// space, no permission) is reported and the repository works without it.
fn open_cache(opts: &OpenOptions, config: &Config) -> Option<cache::Cache> {
    let base = opts.cache_dir.as_ref()?;
    match cache::Cache::open(base, &config.id) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "working without a cache: cannot use {}: {e}",
                base.display()
            );
            None
        }
    }
}
