//! Test hooks: named points in long operations where an end-to-end test can stop the process
//! as if it were killed, or hold it while the test does something else.
//!
//! `HOARD_TEST_HOOK=<point>:abort` aborts at `<point>`; `HOARD_TEST_HOOK=<point>:wait:<file>`
//! creates `<file>.reached` there and waits until `<file>` exists (aborting after five
//! minutes). Without the variable a hook costs one environment look-up.

pub(crate) async fn hook(point: &str) {
    let Ok(spec) = std::env::var("HOARD_TEST_HOOK") else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    if parts.next() != Some(point) {
        return;
    }
    match (parts.next(), parts.next()) {
        (Some("abort"), _) => {
            tracing::error!("HOARD_TEST_HOOK: aborting at {point}");
            std::process::abort();
        }
        (Some("wait"), Some(file)) => {
            tracing::warn!("HOARD_TEST_HOOK: holding at {point} until {file} exists");
            let _ = std::fs::write(format!("{file}.reached"), std::process::id().to_string());
            // A test that failed before releasing us must not leave us behind for good.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
            while !std::path::Path::new(file).exists() {
                if std::time::Instant::now() > deadline {
                    tracing::error!("HOARD_TEST_HOOK: never released at {point}; aborting");
                    std::process::abort();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        _ => tracing::warn!("HOARD_TEST_HOOK={spec:?} not understood"),
    }
}

/// [`hook`] for blocking threads (a file reader): holds the thread itself.
pub(crate) fn hook_blocking(point: &str) {
    let Ok(spec) = std::env::var("HOARD_TEST_HOOK") else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    if parts.next() != Some(point) {
        return;
    }
    match (parts.next(), parts.next()) {
        (Some("abort"), _) => {
            tracing::error!("HOARD_TEST_HOOK: aborting at {point}");
            std::process::abort();
        }
        (Some("wait"), Some(file)) => {
            tracing::warn!("HOARD_TEST_HOOK: holding at {point} until {file} exists");
            let _ = std::fs::write(format!("{file}.reached"), std::process::id().to_string());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
            while !std::path::Path::new(file).exists() {
                if std::time::Instant::now() > deadline {
                    tracing::error!("HOARD_TEST_HOOK: never released at {point}; aborting");
                    std::process::abort();
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        _ => tracing::warn!("HOARD_TEST_HOOK={spec:?} not understood"),
    }
}
