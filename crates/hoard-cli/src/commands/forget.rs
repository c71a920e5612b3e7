use anyhow::Result;
use hoard_core::forget::GroupDecision;
use hoard_core::{ForgetOptions, GroupBy, Id, Policy, SnapshotEntry, SnapshotFilter, Span};

use crate::args::{ForgetArgs, GlobalArgs};
use crate::output::snapshot_table;
use crate::repo;

fn tag_lists(v: &[String]) -> Vec<Vec<String>> {
    v.iter()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        })
        .filter(|l: &Vec<String>| !l.is_empty())
        .collect()
}

fn span(s: &Option<String>) -> Result<Option<Span>> {
    Ok(s.as_deref().map(str::parse).transpose()?)
}

fn policy(a: &ForgetArgs) -> Result<Policy> {
    Ok(Policy {
        last: a.keep_last.unwrap_or(0),
        hourly: a.keep_hourly.unwrap_or(0),
        daily: a.keep_daily.unwrap_or(0),
        weekly: a.keep_weekly.unwrap_or(0),
        monthly: a.keep_monthly.unwrap_or(0),
        yearly: a.keep_yearly.unwrap_or(0),
        within: span(&a.keep_within)?,
        within_hourly: span(&a.keep_within_hourly)?,
        within_daily: span(&a.keep_within_daily)?,
        within_weekly: span(&a.keep_within_weekly)?,
        within_monthly: span(&a.keep_within_monthly)?,
        within_yearly: span(&a.keep_within_yearly)?,
        tags: tag_lists(&a.keep_tag),
    })
}

pub async fn run(g: &GlobalArgs, a: ForgetArgs) -> Result<()> {
    let policy = policy(&a)?;
    for n in [
        a.keep_last,
        a.keep_hourly,
        a.keep_daily,
        a.keep_weekly,
        a.keep_monthly,
        a.keep_yearly,
    ]
    .into_iter()
    .flatten()
    {
        if n < -1 {
            anyhow::bail!("keep counts must be -1 (unlimited) or more, not {n}");
        }
    }
    let group_by: GroupBy = a.group_by.parse()?;
    if a.prune {
        crate::commands::prune::parse_max_unused(&a.max_unused)?;
    }
    let r = repo::open(g).await?;
    let mut by_id: Vec<Id> = Vec::new();
    for spec in &a.snapshots {
        by_id.push(r.find_snapshot_id(spec).await?);
    }
    if policy.is_empty() && a.snapshots.is_empty() && !g.quiet {
        eprintln!("hoard: no policy was given (--keep-*), so no snapshots are removed");
    }
    let opts = ForgetOptions {
        group_by,
        filter: SnapshotFilter {
            hosts: a.host.clone(),
            tags: tag_lists(&a.tag),
            paths: a.path.clone(),
        },
        dry_run: a.dry_run,
    };
    // Buckets follow the local calendar, as restic's do.
    let done = hoard_core::forget_in_zone(&r, &policy, &opts, &chrono::Local).await?;
    print(g, &a, &done.groups)?;
    if !a.dry_run && !by_id.is_empty() {
        hoard_core::forget_snapshots(&r, &by_id).await?;
    }
    let mut removed = done.removed;
    removed.extend(by_id);
    removed.sort();
    removed.dedup();
    if !a.dry_run && !removed.is_empty() && !g.quiet && !g.json {
        println!("removed {} snapshots", removed.len());
    }
    if a.prune {
        crate::commands::prune::run_on(g, &r, &a.max_unused, a.max_repack_size, a.dry_run).await?;
    }
    Ok(())
}

fn print(g: &GlobalArgs, a: &ForgetArgs, plan: &[GroupDecision]) -> Result<()> {
    if g.json {
        let groups: Vec<serde_json::Value> = plan
            .iter()
            .map(|gd| {
                let pick = |keep: bool| -> Vec<&SnapshotEntry> {
                    gd.decisions
                        .iter()
                        .filter(|d| d.keep == keep)
                        .map(|d| &d.snapshot)
                        .collect()
                };
                serde_json::json!({
                    "host": gd.group.hostname,
                    "paths": gd.group.paths,
                    "tags": gd.group.tags,
                    "keep": pick(true),
                    "remove": pick(false),
                    "reasons": gd.decisions.iter().filter(|d| d.keep).map(|d| serde_json::json!({
                        "snapshot": d.snapshot, "matches": d.reasons,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&groups)?);
        return Ok(());
    }
    if g.quiet {
        return Ok(());
    }
    for gd in plan {
        println!("snapshots for {}:", gd.group);
        let keep: Vec<_> = gd.decisions.iter().filter(|d| d.keep).collect();
        let remove: Vec<_> = gd.decisions.iter().filter(|d| !d.keep).collect();
        println!("keep {} snapshots:", keep.len());
        table(&keep, true);
        if !remove.is_empty() {
            println!(
                "{} {} snapshots:",
                if a.dry_run { "would remove" } else { "remove" },
                remove.len()
            );
            table(&remove, false);
        }
        println!();
    }
    Ok(())
}

fn table(rows: &[&hoard_core::forget::Decision], reasons: bool) {
    let rows: Vec<_> = rows
        .iter()
        .map(|d| {
            let lines = if reasons {
                d.reasons.clone()
            } else {
                d.snapshot.snapshot.paths.clone()
            };
            (&d.snapshot, lines)
        })
        .collect();
    snapshot_table(if reasons { "Reasons" } else { "Paths" }, &rows, 90);
}
