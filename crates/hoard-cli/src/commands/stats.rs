use anyhow::Result;

use crate::args::{GlobalArgs, StatsArgs};
use crate::output::size;
use crate::repo;

pub async fn run(g: &GlobalArgs, a: StatsArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let trees = if a.snapshots.is_empty() {
        r.snapshots()
            .await?
            .into_iter()
            .map(|s| s.snapshot.tree)
            .collect::<Vec<_>>()
    } else {
        let mut t = Vec::new();
        for s in &a.snapshots {
            t.push(r.find_snapshot(s).await?.snapshot.tree);
        }
        t
    };
    let s = hoard_core::stats(&r, &trees).await?;
    if g.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!("Snapshots processed:   {}", s.snapshots);
        println!("Total file count:      {}", s.total_file_count);
        println!("Total restore size:    {}", size(s.total_restore_size));
        println!(
            "Unique raw data:       {} in {} blobs",
            size(s.total_uncompressed_size),
            s.total_blob_count
        );
        println!("Stored size:           {}", size(s.total_size));
        println!("Deduplication ratio:   {:.2}x", s.dedup_ratio);
        println!("Compression ratio:     {:.2}x", s.compression_ratio);
    }
    Ok(())
}
