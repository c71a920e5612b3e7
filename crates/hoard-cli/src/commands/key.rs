use anyhow::{Context, Result};
use hoard_core::repository::keys;

use crate::args::{GlobalArgs, KeyArgs, KeyCommand, NewKeyArgs};
use crate::output::json_line;
use crate::repo;

fn new_password(a: &NewKeyArgs) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let text = std::fs::read_to_string(&a.new_password_file).with_context(|| {
        format!(
            "cannot read the new password file {}",
            a.new_password_file.display()
        )
    })?;
    let pw = text.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        anyhow::bail!(
            "the new password file {} is empty",
            a.new_password_file.display()
        );
    }
    Ok(zeroize::Zeroizing::new(pw.as_bytes().to_vec()))
}

pub async fn run(g: &GlobalArgs, a: KeyArgs) -> Result<()> {
    let r = repo::open(g).await?;
    match a.command {
        KeyCommand::List => {
            let list = keys::list_keys(&r).await?;
            if g.json {
                println!("{}", serde_json::to_string(&list)?);
                return Ok(());
            }
            println!(" {:<8}  {:<12}  {:<20}  Created", "ID", "User", "Host");
            println!("{}", "-".repeat(64));
            for k in &list {
                if let Some(why) = &k.unusable {
                    println!(" {:<8}  unusable: {why}", k.id.short());
                    continue;
                }
                println!(
                    "{}{:<8}  {:<12}  {:<20}  {}",
                    if k.current { "*" } else { " " },
                    k.id.short(),
                    k.username,
                    k.hostname,
                    k.created
                        .map(|c| c
                            .with_timezone(&chrono::Local)
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string())
                        .unwrap_or_default()
                );
            }
        }
        KeyCommand::Add(k) => {
            let pw = new_password(&k)?;
            let id = r.add_key(&pw, k.kdf.params()).await?;
            report(g, "key_added", &id)?;
        }
        KeyCommand::Remove { id } => {
            let id = r.find_id(hoard_core::FileKind::Key, &id).await?;
            keys::remove_key(&r, &id).await?;
            report(g, "key_removed", &id)?;
        }
        KeyCommand::Passwd(k) => {
            let pw = new_password(&k)?;
            let id = keys::change_password(&r, &pw, k.kdf.params()).await?;
            report(g, "password_changed", &id)?;
        }
    }
    Ok(())
}

fn report(g: &GlobalArgs, what: &str, id: &hoard_core::Id) -> Result<()> {
    if g.json {
        json_line(&serde_json::json!({"message_type": what, "id": id}))
    } else {
        if !g.quiet {
            println!("{}: {}", what.replace('_', " "), id.short());
        }
        Ok(())
    }
}
