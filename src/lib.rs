//! hoard: encrypted, deduplicated, compressed backups into restic-style repositories on any
//! [OpenDAL](opendal) storage: a local directory, or any S3 server (feature `s3`).
//!
//! This crate is the facade: it re-exports the engine from `hoard-core` and, with `s3`, the
//! configuration crate as [`s3`]. Everything is async on tokio; every operation takes its
//! options as a struct whose `Default` is what the CLI does without flags, and returns typed
//! errors ([`Error`]).
//!
//! # A tour
//!
//! Create a repository, back up, list, restore one file straight into a directory, forget,
//! prune and check (this runs as a test):
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hoard::{
//!     backup, check, forget, prune, restore, BackupOptions, CheckOptions, ForgetOptions,
//!     InitOptions, NoProgress, Policy, PruneOptions, Repository, RestoreOptions,
//! };
//! # let dir = tempfile::tempdir()?;
//! # let src = dir.path().join("src");
//! # std::fs::create_dir(&src)?;
//! # std::fs::write(src.join("notes.txt"), "hello")?;
//! // A local repository; `local_operator(path, false)` opens an existing one, and any
//! // `opendal::Operator` works (see `hoard::s3` for S3).
//! let storage = hoard::repository::local_operator(&dir.path().join("repo"), true)?;
//! let repo = Repository::init(storage, b"password", InitOptions::default()).await?;
//! // Later runs: Repository::open(storage, b"password").await?
//!
//! let opts = BackupOptions { paths: vec![src.clone()], ..Default::default() };
//! let done = backup(&repo, opts, Arc::new(NoProgress)).await?;
//! assert!(done.errors.is_empty(), "unreadable files are listed, not fatal");
//!
//! for s in repo.snapshots().await? {
//!     println!("{} {} {:?}", s.short_id(), s.snapshot.time, s.snapshot.paths);
//! }
//!
//! // One file of the snapshot, straight into `out/` (not `out/<its absolute path>`).
//! let out = dir.path().join("out");
//! let file = src.join("notes.txt");
//! let opts = RestoreOptions {
//!     target: out.clone(),
//!     source_path: Some(file.to_string_lossy().into_owned()),
//!     ..Default::default()
//! };
//! restore(&repo, &done.snapshot, &opts, Arc::new(NoProgress)).await?;
//! assert_eq!(std::fs::read_to_string(out.join("notes.txt"))?, "hello");
//!
//! // Keep the newest snapshot of each host and paths; remove the others' files...
//! let policy = Policy { last: 1, ..Default::default() };
//! let forgotten = forget(&repo, &policy, &ForgetOptions::default()).await?;
//! println!("removed {} snapshots", forgotten.removed.len());
//! // ...then the data no snapshot uses. The default leaves up to 5% unused space in partly
//! // used packs rather than rewrite them; 0% rewrites every one.
//! let opts = PruneOptions { max_unused_percent: 0.0, ..Default::default() };
//! let stats = prune(&repo, &opts, &NoProgress).await?;
//! println!("freed {} bytes", stats.bytes_freed);
//!
//! // `read_data: ReadData::All` also downloads and verifies every pack.
//! let report = check(&repo, &CheckOptions::default(), &NoProgress).await?;
//! assert!(report.is_clean(), "{:?}", report.errors);
//! # Ok(()) }
//! ```
//!
//! # Progress
//!
//! Operations report through a [`Progress`] observer: a [`progress::Phase`], then totals
//! (`total`) and work done (`advance`), so a percentage is `done / total`. A backup counts
//! its totals with a scan beside it when the observer asks for them:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
//! use hoard::progress::{Phase, Progress};
//!
//! #[derive(Default)]
//! struct Percent { total: AtomicU64, done: AtomicU64 }
//!
//! impl Progress for Percent {
//!     fn phase(&self, _: Phase) {
//!         self.total.store(0, Relaxed);
//!         self.done.store(0, Relaxed);
//!     }
//!     fn total(&self, _items: u64, bytes: u64, _complete: bool) {
//!         self.total.store(bytes, Relaxed);
//!     }
//!     fn advance(&self, _items: u64, bytes: u64) {
//!         let done = self.done.fetch_add(bytes, Relaxed) + bytes;
//!         let total = self.total.load(Relaxed).max(1);
//!         eprintln!("{:.0}%", 100.0 * done.min(total) as f64 / total as f64);
//!     }
//!     fn wants_totals(&self) -> bool {
//!         true
//!     }
//! }
//! ```
//!
//! # S3 from a Kubernetes Secret
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use hoard::s3::{OpenMode, Secrets};
//! // The Secret's values, e.g. read through the Kubernetes API.
//! let secrets = Secrets::from_map([
//!     ("RESTIC_PASSWORD", "..."),
//!     ("AWS_ACCESS_KEY_ID", "..."),
//!     ("AWS_SECRET_ACCESS_KEY", "..."),
//!     ("CA_CERT_DATA", "-----BEGIN CERTIFICATE-----\n..."),
//! ])?;
//! let mode = OpenMode::CreateIfAbsent(hoard::InitOptions::default());
//! let (repo, created) =
//!     hoard::s3::open("s3:https://minio.example:9000/backups/team-a", &secrets, mode).await?;
//! # Ok(()) }
//! ```
//!
//! A Stash `Repository` manifest and its Secret open the same way through [`crd::open`].
//!
//! # The CLI
//!
//! With the default `cli` feature this package also builds the `hoard` binary, a
//! restic-compatible command line over the same functions.

#![warn(missing_docs)]

pub use hoard_core::*;
pub use opendal;

/// S3 repositories: URLs, secrets, CA_CERT_DATA, bucket creation (feature `s3`).
#[cfg(feature = "s3")]
pub use hoard_s3 as s3;

/// Repository manifests (Stash `Repository` + Secret) to an opened repository (feature `s3`).
#[cfg(feature = "s3")]
pub mod crd;
