use std::sync::Arc;

use anyhow::Result;

use crate::args::{CopyArgs, GlobalArgs};
use crate::output::{json_line, size, CliProgress};
use crate::repo::{self, Source};

pub async fn run(g: &GlobalArgs, a: CopyArgs) -> Result<()> {
    let src = repo::open_source(
        g,
        &Source {
            repo: a.from_repo.as_deref(),
            secret: a.from_secret.as_deref(),
            password_file: a.from_password_file.as_deref(),
        },
    )
    .await?;
    let dst = repo::open(g).await?;
    let selected = repo::select_snapshots(&src, &a.snapshots, &a.filter).await?;
    let progress = Arc::new(CliProgress::new(g.quiet, g.json));
    let result = hoard_core::copy(&src, &dst, &selected, progress.clone()).await;
    progress.finish();
    let stats = result?;
    if g.json {
        let mut v = serde_json::to_value(&stats)?;
        v["message_type"] = "summary".into();
        json_line(&v)?;
    } else if !g.quiet {
        for (from, to) in &stats.copied {
            println!("snapshot {} copied as {}", from.short(), to.short());
        }
        for id in &stats.skipped {
            println!(
                "snapshot {} is already in the destination: skipped",
                id.short()
            );
        }
        println!(
            "copied {} snapshots, {} new blobs ({})",
            stats.copied.len(),
            stats.blobs_added,
            size(stats.bytes_added)
        );
    }
    Ok(())
}
