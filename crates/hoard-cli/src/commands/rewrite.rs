use anyhow::Result;
use hoard_core::RewriteOptions;

use crate::args::{GlobalArgs, RewriteArgs};
use crate::output::json_line;
use crate::repo;

pub async fn run(g: &GlobalArgs, a: RewriteArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let selected = repo::select_snapshots(&r, &a.snapshots, &a.filter).await?;
    let (exclude, iexclude) = a.exclude.patterns()?;
    let opts = RewriteOptions {
        exclude,
        iexclude,
        forget: a.forget,
        dry_run: a.dry_run,
    };
    let done = hoard_core::rewrite(&r, &selected, &opts).await?;
    if g.json {
        for d in &done {
            let mut v = serde_json::to_value(d)?;
            v["message_type"] = "rewritten".into();
            json_line(&v)?;
        }
        json_line(&serde_json::json!({
            "message_type": "summary",
            "rewritten": done.len(),
            "dry_run": a.dry_run,
        }))?;
    } else if !g.quiet {
        for d in &done {
            for p in &d.removed {
                println!("  removed {}", p.display());
            }
            if a.dry_run {
                println!("snapshot {} would be rewritten", d.original.short());
            } else {
                println!(
                    "snapshot {} rewritten as {}",
                    d.original.short(),
                    d.new.short()
                );
            }
        }
        let verb = if a.dry_run {
            "would modify"
        } else {
            "modified"
        };
        println!("{verb} {} snapshots", done.len());
    }
    Ok(())
}
