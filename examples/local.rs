//! Back up a directory into a local repository, restore it, then forget, prune and check,
//! through the library API.
//!
//! `cargo run --example local -- [DIR]` (default: this crate's `src/`). The repository and the
//! restored copy go to a temporary directory that is removed at the end.

use std::sync::Arc;

use hoard::{
    backup, check, forget, prune, restore, BackupOptions, CheckOptions, ForgetOptions, InitOptions,
    NoProgress, Policy, PruneOptions, ReadData, Repository, RestoreOptions,
};

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

    // Keep only the newest snapshot, give back the space nothing uses any more, and verify
    // every pack.
    let policy = Policy {
        last: 1,
        ..Default::default()
    };
    let forgotten = forget(&repo, &policy, &ForgetOptions::default()).await?;
    println!("forgot {} snapshots", forgotten.removed.len());
    let popts = PruneOptions {
        max_unused_percent: 0.0,
        ..Default::default()
    };
    let pruned = prune(&repo, &popts, &NoProgress).await?;
    println!("prune freed {} bytes", pruned.bytes_freed);
    let copts = CheckOptions {
        read_data: ReadData::All,
    };
    let report = check(&repo, &copts, &NoProgress).await?;
    println!(
        "check read {} packs: {}",
        report.packs_read,
        if report.is_clean() {
            "no errors"
        } else {
            "ERRORS"
        }
    );
    Ok(())
}
