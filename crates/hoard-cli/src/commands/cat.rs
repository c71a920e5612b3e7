use anyhow::{anyhow, bail, Result};
use hoard_core::format::blob::decode_doc_payload;
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
            let sealed = r.read_file(FileKind::Index, &id).await?;
            let plain = r.key().open(&sealed, "index")?;
            serde_json::from_slice(&decode_doc_payload(&plain, "index")?)?
        }
        "snapshot" => serde_json::to_value(r.find_snapshot(need_id()?).await?)?,
        "key" => {
            let id = r.find_id(FileKind::Key, need_id()?).await?;
            serde_json::from_slice(&r.read_file(FileKind::Key, &id).await?)?
        }
        "pack" => {
            let id = r.find_id(FileKind::Pack, need_id()?).await?;
            let bytes = r.read_file(FileKind::Pack, &id).await?;
            let blobs =
                hoard_core::format::pack::read_pack(r.key(), &bytes, &FileKind::Pack.path(&id))?;
            serde_json::json!({ "id": id, "size": bytes.len(), "blobs": blobs })
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
