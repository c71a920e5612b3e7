//! Repository locks (`locks/<id>`, FORMAT.md "Locks"): who is working on the repository right
//! now.
//!
//! Backup, forget, restore and dump hold shared locks, so many pods can work at once; prune
//! and check hold an exclusive one, so nothing deletes data that a running backup is about to
//! reference or a restore is reading. Which operation takes which is decided in one place,
//! `locked.rs` ([`crate::repository::LockNeed`]).
//!
//! Taking a lock:
//! 1. read every lock file; remove the stale ones (not refreshed for [`LockTiming::stale_after`],
//!    or made on this host, in this pid namespace, by a process that is gone), so a crashed
//!    pod never blocks the next run;
//! 2. if a live lock conflicts, fail with [`Error::Locked`] naming its holder (or retry until
//!    `wait` runs out);
//! 3. write our lock file (a conditional create where the backend honours it), then list
//!    again: two lockers that raced past step 2 both see each other here, and both back off.
//!
//! While held, a background task writes a fresh lock file every [`LockTiming::refresh`] and
//! deletes the previous one. Before a backup writes its snapshot it calls
//! [`LockState::ensure_valid`]: if the lock was lost (refresh failing long enough for others to
//! call it stale, or the file removed by `unlock`), data it relies on may have been pruned, so
//! it must not commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::storage::{FileKind, Storage};
use crate::error::{Error, Result};
use crate::id::Id;

/// The document in a lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    /// When the lock was written (refreshing writes a new file with a new time).
    pub time: DateTime<Utc>,
    /// Whether it excludes every other lock.
    pub exclusive: bool,
    /// The holder's host.
    pub hostname: String,
    /// The holder's user.
    pub username: String,
    /// The holder's process id.
    pub pid: u32,
    /// `/proc/self/ns/pid` of the holder: two containers of one pod share a hostname but not
    /// their process ids, so a pid is only checked when the namespaces match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// When the holder first took the lock (kept across refreshes).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
}

/// How often locks are refreshed and when they count as abandoned.
#[derive(Debug, Clone, Copy)]
pub struct LockTiming {
    /// How often a holder writes a fresh lock file.
    pub refresh: Duration,
    /// How old a lock file may get before others ignore and remove it.
    pub stale_after: Duration,
}

impl Default for LockTiming {
    fn default() -> Self {
        LockTiming {
            refresh: Duration::from_secs(5 * 60),
            stale_after: Duration::from_secs(30 * 60),
        }
    }
}

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else.
        Err(_) => true,
    }
}

impl LockInfo {
    /// A lock held by this process, now.
    pub fn new(exclusive: bool) -> Self {
        let now = Utc::now();
        LockInfo {
            time: now,
            exclusive,
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            pid: std::process::id(),
            pid_namespace: pid_namespace(),
            since: Some(now),
        }
    }

    /// Why this lock no longer counts, if it does not.
    pub fn stale_reason(&self, now: DateTime<Utc>, timing: &LockTiming) -> Option<String> {
        let age = (now - self.time).to_std().unwrap_or_default();
        if age > timing.stale_after {
            return Some(format!("not refreshed for {}", human_duration(age)));
        }
        // Ahead by more than any refresh could explain: a clock that far off, or a planted
        // file that would otherwise block everyone until its date.
        let ahead = (self.time - now).to_std().unwrap_or_default();
        if ahead > timing.stale_after {
            return Some(format!("dated {} in the future", human_duration(ahead)));
        }
        if self.hostname == crate::host::hostname()
            && self.pid_namespace.is_some()
            && self.pid_namespace == pid_namespace()
            && !process_exists(self.pid)
        {
            return Some(format!("process {} on this host is gone", self.pid));
        }
        None
    }

    /// "exclusive lock held by pid 12 (user@host) since …, refreshed 3 min ago"
    pub fn describe(&self, id: &Id, now: DateTime<Utc>) -> String {
        let age = (now - self.time).to_std().unwrap_or_default();
        format!(
            "{} lock {} held by pid {} ({}@{}) since {}, refreshed {} ago",
            if self.exclusive { "an exclusive" } else { "a" },
            id.short(),
            self.pid,
            self.username,
            self.hostname,
            self.since
                .unwrap_or(self.time)
                .format("%Y-%m-%d %H:%M:%S UTC"),
            human_duration(age),
        )
    }
}

pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s < 2 * 3600 {
        format!("{} min", s / 60)
    } else {
        format!("{} h", s / 3600)
    }
}

/// A lock file as found in the repository.
#[derive(Debug, Clone)]
pub struct FoundLock {
    /// The lock file's id.
    pub id: Id,
    /// `None` when the file could not be read or opened.
    pub info: Option<LockInfo>,
}

/// Reads every lock file. A file that disappears while listing (a refresh, an unlock) is left
/// out; one that cannot be opened is returned without info.
pub async fn list_locks(repo: &Storage) -> Result<Vec<FoundLock>> {
    list_locks_but(repo, None).await
}

/// [`list_locks`] without reading `ours` (a locker knows its own lock).
async fn list_locks_but(repo: &Storage, ours: Option<&Id>) -> Result<Vec<FoundLock>> {
    let mut out = Vec::new();
    for id in repo.list(FileKind::Lock).await? {
        if Some(&id) == ours {
            continue;
        }
        match repo.load_doc::<LockInfo>(FileKind::Lock, &id).await {
            Ok(info) => out.push(FoundLock {
                id,
                info: Some(info),
            }),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::debug!("unreadable lock file {}: {e}", id.short());
                out.push(FoundLock { id, info: None });
            }
        }
    }
    Ok(out)
}

/// Why a found lock no longer counts, if it does not. A lock file that cannot be read counts
/// for nothing: lock files appear whole (atomic renames, S3 objects), so it is damaged or was
/// planted by someone without the key, and must not block anyone (it is removed like a stale
/// one).
fn stale_reason(l: &FoundLock, now: DateTime<Utc>, timing: &LockTiming) -> Option<String> {
    match &l.info {
        Some(info) => info.stale_reason(now, timing),
        None => Some("unreadable: damaged, or not written with this repository's key".into()),
    }
}

/// Removes lock files: all of them with `all`, else only stale ones. Returns how many were
/// removed.
pub async fn remove_locks(repo: &Storage, all: bool, timing: &LockTiming) -> Result<usize> {
    let now = Utc::now();
    let mut removed = 0;
    for l in list_locks(repo).await? {
        if all || stale_reason(&l, now, timing).is_some() {
            repo.delete_file(FileKind::Lock, &l.id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Finds a live lock that conflicts with taking one of kind `exclusive`, removing stale locks
/// on the way. `ours` is skipped.
async fn conflict(
    repo: &Storage,
    exclusive: bool,
    ours: Option<&Id>,
    timing: &LockTiming,
) -> Result<Option<String>> {
    let now = Utc::now();
    for l in list_locks_but(repo, ours).await? {
        if let Some(reason) = stale_reason(&l, now, timing) {
            // A lock left by a crash is routine; an unreadable or future-dated one was
            // damaged or planted, which its owner should hear about.
            match &l.info {
                Some(info) if info.time <= now => {
                    tracing::info!("removing stale lock {} ({reason})", l.id.short())
                }
                _ => tracing::warn!("removing lock file {} ({reason})", l.id.short()),
            }
            repo.delete_file(FileKind::Lock, &l.id).await?;
            continue;
        }
        match &l.info {
            Some(info) if exclusive || info.exclusive => {
                return Ok(Some(info.describe(&l.id, now)))
            }
            _ => {}
        }
    }
    Ok(None)
}

struct Held {
    id: Id,
    info: LockInfo,
    last_refresh: Instant,
    /// Set when a refresh found our lock file gone (someone ran `unlock`).
    lost: bool,
}

/// What a holder can ask about its lock while it works; cheap to clone.
#[derive(Clone)]
pub struct LockState {
    repo: Storage,
    held: Arc<Mutex<Held>>,
    timing: LockTiming,
}

/// A held lock. Call [`LockGuard::release`] when done; dropping it stops the refresher but
/// leaves the file, which then goes stale (at once for the next process on this host).
pub struct LockGuard {
    state: LockState,
    refresher: tokio::task::JoinHandle<()>,
    /// Asks the refresher to stop between refreshes (see [`LockGuard::release`]).
    stop: Arc<tokio::sync::Notify>,
}

impl std::ops::Deref for LockGuard {
    type Target = LockState;

    fn deref(&self) -> &LockState {
        &self.state
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// How the operations on one repository handle take their locks: chosen once, when the
/// repository is opened (the CLI's `--retry-lock` and `--no-lock`), and used by every
/// operation through [`crate::Repository::with_lock_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    /// How long to keep retrying while another process holds a conflicting lock.
    pub wait: Duration,
    /// Refresh period and staleness limit.
    pub timing: LockTiming,
    /// Run read-only operations (restore, dump, check) without a lock, for credentials that
    /// cannot write lock files. Operations that write (backup, forget, prune) always lock.
    pub no_lock: bool,
}

/// Takes a lock. With a non-zero `wait`, a conflicting lock is retried (with growing pauses)
/// until `wait` has passed.
pub async fn lock(
    repo: &Storage,
    exclusive: bool,
    wait: Duration,
    timing: LockTiming,
) -> Result<LockGuard> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(200);
    loop {
        match try_lock(repo, exclusive, timing).await? {
            Ok(guard) => return Ok(guard),
            Err(holder) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Locked { holder });
                }
                tracing::info!("repository is locked ({holder}); retrying");
                // Jitter keeps two waiting lockers from colliding in step forever.
                let jitter = Duration::from_millis(u64::from(rand_byte()) * 2);
                tokio::time::sleep((pause + jitter).min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    b[0]
}

async fn try_lock(
    repo: &Storage,
    exclusive: bool,
    timing: LockTiming,
) -> Result<std::result::Result<LockGuard, String>> {
    if let Some(holder) = conflict(repo, exclusive, None, &timing).await? {
        return Ok(Err(holder));
    }
    let info = LockInfo::new(exclusive);
    let id = write_lock(repo, &info).await?;
    if let Some(holder) = conflict(repo, exclusive, Some(&id), &timing).await? {
        repo.delete_file(FileKind::Lock, &id).await?;
        return Ok(Err(holder));
    }
    tracing::debug!(lock = %id.short(), exclusive, "lock taken");
    let held = Arc::new(Mutex::new(Held {
        id,
        info,
        last_refresh: Instant::now(),
        lost: false,
    }));
    let stop = Arc::new(tokio::sync::Notify::new());
    let refresher = tokio::spawn(refresh_loop(
        repo.clone(),
        held.clone(),
        timing,
        stop.clone(),
    ));
    Ok(Ok(LockGuard {
        state: LockState {
            repo: repo.clone(),
            held,
            timing,
        },
        refresher,
        stop,
    }))
}

/// How long [`LockGuard::release`] waits for a refresh under way.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn write_lock(repo: &Storage, info: &LockInfo) -> Result<Id> {
    repo.create_doc(FileKind::Lock, info).await
}

async fn refresh_loop(
    repo: Storage,
    held: Arc<Mutex<Held>>,
    timing: LockTiming,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timing.refresh) => {}
            _ = stop.notified() => return,
        }
        let (old, mut info) = {
            let h = held.lock().unwrap_or_else(|e| e.into_inner());
            (h.id, h.info.clone())
        };
        let path = FileKind::Lock.path(&old);
        if let Err(e) = repo.operator().stat(&path).await {
            if e.kind() == opendal::ErrorKind::NotFound {
                tracing::error!("lock {} was removed by someone else", old.short());
                held.lock().unwrap_or_else(|e| e.into_inner()).lost = true;
                return;
            }
        }
        info.time = Utc::now();
        match write_lock(&repo, &info).await {
            Ok(new) => {
                {
                    let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
                    h.id = new;
                    h.info = info;
                    h.last_refresh = Instant::now();
                }
                if let Err(e) = repo.delete_file(FileKind::Lock, &old).await {
                    tracing::warn!("cannot remove old lock file {}: {e}", old.short());
                }
                tracing::debug!(lock = %new.short(), "lock refreshed");
            }
            Err(e) => tracing::warn!("cannot refresh lock {}: {e}", old.short()),
        }
    }
}

impl LockState {
    /// The id of the current lock file (it changes with every refresh).
    pub fn id(&self) -> Id {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).id
    }

    /// Fails when others may have treated this lock as stale: it was removed, or it has not
    /// been refreshed for longer than the stale limit (minus one refresh period of margin).
    pub async fn ensure_valid(&self) -> Result<()> {
        let (id, age, lost) = {
            let h = self.held.lock().unwrap_or_else(|e| e.into_inner());
            (h.id, h.last_refresh.elapsed(), h.lost)
        };
        let limit = self.timing.stale_after.saturating_sub(self.timing.refresh);
        let present = self.repo.exists(FileKind::Lock, &id).await?;
        if lost || !present || age > limit {
            return Err(Error::LockLost(format!(
                "lock {} was {} (last refreshed {} ago)",
                id.short(),
                if lost || !present {
                    "removed by someone else"
                } else {
                    "not refreshed in time"
                },
                human_duration(age)
            )));
        }
        Ok(())
    }
}

impl LockGuard {
    /// Stops refreshing and removes the lock file.
    pub async fn release(mut self) -> Result<()> {
        // A refresh is let finish rather than aborted: cut between writing its new file and
        // recording it, it would leave that file behind, a lock nobody holds that blocks
        // others until it goes stale. (A refresh stuck on storage past this wait is aborted.)
        self.stop.notify_one();
        if tokio::time::timeout(RELEASE_WAIT, &mut self.refresher)
            .await
            .is_err()
        {
            self.refresher.abort();
        }
        let id = self.id();
        self.state.repo.delete_file(FileKind::Lock, &id).await?;
        tracing::debug!(lock = %id.short(), "lock released");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness() {
        let timing = LockTiming::default();
        let now = Utc::now();
        let mut l = LockInfo::new(false);
        assert_eq!(l.stale_reason(now, &timing), None);
        l.time = now - chrono::Duration::minutes(31);
        assert!(l
            .stale_reason(now, &timing)
            .unwrap()
            .contains("not refreshed"));
        l.time = now - chrono::Duration::minutes(29);
        assert_eq!(l.stale_reason(now, &timing), None);
        // A dead pid in our own namespace: stale at once.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        l.pid = pid;
        assert!(l.stale_reason(now, &timing).unwrap().contains("gone"));
        // The same pid in another pid namespace (another container of the pod) is not ours
        // to judge.
        l.pid_namespace = Some("pid:[1]".into());
        assert_eq!(l.stale_reason(now, &timing), None);
        // Another host's process is never judged by pid.
        l.pid_namespace = pid_namespace();
        l.hostname = "elsewhere".into();
        assert_eq!(l.stale_reason(now, &timing), None);
        // Clocks differ a little; a lock dated far ahead blocks nobody until that date.
        l.time = now + chrono::Duration::minutes(10);
        assert_eq!(l.stale_reason(now, &timing), None);
        l.time = now + chrono::Duration::days(3650);
        assert!(l.stale_reason(now, &timing).unwrap().contains("future"));
    }
}
