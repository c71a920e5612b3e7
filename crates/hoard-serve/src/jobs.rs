//! Work the console starts and a page follows: restores and checks run as tasks, their
//! progress in counters the job page reads (it reloads itself while the job runs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hoard_core::Progress;

/// Every job of this process, by number (their pages stay until the console stops).
#[derive(Clone, Default)]
pub struct Jobs(Arc<Mutex<Vec<Arc<Job>>>>);

pub struct Job {
    pub title: String,
    pub started: chrono::DateTime<chrono::Utc>,
    pub progress: Counters,
    /// `None` while running; then the outcome in words.
    pub outcome: Mutex<Option<Result<String, String>>>,
}

#[derive(Default)]
pub struct Counters {
    pub items_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub items_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

impl Progress for Counters {
    fn total(&self, items: u64, bytes: u64, _complete: bool) {
        self.items_total.store(items, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    fn advance(&self, items: u64, bytes: u64) {
        self.items_done.fetch_add(items, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Lets the engine report into a job that the jobs list also holds.
pub struct Report(pub Arc<Job>);

impl Progress for Report {
    fn total(&self, items: u64, bytes: u64, complete: bool) {
        self.0.progress.total(items, bytes, complete)
    }

    fn advance(&self, items: u64, bytes: u64) {
        self.0.progress.advance(items, bytes)
    }
}

impl Jobs {
    /// Registers a job and returns its number.
    pub fn start(&self, title: String) -> (usize, Arc<Job>) {
        let job = Arc::new(Job {
            title,
            started: chrono::Utc::now(),
            progress: Counters::default(),
            outcome: Mutex::new(None),
        });
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.push(job.clone());
        (all.len() - 1, job)
    }

    pub fn get(&self, n: usize) -> Option<Arc<Job>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(n)
            .cloned()
    }

    /// The newest job whose title starts with `prefix`, for the health page's last check.
    pub fn last(&self, prefix: &str) -> Option<(usize, Arc<Job>)> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .enumerate()
            .rev()
            .find(|(_, j)| j.title.starts_with(prefix))
            .map(|(n, j)| (n, j.clone()))
    }
}

impl Job {
    pub fn finish(&self, outcome: Result<String, String>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }

    pub fn outcome(&self) -> Option<Result<String, String>> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
