use std::sync::Arc;

use anyhow::{bail, Result};
use hoard_core::RestoreOptions;

use crate::args::{GlobalArgs, RestoreArgs};
use crate::output::{json_line, size, CliProgress};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: RestoreArgs) -> Result<()> {
    let r = repo::open(g).await?;
    // `latest:/etc` names a path in the snapshot; snapshot ids hold no colon.
    let (spec, source_path) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s, Some(p.to_string())),
        None => (a.snapshot.as_str(), None),
    };
    let snap = r.find_snapshot(spec).await?;
    if !g.quiet && !g.json {
        println!(
            "restoring snapshot {} of {:?} to {}",
            snap.short_id(),
            snap.snapshot.paths,
            a.target.display()
        );
    }
    let opts = RestoreOptions {
        target: a.target,
        include: a.include,
        owners: None,
        source_path,
    };
    let progress = Arc::new(CliProgress::new(g.quiet, g.json));
    let result = hoard_core::restore(&r, &snap, &opts, progress.clone()).await;
    progress.finish();
    let s = result?;
    if g.json {
        let mut v = serde_json::to_value(&s)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = serde_json::to_value(snap.id)?;
        json_line(&v)?;
    } else if !g.quiet {
        println!(
            "restored {} files ({} already up to date), {} dirs, {} links and special files, {} written",
            s.files_restored,
            s.files_skipped,
            s.dirs,
            s.specials,
            size(s.bytes_written)
        );
    }
    if !s.errors.is_empty() {
        if !g.json {
            // The final word on each: what is left on disk (a damaged file is renamed).
            for e in &s.errors {
                eprintln!("not restored: {}: {}", e.path.display(), e.message);
            }
        }
        bail!(
            "{} files could not be restored ({} left as NAME.damaged)",
            s.errors.len(),
            s.files_damaged
        );
    }
    Ok(())
}
