//! hoard: encrypted, deduplicated, compressed backups into restic-style repositories on any
//! [OpenDAL](opendal) storage.
//!
//! This crate is the facade: it re-exports the engine from `hoard-core`. See
//! [`Repository`], [`backup`] and [`restore`], and `examples/local.rs` for a runnable tour.

pub use hoard_core::*;
pub use opendal;

/// S3 repositories: URLs, secrets, CA_CERT_DATA, bucket creation (feature `s3`).
#[cfg(feature = "s3")]
pub use hoard_s3 as s3;

/// Repository manifests (Stash `Repository` + Secret) to an opened repository (feature `s3`).
#[cfg(feature = "s3")]
pub mod crd;
