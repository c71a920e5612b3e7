//! Key management: several passwords can open one repository, each through its own key file
//! holding the same master key. Removing the last key would lock everyone out for good, and
//! removing the key in use would leave this session on a key that no longer exists, so both
//! are refused.

use serde::Serialize;

use crate::crypto::{KdfParams, KeyFile};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::{FileKind, Repository};

/// A key file as listed.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEntry {
    pub id: Id,
    /// Whether this session opened the repository with it.
    pub current: bool,
    pub created: chrono::DateTime<chrono::Utc>,
    pub hostname: String,
    pub username: String,
}

pub async fn list_keys(repo: &Repository) -> Result<Vec<KeyEntry>> {
    let mut out = Vec::new();
    for id in repo.list(FileKind::Key).await? {
        let bytes = repo.read_file(FileKind::Key, &id).await?;
        let kf: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(FileKind::Key.path(&id), e))?;
        out.push(KeyEntry {
            id,
            current: id == repo.key_id(),
            created: kf.created,
            hostname: kf.hostname,
            username: kf.username,
        });
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Ok(out)
}

pub async fn remove_key(repo: &Repository, id: &Id) -> Result<()> {
    if *id == repo.key_id() {
        return Err(Error::invalid(
            "key",
            format!(
                "{} is the key this command was opened with; open with another password to remove it (or use `key passwd`)",
                id.short()
            ),
        ));
    }
    let keys = repo.list(FileKind::Key).await?;
    if !keys.contains(id) {
        return Err(Error::invalid("key id", format!("no key {}", id.short())));
    }
    if keys.len() < 2 {
        return Err(Error::invalid("key", "the last key cannot be removed"));
    }
    repo.delete_file(FileKind::Key, id).await
}

/// Replaces the current key by one for `new_password`; returns the new key's id. The new key
/// is written before the old one is removed, so a crash leaves both, never neither.
pub async fn change_password(repo: &Repository, new_password: &[u8], kdf: KdfParams) -> Result<Id> {
    let new = repo.add_key(new_password, kdf).await?;
    repo.delete_file(FileKind::Key, &repo.key_id()).await?;
    Ok(new)
}
