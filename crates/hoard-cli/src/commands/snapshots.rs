use anyhow::Result;

use crate::args::{GlobalArgs, SnapshotsArgs};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: SnapshotsArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let list: Vec<_> = r
        .snapshots()
        .await?
        .into_iter()
        .filter(|s| a.host.as_ref().is_none_or(|h| &s.snapshot.hostname == h))
        .filter(|s| a.tag.iter().all(|t| s.snapshot.tags.contains(t)))
        .collect();
    if g.json {
        let entries: Vec<serde_json::Value> = list
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["short_id"] = s.short_id().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string(&entries)?);
        return Ok(());
    }
    let rows: Vec<_> = list
        .iter()
        .map(|s| (s, vec![s.snapshot.paths.join(", ")]))
        .collect();
    crate::output::snapshot_table("Paths", &rows, 80);
    println!("{} snapshots", list.len());
    Ok(())
}
