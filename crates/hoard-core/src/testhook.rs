//! Test hooks: named points in long operations where an end-to-end test can stop the process
//! as if it were killed, or hold it while the test does something else.
//!
//! `HOARD_TEST_HOOK=<point>:abort` aborts at `<point>`; `HOARD_TEST_HOOK=<point>:wait:<file>`
//! creates `<file>.reached` there and waits until `<file>` exists (aborting after five
//! minutes). Without the variable a hook costs one environment look-up. Compiled only with
//! the `test-hooks` feature.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a held process waits for its release before it gives up (a failed test must not
/// leave it behind for good).
const RELEASE_WAIT: Duration = Duration::from_secs(300);

/// The file to wait for when `HOARD_TEST_HOOK` holds `point` (having written the `.reached`
/// file); aborts there when it says so.
fn wait_for(point: &str) -> Option<PathBuf> {
    let spec = std::env::var("HOARD_TEST_HOOK").ok()?;
    let mut parts = spec.splitn(3, ':');
    if parts.next() != Some(point) {
        return None;
    }
    match (parts.next(), parts.next()) {
        (Some("abort"), _) => {
            tracing::error!("HOARD_TEST_HOOK: aborting at {point}");
            std::process::abort();
        }
        (Some("wait"), Some(file)) => {
            tracing::warn!("HOARD_TEST_HOOK: holding at {point} until {file} exists");
            let _ = std::fs::write(format!("{file}.reached"), std::process::id().to_string());
            Some(PathBuf::from(file))
        }
        _ => {
            tracing::warn!("HOARD_TEST_HOOK={spec:?} not understood");
            None
        }
    }
}

/// Whether to stop waiting: released, or (after [`RELEASE_WAIT`]) aborted.
fn released(file: &std::path::Path, point: &str, deadline: Instant) -> bool {
    if file.exists() {
        return true;
    }
    if Instant::now() > deadline {
        tracing::error!("HOARD_TEST_HOOK: never released at {point}; aborting");
        std::process::abort();
    }
    false
}

pub(crate) async fn hook(point: &str) {
    if let Some(file) = wait_for(point) {
        let deadline = Instant::now() + RELEASE_WAIT;
        while !released(&file, point, deadline) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// [`hook`] for blocking threads (a file reader): holds the thread itself.
pub(crate) fn hook_blocking(point: &str) {
    if let Some(file) = wait_for(point) {
        let deadline = Instant::now() + RELEASE_WAIT;
        while !released(&file, point, deadline) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
