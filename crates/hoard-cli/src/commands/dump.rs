use anyhow::Result;

use crate::args::{DumpArgs, GlobalArgs};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: DumpArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let snap = r.find_snapshot(&a.snapshot).await?;
    let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    let tree = snap.snapshot.tree;
    hoard_core::dump::dump_as(&r, tree, &a.path, a.archive.into(), out).await?;
    Ok(())
}
