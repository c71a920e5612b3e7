//! Finding snapshots: all of them, `latest`, or by unique id prefix.

use futures::{StreamExt, TryStreamExt};

use super::storage::FileKind;
use super::Repository;
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SnapshotEntry};
use crate::id::Id;

impl Repository {
    /// All snapshots, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let ids = self.list(FileKind::Snapshot).await?;
        let mut out: Vec<SnapshotEntry> = futures::stream::iter(ids)
            .map(|id| async move {
                let snapshot = self.load_doc::<Snapshot>(FileKind::Snapshot, &id).await?;
                Ok::<_, Error>(SnapshotEntry { id, snapshot })
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok(out)
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
