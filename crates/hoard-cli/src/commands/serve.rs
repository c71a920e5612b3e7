use anyhow::{Context, Result};
use hoard_serve::{Console, ServeOptions};

use crate::args::{GlobalArgs, ServeArgs};
use crate::repo;

/// Serves until Ctrl-C or SIGTERM; requests under way finish first.
pub async fn run(g: &GlobalArgs, a: ServeArgs) -> Result<()> {
    let token = match &a.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --token-file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => repo::secrets(g)?
            .get(hoard_s3::secrets::HOARD_SERVE_TOKEN)
            .map(str::to_string),
    };
    let r = repo::open(g).await?;
    let opts = ServeOptions {
        token,
        allow_actions: a.allow_restore,
        check_records: repo::cache_base(g),
    };
    let console = Console::bind(r, a.listen, opts).await?;
    let addr = console.local_addr()?;
    if !g.quiet {
        eprintln!("hoard console on http://{addr}/ (stop with Ctrl-C or SIGTERM)");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    console
        .serve(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}
