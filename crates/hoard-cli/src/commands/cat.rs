use anyhow::{anyhow, bail, Result};
use hoard_core::FileKind;

use crate::args::{CatArgs, GlobalArgs};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: CatArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let need_id = || {
        a.id.as_deref()
            .ok_or_else(|| anyhow!("`cat {}` needs an id", a.kind))
    };
    let value: serde_json::Value = match a.kind.as_str() {
        "config" => serde_json::to_value(r.config())?,
        "index" => {
            let id = r.find_id(FileKind::Index, need_id()?).await?;
            r.load_doc::<serde_json::Value>(FileKind::Index, &id)
                .await?
        }
        "snapshot" => serde_json::to_value(r.find_snapshot(need_id()?).await?)?,
        "key" => {
            let id = r.find_id(FileKind::Key, need_id()?).await?;
            serde_json::from_slice(&r.read_file(FileKind::Key, &id).await?)?
        }
        "pack" => {
            let id = r.find_id(FileKind::Pack, need_id()?).await?;
            let (size, blobs) = r.pack_blobs(&id).await?;
            serde_json::json!({ "id": id, "size": size, "blobs": blobs })
        }
        other => bail!("cannot cat {other:?}: use config, index, snapshot, key or pack"),
    };
    if g.json {
        println!("{value}");
    } else {
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}
