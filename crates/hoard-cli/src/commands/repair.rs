use anyhow::Result;

use crate::args::{GlobalArgs, RepairArgs, RepairCommand};
use crate::output::{json_line, CliProgress};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: RepairArgs) -> Result<()> {
    // The config cannot be opened when it is what needs the repair.
    if let RepairCommand::Config = a.command {
        return repair_config(g).await;
    }
    let r = repo::open(g).await?;
    match a.command {
        RepairCommand::Config => Ok(()),
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
                    eprintln!("header unreadable: {p}");
                }
                for p in &stats.packs_kept_from_index {
                    eprintln!(
                        "pack {}: kept from the old index; `hoard repair packs {}` salvages what is readable",
                        &p[..8],
                        &p[..8]
                    );
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
                for id in &stats.unsalvageable {
                    let fate = if forget {
                        "removed"
                    } else {
                        "kept as it is (`--forget` removes it)"
                    };
                    println!("snapshot {}: nothing could be saved; {fate}", id.short());
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
        RepairCommand::Packs { ids } => {
            let ids = hoard_core::repair::find_packs(&r, &ids).await?;
            let progress = CliProgress::new(g.quiet, g.json);
            let stats = hoard_core::repair_packs(&r, &ids, &progress).await;
            progress.finish();
            let stats = stats?;
            if g.json {
                let mut v = serde_json::to_value(&stats)?;
                v["message_type"] = "repair_packs".into();
                json_line(&v)?;
            } else if !g.quiet {
                for line in &stats.blobs_lost {
                    eprintln!("lost: {line}");
                }
                println!(
                    "{} packs: {} of {} blobs salvaged into {} new packs, {} held elsewhere, {} lost; \
                     {} damaged packs removed",
                    stats.packs,
                    stats.blobs_salvaged,
                    stats.blobs,
                    stats.packs_written,
                    stats.blobs_elsewhere,
                    stats.blobs_lost.len(),
                    stats.packs_deleted
                );
            }
            if !stats.blobs_lost.is_empty() {
                eprintln!(
                    "warning: {} blobs are lost; run `hoard repair snapshots` to rewrite the snapshots that need them",
                    stats.blobs_lost.len()
                );
            }
            Ok(())
        }
    }
}

/// The config cannot be read, so the repository is reached without opening it: only the key
/// files are needed.
async fn repair_config(g: &GlobalArgs) -> Result<()> {
    let s = repo::settings(g)?;
    let pw = repo::password(g, &s.conn.secrets)?;
    let op = match s.operator(false).await {
        Ok(op) => op,
        // A local repository whose config is gone: open it anyway when it has key files.
        Err(e) => match &s.conn.location {
            hoard_s3::Location::Local(p) if p.join("keys").is_dir() => s.operator(true).await?,
            _ => return Err(e),
        },
    };
    let stats = hoard_core::repair_config(op, &pw.0)
        .await
        .map_err(|e| s.explain(e))?;
    if g.json {
        let mut v = serde_json::to_value(&stats)?;
        v["message_type"] = "repair_config".into();
        json_line(&v)?;
    } else if !g.quiet {
        if stats.healthy {
            println!("the config is healthy; nothing to repair");
            return Ok(());
        }
        if let Some(p) = &stats.problem {
            println!("config: {p}");
        }
        for f in &stats.kept {
            println!("kept: {f}");
        }
        for f in &stats.replaced {
            println!("replaced: {f}");
        }
        println!("config repaired");
    }
    Ok(())
}
