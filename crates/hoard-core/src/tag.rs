//! Changing the tags of snapshots. A snapshot file is named by its hash, so a changed one is a
//! new file: it is written first, naming the snapshot it replaces in `original` (the first
//! one, when it was already a replacement, as restic does), and only then is the old file
//! removed. A crash between the two leaves both, never neither.

use crate::error::Result;
use crate::format::snapshot::SnapshotEntry;
use crate::id::Id;
use crate::repository::{FileKind, LockNeed, Repository};

/// How the tags change; `set` replaces them all (an empty `set` removes every tag), else
/// `remove` is applied, then `add`.
#[derive(Debug, Clone, Default)]
pub struct TagChange {
    /// Tags to add (once each).
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// The whole new set of tags.
    pub set: Option<Vec<String>>,
}

impl TagChange {
    /// The tags a snapshot tagged `old` gets.
    pub fn apply(&self, old: &[String]) -> Vec<String> {
        let mut tags: Vec<String> = match &self.set {
            Some(set) => set.clone(),
            None => old
                .iter()
                .filter(|t| !self.remove.contains(t))
                .cloned()
                .chain(self.add.iter().cloned())
                .collect(),
        };
        let mut seen = std::collections::HashSet::new();
        tags.retain(|t| !t.is_empty() && seen.insert(t.clone()));
        tags
    }
}

/// Applies `change` to each snapshot; returns (old id, new id) for those whose tags changed.
pub async fn tag(
    repo: &Repository,
    snapshots: &[SnapshotEntry],
    change: &TagChange,
) -> Result<Vec<(Id, Id)>> {
    repo.locked(LockNeed::Append, |lease| async move {
        let mut changed = Vec::new();
        for s in snapshots {
            let tags = change.apply(&s.snapshot.tags);
            if tags == s.snapshot.tags {
                continue;
            }
            let mut snapshot = s.snapshot.clone();
            snapshot.tags = tags;
            snapshot.original = Some(s.snapshot.original.unwrap_or(s.id));
            lease.ensure_valid().await?;
            let new = repo.save_doc(FileKind::Snapshot, &snapshot).await?;
            repo.delete_file(FileKind::Snapshot, &s.id).await?;
            tracing::info!(old = %s.id.short(), new = %new.short(), "tags changed");
            changed.push((s.id, new));
        }
        Ok(changed)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::TagChange;

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_replaces_remove_then_add_edits_and_duplicates_collapse() {
        let old = tags(&["daily", "db", "repaired"]);
        let set = TagChange {
            set: Some(tags(&["a", "a", ""])),
            ..Default::default()
        };
        assert_eq!(set.apply(&old), tags(&["a"]));
        let clear = TagChange {
            set: Some(Vec::new()),
            ..Default::default()
        };
        assert!(clear.apply(&old).is_empty());
        let edit = TagChange {
            add: tags(&["weekly", "db"]),
            remove: tags(&["daily"]),
            set: None,
        };
        assert_eq!(edit.apply(&old), tags(&["db", "repaired", "weekly"]));
    }
}
