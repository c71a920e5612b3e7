use std::time::Duration;

use anyhow::{Context, Result};
use hoard_core::LockNeed;
use hoard_mount::HoardFs;

use crate::args::{GlobalArgs, MountArgs};
use crate::repo;

/// Mounts, then waits for Ctrl-C, SIGTERM or an outside `umount`; unmounts on the way out.
/// Holds a shared lock meanwhile, so that no prune deletes what the mount shows.
pub async fn run(g: &GlobalArgs, a: MountArgs) -> Result<()> {
    let r = repo::open(g).await?;
    let snapshots = repo::select_snapshots(&r, &[], &a.filter).await?;
    let repo = r.clone();
    r.locked(LockNeed::Read, |_| async move {
        Ok(serve(g, &a, repo, &snapshots).await)
    })
    .await?
}

async fn serve(
    g: &GlobalArgs,
    a: &MountArgs,
    repo: hoard_core::Repository,
    snapshots: &[hoard_core::SnapshotEntry],
) -> Result<()> {
    let fs = HoardFs::new(repo, snapshots, tokio::runtime::Handle::current());
    let session = hoard_mount::mount(fs, &a.mountpoint, a.allow_other)
        .with_context(|| format!("cannot mount on {}", a.mountpoint.display()))?;
    if !g.quiet {
        eprintln!(
            "{} snapshots mounted at {}; stop with Ctrl-C, SIGTERM or `umount {}`",
            snapshots.len(),
            a.mountpoint.display(),
            a.mountpoint.display()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if session.guard.is_finished() {
                    // Unmounted from outside.
                    return Ok(());
                }
            }
        }
    }
    tokio::task::spawn_blocking(move || session.umount_and_join())
        .await?
        .with_context(|| format!("cannot unmount {}", a.mountpoint.display()))
}
