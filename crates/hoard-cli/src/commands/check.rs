use anyhow::{bail, Result};
use hoard_core::{CheckOptions, ReadData};

use crate::args::{CheckArgs, GlobalArgs};
use crate::output::{json_line, size};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: CheckArgs) -> Result<()> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => s.parse::<ReadData>()?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let r = repo::open_uncached(g).await?;
    let opts = CheckOptions { read_data };
    let progress = crate::output::CliProgress::new(g.quiet, g.json);
    let report = hoard_core::check(&r, &opts, &progress).await;
    progress.finish();
    let report = report?;
    // For the web console's health page on this machine (nothing is written with --no-cache).
    if let Some(base) = repo::cache_base(g) {
        let last = hoard_core::repository::cache::LastCheck::of(&report);
        if let Err(e) = hoard_core::repository::cache::record_check(&base, &r.config().id, &last) {
            tracing::debug!("cannot record the check in {}: {e}", base.display());
        }
    }
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "check".into();
        json_line(&v)?;
    } else {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if !g.quiet {
            for n in &report.notes {
                println!("note: {n}");
            }
            println!(
                "checked {} snapshots, {} trees, {} index files, {} packs; read {} packs ({})",
                report.snapshots,
                report.trees,
                report.index_files,
                report.packs,
                report.packs_read,
                size(report.bytes_read)
            );
        }
    }
    if !report.is_clean() {
        bail!(
            "the repository has {} errors (listed above)",
            report.errors.len()
        );
    }
    if !g.json && !g.quiet {
        println!("no errors were found");
    }
    Ok(())
}
