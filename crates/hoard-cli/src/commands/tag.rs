use anyhow::Result;
use hoard_core::TagChange;

use crate::args::{GlobalArgs, TagArgs};
use crate::output::json_line;
use crate::repo;

pub async fn run(g: &GlobalArgs, a: TagArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let chosen = if a.snapshots.is_empty() {
        r.snapshots().await?
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshots {
            v.push(r.find_snapshot(spec).await?);
        }
        v
    };
    let selected: Vec<_> = chosen
        .into_iter()
        .filter(|s| a.host.as_ref().is_none_or(|h| &s.snapshot.hostname == h))
        .filter(|s| a.tag.iter().all(|t| s.snapshot.tags.contains(t)))
        .filter(|s| a.path.iter().all(|p| s.snapshot.paths.contains(p)))
        .collect();
    let change = TagChange {
        add: a.add,
        remove: a.remove,
        set: (!a.set.is_empty()).then_some(a.set),
    };
    let changed = hoard_core::tag(&r, &selected, &change).await?;
    if g.json {
        for (old, new) in &changed {
            json_line(&serde_json::json!({
                "message_type": "changed",
                "old_snapshot_id": old,
                "new_snapshot_id": new,
            }))?;
        }
        json_line(&serde_json::json!({
            "message_type": "summary",
            "changed_snapshots": changed.len(),
        }))?;
    } else if !g.quiet {
        for (old, new) in &changed {
            println!("snapshot {} saved as {}", old.short(), new.short());
        }
        println!("modified tags on {} snapshots", changed.len());
    }
    Ok(())
}
