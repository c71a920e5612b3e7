//! Whether the storage refuses to replace a file on a conditional create (If-None-Match):
//! lock and config files are created that way only where it does. Asked once per repository
//! ([`Storage`](super::storage::Storage) keeps the answer for the process and in the cache).

use opendal::{ErrorKind, Operator};

use super::storage::FileKind;

/// Whether `write_with(..).if_not_exists(true)` really refuses to replace a file here. Backends
/// that do not claim the capability are not asked; those that do are tested, because some
/// (Garage) accept If-None-Match and overwrite anyway.
pub async fn conditional_create_works(op: &Operator) -> bool {
    probe_conditional_create(op).await.unwrap_or(false)
}

/// [`conditional_create_works`], or `None` when the probe could not tell (nothing could be
/// written): such an answer is not kept.
pub(crate) async fn probe_conditional_create(op: &Operator) -> Option<bool> {
    if !op.info().capability().write_with_if_not_exists {
        return Some(false);
    }
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        return None;
    }
    let path = format!("{}probe-{}", FileKind::Lock.dir(), hex::encode(nonce));
    let first = op
        .write_with(&path, b"1".to_vec())
        .if_not_exists(true)
        .await;
    if let Err(e) = &first {
        // Nothing could be written (read-only keys): this says nothing about the backend,
        // and the caller's own write will report the cause.
        tracing::debug!("conditional-write probe not written: {e}");
        return None;
    }
    let second = op
        .write_with(&path, b"2".to_vec())
        .if_not_exists(true)
        .await;
    let works = first.is_ok()
        && matches!(&second, Err(e) if e.kind() == ErrorKind::ConditionNotMatch)
        && op
            .read(&path)
            .await
            .is_ok_and(|b| b.to_vec() == b"1".to_vec());
    if let Err(e) = op.delete(&path).await {
        tracing::warn!("cannot remove probe file {path}: {e}");
    }
    if !works {
        tracing::warn!(
            "the storage does not honour conditional writes (If-None-Match); lock and config \
             files are written unconditionally"
        );
    }
    Some(works)
}
