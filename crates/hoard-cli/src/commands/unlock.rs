use anyhow::Result;

use crate::args::{GlobalArgs, UnlockArgs};
use crate::output::json_line;
use crate::repo;

pub async fn run(g: &GlobalArgs, a: UnlockArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let removed =
        hoard_core::lock::remove_locks(&r, a.remove_all, &hoard_core::LockTiming::default())
            .await?;
    if g.json {
        json_line(&serde_json::json!({"message_type": "unlock", "removed": removed}))?;
    } else if !g.quiet {
        println!("removed {removed} locks");
    }
    Ok(())
}
