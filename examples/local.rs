//! Back up a directory into a local repository and restore it, through the library API.
//!
//! `cargo run --example local -- [DIR]` (default: this crate's `src/`). The repository and the
//! restored copy go to a temporary directory that is removed at the end.

use std::sync::Arc;

use hoard::{backup, restore, BackupOptions, InitOptions, NoProgress, Repository, RestoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let scratch = tempfile::tempdir()?;
    let op = hoard::repository::local_operator(&scratch.path().join("repo"), true)?;
    let repo = Repository::init(op, b"example password", InitOptions::default()).await?;
    println!("initialised repository {}", repo.config().id.short());

    let opts = BackupOptions {
        paths: vec![source.clone()],
        ..Default::default()
    };
    let first = backup(&repo, opts.clone(), Arc::new(NoProgress)).await?;
    println!(
        "snapshot {}: {} files, {} bytes added",
        first.snapshot.short_id(),
        first.summary.total_files_processed,
        first.summary.data_added
    );
    let second = backup(&repo, opts, Arc::new(NoProgress)).await?;
    println!(
        "snapshot {}: {} files unmodified, {} bytes added",
        second.snapshot.short_id(),
        second.summary.files_unmodified,
        second.summary.data_added
    );

    let target = scratch.path().join("restored");
    let ropts = RestoreOptions {
        target: target.clone(),
        ..Default::default()
    };
    let done = restore(&repo, &second.snapshot, &ropts, Arc::new(NoProgress)).await?;
    println!(
        "restored {} files ({} bytes) under {}",
        done.files_restored,
        done.bytes_written,
        target.display()
    );
    Ok(())
}
