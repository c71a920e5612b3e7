use std::sync::Arc;

use anyhow::{bail, Result};
use hoard_core::{Overwrite, RestoreOptions};

use crate::args::{GlobalArgs, OverwriteArg, RestoreArgs};
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
        iinclude: a.iinclude,
        exclude: a.exclude,
        iexclude: a.iexclude,
        owners: None,
        source_path,
        overwrite: match a.overwrite {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::IfNewer => Overwrite::IfNewer,
            OverwriteArg::Never => Overwrite::Never,
        },
        delete: a.delete,
        dry_run: a.dry_run,
        verify: a.verify,
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
        let (verb, written) = if s.dry_run {
            ("would restore", "to write")
        } else {
            ("restored", "written")
        };
        println!(
            "{verb} {} files ({} already up to date), {} dirs, {} links and special files, {} {written}",
            s.files_restored,
            s.files_skipped,
            s.dirs,
            s.specials,
            size(s.bytes_written)
        );
        if s.files_kept > 0 {
            println!("{} existing files kept (--overwrite)", s.files_kept);
        }
        if a.delete {
            let deleted = if s.dry_run { "would delete" } else { "deleted" };
            println!("{deleted} {} entries not in the snapshot", s.files_deleted);
        }
        if a.verify {
            println!("verified {} files", s.files_verified);
        }
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
