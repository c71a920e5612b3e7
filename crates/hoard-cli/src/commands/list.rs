use anyhow::Result;
use hoard_core::FileKind;

use crate::args::{GlobalArgs, ListArgs, ListKind};
use crate::repo;

/// One id per line, as restic prints them, for scripts.
pub async fn run(g: &GlobalArgs, a: ListArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let kind = match a.kind {
        ListKind::Snapshots => FileKind::Snapshot,
        ListKind::Index => FileKind::Index,
        ListKind::Packs => FileKind::Pack,
        ListKind::Keys => FileKind::Key,
        ListKind::Locks => FileKind::Lock,
    };
    let mut ids = r.list(kind).await?;
    ids.sort();
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for id in ids {
        writeln!(out, "{id}")?;
    }
    Ok(())
}
