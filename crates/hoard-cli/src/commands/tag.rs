use anyhow::Result;
use hoard_core::TagChange;

use crate::args::{GlobalArgs, TagArgs};
use crate::output::json_line;
use crate::repo;

pub async fn run(g: &GlobalArgs, a: TagArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let selected = repo::select_snapshots(&r, &a.snapshots, &a.filter).await?;
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
