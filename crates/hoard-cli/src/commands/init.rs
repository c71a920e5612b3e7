use anyhow::Result;
use hoard_core::{InitOptions, Repository};

use crate::args::{GlobalArgs, InitArgs};
use crate::output::json_line;
use crate::repo;

pub async fn run(g: &GlobalArgs, a: InitArgs) -> Result<()> {
    let settings = repo::settings(g)?;
    let pw = repo::password(g, &settings.conn.secrets)?;
    let d = InitOptions::default();
    let opts = InitOptions {
        kdf: a.kdf.params(),
        pack_size: a.pack_size.map(|m| m * 1024 * 1024).unwrap_or(d.pack_size),
        compression_level: a.compression.unwrap_or(d.compression_level),
    };
    let op = settings.operator(true).await?;
    let r = Repository::init_with(op, &pw.0, opts, &settings.conn.open_options())
        .await
        .map_err(|e| settings.explain(e))?;
    if g.json {
        json_line(&serde_json::json!({
            "message_type": "initialized",
            "id": r.config().id,
            "repository": r.location(),
        }))?;
    } else if !g.quiet {
        println!(
            "created hoard repository {} at {}",
            r.config().id.short(),
            r.location()
        );
        println!();
        println!(
            "Please note that knowledge of your password is required to access the repository."
        );
        println!("Losing your password means that your data is irrecoverably lost.");
    }
    Ok(())
}
