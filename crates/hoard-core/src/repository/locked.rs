//! The one way an operation takes its lock. Each operation says what it needs
//! ([`LockNeed`]); the handle's [`LockOptions`] (chosen once, when the repository is opened)
//! say how long to wait and whether read-only work may skip locking. After the lock is taken,
//! the index is re-read if a prune replaced index files since it was loaded.

use super::lock::{lock, LockOptions, LockState};
use super::Repository;
use crate::error::Result;

/// What an operation needs from the repository lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockNeed {
    /// Reads data a prune could delete (restore, dump): a shared lock, skipped with
    /// [`LockOptions::no_lock`].
    Read,
    /// Reads everything and wants nothing to change meanwhile (check): an exclusive lock,
    /// skipped with [`LockOptions::no_lock`].
    ReadAll,
    /// Adds or removes snapshots (backup, forget): a shared lock, always taken.
    Append,
    /// Deletes data (prune, repairs): an exclusive lock, always taken.
    Exclusive,
}

impl LockNeed {
    fn exclusive(self) -> bool {
        matches!(self, LockNeed::ReadAll | LockNeed::Exclusive)
    }

    fn read_only(self) -> bool {
        matches!(self, LockNeed::Read | LockNeed::ReadAll)
    }
}

/// What the work gets: the held lock, or nothing when read-only work runs unlocked.
#[derive(Clone)]
pub struct Lease(Option<LockState>);

impl Lease {
    /// Fails when the lock was lost while working (see [`LockState::ensure_valid`]); always
    /// succeeds without a lock.
    pub async fn ensure_valid(&self) -> Result<()> {
        match &self.0 {
            Some(state) => state.ensure_valid().await,
            None => Ok(()),
        }
    }
}

impl Repository {
    /// Runs `work` under the lock `need` calls for and releases the lock afterwards, whatever
    /// `work` returned.
    pub async fn locked<T, F, Fut>(&self, need: LockNeed, work: F) -> Result<T>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let opts: LockOptions = *self.lock_options();
        if opts.no_lock && need.read_only() {
            return work(Lease(None)).await;
        }
        let guard = lock(self, need.exclusive(), opts.wait, opts.timing).await?;
        let result = match self.reload_index_if_changed().await {
            Ok(()) => work(Lease(Some((*guard).clone()))).await,
            Err(e) => Err(e),
        };
        if let Err(e) = guard.release().await {
            tracing::warn!("cannot remove lock file: {e}");
        }
        result
    }
}
