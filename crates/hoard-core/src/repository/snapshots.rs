//! Finding snapshots: all of them, `latest`, or by unique id prefix.

use futures::StreamExt;

use super::cache::Cached;
use super::storage::FileKind;
use super::Repository;
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SnapshotEntry};
use crate::id::Id;

impl Repository {
    /// All snapshots that can be read, oldest first. A snapshot file that is damaged, or was
    /// planted by someone without the key, is left out with a warning naming it (`check`
    /// reports it, `forget ID` removes it); a storage failure is still an error.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let (mut out, damaged) = self.snapshots_and_damaged().await?;
        for (id, e) in damaged {
            tracing::warn!("skipping snapshot {}: {e}", id.short());
        }
        out.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Every snapshot, or an error when one cannot be read: for prune, which must not treat
    /// the data of a snapshot it cannot read as garbage.
    pub(crate) async fn all_snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let (out, damaged) = self.snapshots_and_damaged().await?;
        match damaged.into_iter().next() {
            None => Ok(out),
            Some((id, e)) => Err(Error::corrupt(
                FileKind::Snapshot.path(&id),
                format!(
                    "{e}; nothing was pruned (remove it with `hoard forget {}`)",
                    id.short()
                ),
            )),
        }
    }

    /// The snapshots that decode, and those that do not with why.
    async fn snapshots_and_damaged(&self) -> Result<(Vec<SnapshotEntry>, Vec<(Id, Error)>)> {
        let ids = self.list(FileKind::Snapshot).await?;
        if let Some(c) = self.cache() {
            // Snapshots another machine forgot leave this cache too.
            c.retain(Cached::Snapshot, &ids.iter().copied().collect());
        }
        let loaded: Vec<(Id, Result<Snapshot>)> = futures::stream::iter(ids)
            .map(|id| async move { (id, self.load_doc::<Snapshot>(FileKind::Snapshot, &id).await) })
            .buffer_unordered(8)
            .collect()
            .await;
        let (mut ok, mut damaged) = (Vec::new(), Vec::new());
        for (id, r) in loaded {
            match r {
                Ok(snapshot) => ok.push(SnapshotEntry { id, snapshot }),
                Err(e @ (Error::Corrupt { .. } | Error::Authentication(_))) => {
                    damaged.push((id, e))
                }
                // Gone between listing and reading (a concurrent forget): not there.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok((ok, damaged))
    }

    /// The id of the snapshot `spec` names (`latest`, an id or a unique prefix) without
    /// reading it, so that a damaged snapshot can still be named and removed.
    pub async fn find_snapshot_id(&self, spec: &str) -> Result<Id> {
        if spec == "latest" {
            return Ok(self.find_snapshot(spec).await?.id);
        }
        self.find_id(FileKind::Snapshot, spec).await
    }

    /// Finds a snapshot by `latest`, a full id or a unique id prefix.
    pub async fn find_snapshot(&self, spec: &str) -> Result<SnapshotEntry> {
        if spec == "latest" {
            return self
                .snapshots()
                .await?
                .pop()
                .ok_or_else(|| Error::SnapshotNotFound(spec.to_string()));
        }
        let id = self.find_id(FileKind::Snapshot, spec).await?;
        Ok(SnapshotEntry {
            id,
            snapshot: self.load_doc(FileKind::Snapshot, &id).await?,
        })
    }

    /// Resolves a full id or unique prefix among the files of one kind.
    pub async fn find_id(&self, kind: FileKind, prefix: &str) -> Result<Id> {
        let p = prefix.to_ascii_lowercase();
        let ids: Vec<Id> = self
            .list(kind)
            .await?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&p))
            .collect();
        let what = kind.dir().trim_end_matches('/');
        match (ids.as_slice(), kind) {
            ([id], _) => Ok(*id),
            ([], FileKind::Snapshot) => Err(Error::SnapshotNotFound(prefix.to_string())),
            ([], _) => Err(Error::invalid(
                "id",
                format!("no {what} file matches {prefix:?}"),
            )),
            (_, FileKind::Snapshot) => Err(Error::AmbiguousSnapshot(prefix.to_string())),
            (_, _) => Err(Error::invalid(
                "id",
                format!("{prefix:?} matches several {what} files; give more digits"),
            )),
        }
    }
}
