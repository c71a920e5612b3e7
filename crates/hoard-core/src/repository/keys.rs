//! Key management: several passwords can open one repository, each through its own key file
//! holding the same master key. Removing the last key would lock everyone out for good, and
//! removing the key in use would leave this session on a key that no longer exists, so both
//! are refused.

use serde::Serialize;

use opendal::Operator;

use super::storage::{list_ids, read_all, FileKind, Storage};
use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::keyfile::{KdfParams, KeyFile};
use crate::id::Id;

/// A key file as listed.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEntry {
    /// The key file's id.
    pub id: Id,
    /// Whether this session opened the repository with it.
    pub current: bool,
    /// When it was made (unknown when the file is unusable).
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// Where it was made.
    pub hostname: String,
    /// By whom.
    pub username: String,
    /// Why the key file cannot be used (damaged, planted, out-of-bounds costs), if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unusable: Option<String>,
}

/// Every key file, oldest first; a damaged one is an error naming it.
pub async fn list_keys(repo: &Storage) -> Result<Vec<KeyEntry>> {
    let mut out = Vec::new();
    for id in repo.list(FileKind::Key).await? {
        let bytes = read_all(repo.operator(), &FileKind::Key.path(&id)).await?;
        let entry = match usable_key_file(&id, &bytes) {
            Ok(kf) => KeyEntry {
                id,
                current: id == repo.key_id(),
                created: Some(kf.created),
                hostname: kf.hostname,
                username: kf.username,
                unusable: None,
            },
            Err(why) => KeyEntry {
                id,
                current: false,
                created: None,
                hostname: String::new(),
                username: String::new(),
                unusable: Some(why),
            },
        };
        out.push(entry);
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Removes a key file; not the last one, and not the one this session opened with.
pub async fn remove_key(repo: &Storage, id: &Id) -> Result<()> {
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
pub async fn change_password(repo: &Storage, new_password: &[u8], kdf: KdfParams) -> Result<Id> {
    let new = add_key(repo, new_password, kdf).await?;
    repo.delete_file(FileKind::Key, &repo.key_id()).await?;
    Ok(new)
}

/// Adds a key file that opens this repository with another password.
pub async fn add_key(repo: &Storage, password: &[u8], kdf: KdfParams) -> Result<Id> {
    let kf = KeyFile::create(repo.key(), password, kdf)?;
    write_key_file(repo.operator(), &kf).await
}

pub(crate) async fn write_key_file(op: &Operator, kf: &KeyFile) -> Result<Id> {
    let bytes = serde_json::to_vec_pretty(kf).map_err(|e| Error::invalid_by("key file", e))?;
    let id = Id::of_file(&bytes);
    let path = FileKind::Key.path(&id);
    op.write(&path, bytes)
        .await
        .map_err(|e| Error::storage("write", path, e))?;
    Ok(id)
}

/// A key file that may be tried: it matches its name, parses, and asks for argon2 costs
/// within bounds. Otherwise, why not.
fn usable_key_file(id: &Id, bytes: &[u8]) -> std::result::Result<KeyFile, String> {
    if Id::of_file(bytes) != *id {
        return Err("its content does not match its name".to_string());
    }
    let kf =
        serde_json::from_slice::<KeyFile>(bytes).map_err(|e| format!("not a key file: {e}"))?;
    kf.params.check_bounds()?;
    Ok(kf)
}

/// Tries every key file with the password. A key file that is damaged, does not match its
/// name, or asks for out-of-bounds argon2 costs is skipped with a warning naming it, and the
/// others are still tried. When the password opens none: if some key file could really be
/// tried, the password is wrong; if every one was unusable, that is what is reported.
pub(crate) async fn find_key(op: &Operator, password: &[u8]) -> Result<(MasterKey, Id)> {
    let ids = list_ids(op, FileKind::Key).await?;
    let mut tried = false;
    let mut unusable = Vec::new();
    for id in ids {
        let path = FileKind::Key.path(&id);
        let bytes = read_all(op, &path).await?;
        let kf = match usable_key_file(&id, &bytes) {
            Ok(kf) => kf,
            Err(why) => {
                tracing::warn!("skipping key file {path}: {why}");
                unusable.push(format!("{path} ({why})"));
                continue;
            }
        };
        let pw = zeroize::Zeroizing::new(password.to_vec());
        match tokio::task::spawn_blocking(move || kf.open(&pw)).await? {
            Ok(Some(key)) => return Ok((key, id)),
            Ok(None) => tried = true,
            Err(e) => {
                tracing::warn!("skipping key file {path}: {e}");
                unusable.push(format!("{path} ({e})"));
            }
        }
    }
    if tried || unusable.is_empty() {
        return Err(Error::WrongPassword);
    }
    Err(Error::corrupt(
        "key files",
        format!("none can be used: {}", unusable.join("; ")),
    ))
}
