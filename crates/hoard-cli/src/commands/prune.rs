use anyhow::{bail, Result};
use hoard_core::{PruneOptions, PruneStats};

use crate::args::{GlobalArgs, PruneArgs};
use crate::output::{json_line, size};
use crate::repo;

/// `5%`, `0%`, `unlimited`.
pub fn parse_max_unused(s: &str) -> Result<f64> {
    if s == "unlimited" {
        return Ok(100.0);
    }
    match s.strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
        Some(Ok(p)) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => bail!("--max-unused {s:?}: give a percentage (e.g. 5%, 0%) or `unlimited`"),
    }
}

pub async fn run(g: &GlobalArgs, a: PruneArgs) -> Result<()> {
    let r = repo::open(g).await?;
    run_on(g, &r, &a.max_unused, a.dry_run).await
}

pub async fn run_on(
    g: &GlobalArgs,
    r: &hoard_core::Repository,
    max_unused: &str,
    dry_run: bool,
) -> Result<()> {
    let opts = PruneOptions {
        max_unused_percent: parse_max_unused(max_unused)?,
        dry_run,
    };
    let progress = crate::output::CliProgress::new(g.quiet, g.json);
    let stats = hoard_core::prune(r, &opts, &progress).await;
    progress.finish();
    print(g, &stats?)
}

fn print(g: &GlobalArgs, s: &PruneStats) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(s)?;
        v["message_type"] = "prune".into();
        return json_line(&v);
    }
    if g.quiet {
        return Ok(());
    }
    let would = if s.dry_run { "would " } else { "" };
    println!(
        "{} snapshots; {} packs, {} before",
        s.snapshots,
        s.packs_before,
        size(s.bytes_before)
    );
    println!("used:   {:>10} blobs, {}", s.blobs_used, size(s.bytes_used));
    println!(
        "unused: {:>10} blobs, {}",
        s.blobs_unused,
        size(s.bytes_unused)
    );
    println!(
        "{would}delete {} unused packs and {} packs no index names ({}); {would}repack {} packs into {} ({})",
        s.packs_deleted,
        s.packs_unreferenced,
        size(s.bytes_unreferenced),
        s.packs_repacked,
        s.packs_written,
        size(s.bytes_written)
    );
    if s.packs_missing_unused > 0 {
        println!(
            "{would}drop {} missing packs that held nothing in use from the index",
            s.packs_missing_unused
        );
    }
    println!(
        "{would}free {}; {} after, {} of it unused",
        size(s.bytes_freed),
        size(s.bytes_after),
        size(s.bytes_unused_after)
    );
    Ok(())
}
