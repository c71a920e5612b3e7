//! The repository format: everything that is written to storage, as bytes. docs/FORMAT.md is
//! the normative description; each module here implements one of its sections and says which.
//!
//! Nothing here does I/O: these are pure encoders and decoders (and the chunker, which cuts a
//! byte stream), so every one of them can be fuzzed and property-tested alone. The
//! [`crate::repository`] module puts them on storage.

pub mod blob;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod index;
pub mod keyfile;
pub mod pack;
pub mod snapshot;
pub mod tree;
