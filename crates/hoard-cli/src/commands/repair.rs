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
    }
}
