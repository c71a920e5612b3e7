//! Repairs: bring a damaged repository back to a clean `check` (FORMAT.md "Prune" for the
//! write order they share).
//!
//! - `repair_index` rebuilds the whole index from the packs themselves: every pack's header is
//!   authenticated and lists its blobs, so index files are only a cache of them. Like prune,
//!   it writes the new index files first (the last one superseding every index file that
//!   existed), and only then deletes the old ones, so a crash at any point leaves a readable
//!   index.
//! - `repair_snapshots` rewrites snapshots that need blobs that are gone, leaving out what
//!   cannot be restored, so that they restore and check clean (and prune can run).
//! - `repair_config` replaces a damaged config, keeping what of it is readable and valid.
//! - `repair_packs` salvages what can be read of damaged packs into new packs, then drops the
//!   damaged packs from the index and storage, so `check --read-data` passes again (after
//!   `repair_snapshots` for what could not be salvaged).

mod config;
mod index;
mod packs;
mod snapshots;

pub use config::{repair_config, RepairConfigStats};
pub use index::{repair_index, RepairIndexStats};
pub use packs::{find_packs, repair_packs, RepairPacksStats};
pub use snapshots::{repair_snapshots, RepairSnapshotsOptions, RepairSnapshotsStats};
