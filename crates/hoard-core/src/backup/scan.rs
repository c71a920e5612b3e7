//! Counting ahead for progress totals: the regular files (and their bytes) below the backup's
//! paths, found by a walk of its own that runs beside the backup and only reads metadata.
//! Its totals are estimates: files may change between the scan and the read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::exclude::{Excluder, Verdict};
use super::CancelToken;
use crate::progress::Progress;

/// How often growing totals are reported.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// Scans on a blocking thread until done or until `stop` is cancelled; reports totals that
/// only grow, the last one with `complete` (unless stopped).
pub(super) fn spawn_scan(
    paths: Vec<PathBuf>,
    exclude: Arc<Excluder>,
    progress: Arc<dyn Progress>,
    stop: CancelToken,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut last = Instant::now();
        // (path, whether the exclusion rules apply: not to the paths given)
        let mut stack: Vec<(PathBuf, bool)> = paths.into_iter().map(|p| (p, false)).collect();
        while let Some((path, judged)) = stack.pop() {
            if stop.is_cancelled() {
                return;
            }
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            match judged.then(|| exclude.judge(&path, &md)) {
                Some(Verdict::Leave) => continue,
                Some(Verdict::KeepEmpty) => continue,
                _ => {}
            }
            if md.is_file() {
                files += 1;
                bytes += md.len();
            } else if md.is_dir() {
                let Ok(entries) = std::fs::read_dir(&path) else {
                    continue;
                };
                stack.extend(entries.flatten().map(|e| (e.path(), true)));
            }
            if last.elapsed() >= REPORT_EVERY {
                progress.total(files, bytes, false);
                last = Instant::now();
            }
        }
        progress.total(files, bytes, true);
    })
}
