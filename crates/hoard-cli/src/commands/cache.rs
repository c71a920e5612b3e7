use std::time::Duration;

use anyhow::{bail, Context, Result};
use hoard_core::repository::cache;

use crate::args::{CacheArgs, GlobalArgs};
use crate::output::json_line;

/// Works on the cache directory alone: no repository, password or network needed.
pub fn run(g: &GlobalArgs, a: CacheArgs) -> Result<()> {
    let Some(base) = g.cache_dir.clone().or_else(cache::default_base) else {
        bail!("no cache directory: set --cache-dir, RESTIC_CACHE_DIR, XDG_CACHE_HOME or HOME");
    };
    let max_age = Duration::from_secs(a.max_age.saturating_mul(24 * 3600));
    // Without --cleanup nothing is removed: the same walk, as a dry run.
    let report = cache::cleanup(&base, max_age, !a.cleanup || a.dry_run)
        .with_context(|| format!("cache directory {}", base.display()))?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "cache".into();
        v["dir"] = base.display().to_string().into();
        return json_line(&v);
    }
    if g.quiet {
        return Ok(());
    }
    println!("cache directory {}", base.display());
    for id in &report.kept {
        println!("  {}  in use", &id[..8]);
    }
    let verb = if a.cleanup && !a.dry_run {
        "removed"
    } else {
        "unused"
    };
    for id in &report.removed {
        println!("  {}  {verb} (older than {} days)", &id[..8], a.max_age);
    }
    Ok(())
}
