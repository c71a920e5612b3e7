use std::io::Write;

use anyhow::Result;
use hoard_core::FindOptions;

use crate::args::{FindArgs, GlobalArgs};
use crate::commands::ls::mode_string;
use crate::output::size;
use crate::repo;

/// restic's `find`: per snapshot, the matching paths; with --json one array of
/// `{snapshot, hits, matches}` as restic prints it.
pub async fn run(g: &GlobalArgs, a: FindArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let chosen = repo::select_snapshots(&r, &a.snapshots, &a.filter).await?;
    let opts = FindOptions {
        patterns: a.patterns.clone(),
        ignore_case: a.ignore_case,
        newer_than: a.oldest,
        older_than: a.newest,
        min_size: a.larger_than,
        max_size: a.smaller_than,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut json = Vec::new();
    for s in &chosen {
        let found = hoard_core::find(&r, s, &opts).await?;
        if g.json {
            let matches: Vec<serde_json::Value> = found
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "path": f.path.to_string_lossy(),
                        "type": f.node.node_type,
                        "permissions": mode_string(&f.node),
                        "size": f.node.size,
                        "mtime": chrono::DateTime::from_timestamp_nanos(f.node.mtime),
                        "uid": f.node.uid, "gid": f.node.gid,
                        "user": f.node.user, "group": f.node.group,
                    })
                })
                .collect();
            json.push(serde_json::json!({
                "snapshot": s.id,
                "hits": matches.len(),
                "matches": matches,
            }));
            continue;
        }
        if found.is_empty() {
            continue;
        }
        writeln!(
            out,
            "Found matching entries in snapshot {} from {}",
            s.short_id(),
            s.snapshot.time.format("%Y-%m-%d %H:%M:%S")
        )?;
        for f in &found {
            if a.long {
                writeln!(
                    out,
                    "{} {:>10} {} {}",
                    mode_string(&f.node),
                    size(f.node.size),
                    chrono::DateTime::from_timestamp_nanos(f.node.mtime)
                        .format("%Y-%m-%d %H:%M:%S"),
                    f.path.display()
                )?;
            } else {
                writeln!(out, "{}", f.path.display())?;
            }
        }
        writeln!(out)?;
    }
    if g.json {
        writeln!(out, "{}", serde_json::Value::Array(json))?;
    }
    out.flush()?;
    Ok(())
}
