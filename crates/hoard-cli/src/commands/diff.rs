use anyhow::Result;

use crate::args::{DiffArgs, GlobalArgs};
use crate::output::{json_line, size};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: DiffArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let from = r.find_snapshot(&a.from).await?;
    let to = r.find_snapshot(&a.to).await?;
    let (changes, stats) = hoard_core::diff::diff(&r, from.snapshot.tree, to.snapshot.tree).await?;
    if g.json {
        for c in &changes {
            json_line(&serde_json::json!({
                "message_type": "change", "path": c.path, "modifier": c.modifier,
            }))?;
        }
        let mut v = serde_json::to_value(&stats)?;
        v["message_type"] = "statistics".into();
        v["source_snapshot"] = from.id.to_hex().into();
        v["target_snapshot"] = to.id.to_hex().into();
        return json_line(&v);
    }
    if g.quiet {
        return Ok(());
    }
    println!(
        "comparing snapshot {} to {}:",
        from.short_id(),
        to.short_id()
    );
    println!();
    for c in &changes {
        println!("{:<5}{}", c.modifier, c.path);
    }
    println!();
    println!(
        "Files:       {:>5} new, {:>5} removed, {:>5} changed",
        stats.added_files, stats.removed_files, stats.changed_files
    );
    println!(
        "Dirs:        {:>5} new, {:>5} removed",
        stats.added_dirs, stats.removed_dirs
    );
    println!(
        "Others:      {:>5} new, {:>5} removed",
        stats.added_others, stats.removed_others
    );
    println!("Added:   {}", size(stats.added_bytes));
    println!("Removed: {}", size(stats.removed_bytes));
    Ok(())
}
