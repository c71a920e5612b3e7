use anyhow::Result;

use crate::args::{GlobalArgs, RepairArgs, RepairCommand};
use crate::output::{json_line, CliProgress};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: RepairArgs) -> Result<()> {
    let r = repo::open(g).await?;
    match a.command {
        RepairCommand::Index => {
            let progress = CliProgress::new(g.quiet, g.json);
            let stats = hoard_core::repair_index(&r, &progress).await;
            progress.finish();
            let stats = stats?;
            if g.json {
                let mut v = serde_json::to_value(&stats)?;
                v["message_type"] = "repair_index".into();
                json_line(&v)?;
            } else if !g.quiet {
                for p in &stats.packs_damaged {
                    eprintln!("left out: {p}");
                }
                println!(
                    "indexed {} blobs in {} of {} packs; wrote {} index files, replaced {}",
                    stats.blobs,
                    stats.packs_indexed,
                    stats.packs,
                    stats.index_files_written,
                    stats.index_files_deleted
                );
            }
            Ok(())
        }
        RepairCommand::Snapshots { forget, dry_run } => {
            let opts = hoard_core::RepairSnapshotsOptions { forget, dry_run };
            let stats = hoard_core::repair_snapshots(&r, opts).await?;
            if g.json {
                let mut v = serde_json::to_value(&stats)?;
                v["message_type"] = "repair_snapshots".into();
                json_line(&v)?;
            } else if !g.quiet {
                for line in &stats.removed {
                    println!("removed: {line}");
                }
                for (old, new) in &stats.repaired {
                    if dry_run {
                        println!("would repair snapshot {}", old.short());
                    } else {
                        println!("snapshot {} repaired as {}", old.short(), new.short());
                    }
                }
                println!(
                    "{} of {} snapshots {}repaired{}",
                    stats.repaired.len(),
                    stats.snapshots,
                    if dry_run { "would be " } else { "" },
                    if stats.forgotten > 0 {
                        format!(", {} originals removed", stats.forgotten)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
    }
}
