use std::io::Write;

use anyhow::Result;
use hoard_core::{Node, NodeType};

use crate::args::{GlobalArgs, LsArgs};
use crate::repo;

pub fn mode_string(n: &Node) -> String {
    let t = match n.node_type {
        NodeType::Dir => 'd',
        NodeType::Symlink => 'l',
        NodeType::Dev => 'b',
        NodeType::Chardev => 'c',
        NodeType::Fifo => 'p',
        NodeType::Socket => 's',
        NodeType::File => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub async fn run(g: &GlobalArgs, a: LsArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let snap = r.find_snapshot(&a.snapshot).await?;
    let below = a
        .path
        .as_deref()
        .map(|p| p.trim_end_matches('/').to_string());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if g.json {
        let mut head = serde_json::to_value(&snap)?;
        head["message_type"] = "snapshot".into();
        writeln!(out, "{head}")?;
    }
    let mut failed: Option<std::io::Error> = None;
    hoard_core::walk_tree(&r, snap.snapshot.tree, |path, node| {
        let shown = path.to_string_lossy();
        if let Some(b) = &below {
            if !(shown == b.as_str() || shown.starts_with(&format!("{b}/"))) {
                return Ok(());
            }
        }
        let res = if g.json {
            let v = serde_json::json!({
                "message_type": "node",
                "name": node.name.to_string(),
                "type": node.node_type,
                "path": shown,
                "uid": node.uid, "gid": node.gid, "user": node.user, "group": node.group,
                "size": node.size, "mode": node.mode,
                "mtime": chrono::DateTime::from_timestamp_nanos(node.mtime),
            });
            writeln!(out, "{v}")
        } else if a.long {
            let t =
                chrono::DateTime::from_timestamp_nanos(node.mtime).with_timezone(&chrono::Local);
            let link = node
                .link_target
                .as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default();
            writeln!(
                out,
                "{} {:>8} {:>8} {:>12} {} {}{}",
                mode_string(node),
                node.user,
                node.group,
                node.size,
                t.format("%Y-%m-%d %H:%M:%S"),
                shown,
                link
            )
        } else {
            writeln!(out, "{shown}")
        };
        if let Err(e) = res {
            failed.get_or_insert(e);
        }
        Ok(())
    })
    .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    Ok(())
}
