use anyhow::Result;
use hoard_core::dump::Archive;
use hoard_core::{ListedShare, ShareOptions};

use crate::args::{GlobalArgs, ShareArgs};
use crate::output::{json_line, size};
use crate::repo;

pub async fn run(g: &GlobalArgs, a: ShareArgs) -> Result<()> {
    let r = repo::open(g).await?;
    if a.list {
        let all = hoard_core::list_shares(&r).await?;
        return print_list(g, &all);
    }
    if let Some(id) = &a.revoke {
        let gone = hoard_core::revoke_share(&r, id).await?;
        return print_removed(g, "revoked", &[gone]);
    }
    if a.expire {
        let gone = hoard_core::expire_shares(&r, hoard_core::chrono::Utc::now()).await?;
        return print_removed(g, "expired", &gone);
    }
    // clap requires both unless an action was given.
    let (Some(snapshot), Some(path)) = (a.snapshot, a.path) else {
        anyhow::bail!("give SNAPSHOT and PATH, or one of --list, --revoke ID, --expire");
    };
    let snap = r.find_snapshot(&snapshot).await?;
    let opts = ShareOptions {
        expires: a.expires,
        name: a.name,
        archive: if a.zip { Archive::Zip } else { Archive::Tar },
    };
    let shared = hoard_core::share(&r, snap.id, snap.snapshot.tree, &path, &opts).await?;
    let i = &shared.info;
    if g.json {
        return json_line(&serde_json::json!({
            "message_type": "share",
            "id": i.id,
            "name": i.name,
            "snapshot_id": i.snapshot,
            "path": i.path,
            "size": shared.size,
            "created": i.created,
            "expires": i.expires,
            "url": shared.url,
        }));
    }
    if !g.quiet {
        // Details on stderr, so `url=$(hoard share …)` gets the link alone.
        eprintln!(
            "shared {} of snapshot {} as {} ({}), id {}, until {}",
            i.path,
            i.snapshot.short(),
            i.name,
            size(shared.size),
            i.id,
            i.expires
                .to_rfc3339_opts(hoard_core::chrono::SecondsFormat::Secs, true)
        );
    }
    println!("{}", shared.url);
    Ok(())
}

fn print_list(g: &GlobalArgs, all: &[ListedShare]) -> Result<()> {
    let now = hoard_core::chrono::Utc::now();
    if g.json {
        let v: Vec<_> = all.iter().map(|s| share_json(s, now)).collect();
        return json_line(&serde_json::Value::Array(v));
    }
    if g.quiet {
        return Ok(());
    }
    println!(
        "{:<16}  {:<20}  {:>12}  {:<8}  NAME  (SNAPSHOT:PATH)",
        "ID", "EXPIRES", "SIZE", "STATE"
    );
    for s in all {
        let size = s.size.map(size).unwrap_or_else(|| "-".into());
        match &s.info {
            Some(i) => println!(
                "{:<16}  {:<20}  {:>12}  {:<8}  {}  ({}:{})",
                s.id,
                i.expires
                    .to_rfc3339_opts(hoard_core::chrono::SecondsFormat::Secs, true),
                size,
                state(s, now),
                i.name,
                i.snapshot.short(),
                i.path
            ),
            None => println!(
                "{:<16}  {:<20}  {:>12}  {:<8}  ({})",
                s.id,
                "?",
                size,
                state(s, now),
                s.problem.as_deref().unwrap_or("")
            ),
        }
    }
    println!("{} shares", all.len());
    Ok(())
}

fn state(
    s: &ListedShare,
    now: hoard_core::chrono::DateTime<hoard_core::chrono::Utc>,
) -> &'static str {
    match (&s.info, s.size) {
        (None, _) => "damaged",
        (Some(i), _) if i.expires <= now => "expired",
        (Some(_), None) => "partial",
        (Some(_), Some(_)) => "active",
    }
}

fn share_json(
    s: &ListedShare,
    now: hoard_core::chrono::DateTime<hoard_core::chrono::Utc>,
) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "state": state(s, now),
        "size": s.size,
        "name": s.info.as_ref().map(|i| &i.name),
        "snapshot_id": s.info.as_ref().map(|i| i.snapshot),
        "path": s.info.as_ref().map(|i| &i.path),
        "created": s.info.as_ref().map(|i| i.created),
        "expires": s.info.as_ref().map(|i| i.expires),
        "problem": s.problem,
    })
}

fn print_removed(g: &GlobalArgs, what: &str, gone: &[ListedShare]) -> Result<()> {
    let now = hoard_core::chrono::Utc::now();
    if g.json {
        return json_line(&serde_json::json!({
            "message_type": what,
            "shares": gone.iter().map(|s| share_json(s, now)).collect::<Vec<_>>(),
        }));
    }
    if !g.quiet {
        for s in gone {
            let name = s.info.as_ref().map(|i| i.name.as_str()).unwrap_or("?");
            println!("{what} share {} ({name})", s.id);
        }
        println!("{what} {} shares", gone.len());
    }
    Ok(())
}
