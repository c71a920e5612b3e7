use anyhow::{bail, Result};
use hoard_core::{PruneOptions, PruneStats};

use crate::args::{GlobalArgs, PruneArgs};
use crate::output::{json_line, size};
use crate::repo;

/// restic's `--max-unused`: `5%`, `0%`, `unlimited`, or a size (`0`, `10M`, `2G`); returns
/// the percentage and, for a size, the bytes.
pub fn parse_max_unused(s: &str) -> Result<(f64, Option<u64>)> {
    let s = s.trim();
    if s == "unlimited" {
        return Ok((100.0, None));
    }
    if let Some(p) = s.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok((p, None)),
            _ => bail!("--max-unused {s:?}: a percentage is 0% to 100%"),
        };
    }
    match crate::parse::parse_size(s) {
        Ok(bytes) => Ok((0.0, Some(bytes))),
        Err(_) => {
            bail!("--max-unused {s:?}: give a percentage (5%), a size (10M, 2G) or `unlimited`")
        }
    }
}

pub async fn run(g: &GlobalArgs, a: PruneArgs) -> Result<()> {
    let r = repo::open(g).await?;
    run_on(g, &r, &a.max_unused, a.max_repack_size, a.dry_run).await
}

pub async fn run_on(
    g: &GlobalArgs,
    r: &hoard_core::Repository,
    max_unused: &str,
    max_repack_bytes: Option<u64>,
    dry_run: bool,
) -> Result<()> {
    let (max_unused_percent, max_unused_bytes) = parse_max_unused(max_unused)?;
    let opts = PruneOptions {
        max_unused_percent,
        max_unused_bytes,
        max_repack_bytes,
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
    if s.shares_expired > 0 {
        println!("{would}delete {} expired shares", s.shares_expired);
    }
    println!(
        "{would}free {}; {} after, {} of it unused",
        size(s.bytes_freed),
        size(s.bytes_after),
        size(s.bytes_unused_after)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_max_unused;

    #[test]
    fn max_unused_takes_shares_sizes_and_unlimited() {
        assert_eq!(parse_max_unused("5%").unwrap(), (5.0, None));
        assert_eq!(parse_max_unused("unlimited").unwrap(), (100.0, None));
        assert_eq!(parse_max_unused("0").unwrap(), (0.0, Some(0)));
        assert_eq!(parse_max_unused("10M").unwrap(), (0.0, Some(10 << 20)));
        for bad in ["150%", "-1%", "lots", "5%%"] {
            assert!(parse_max_unused(bad).is_err(), "{bad:?}");
        }
    }
}
