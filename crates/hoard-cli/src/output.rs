//! Everything the CLI shows a person: logging setup, the one-line error, sizes, and the
//! progress bar (only on a terminal; pipes and sidecar logs stay quiet).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The error and its causes on one line; a cause already quoted by its parent is not repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}

/// Progress on stderr when it is a terminal; counts only otherwise.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    files: AtomicU64,
    bytes: AtomicU64,
    /// In --json mode: restic-style status lines on stdout, at most one a second.
    json_status: Option<std::sync::Mutex<(std::time::Instant, std::time::Instant)>>,
}

impl CliProgress {
    pub fn new(quiet: bool, json: bool) -> Self {
        let bar = (!quiet && !json && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        let now = std::time::Instant::now();
        CliProgress {
            bar,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            json_status: (json && !quiet).then(|| std::sync::Mutex::new((now, now))),
        }
    }

    fn update(&self) {
        if let Some(status) = &self.json_status {
            let mut t = status.lock().unwrap_or_else(|e| e.into_inner());
            if t.1.elapsed() >= std::time::Duration::from_secs(1) {
                t.1 = std::time::Instant::now();
                let _ = json_line(&serde_json::json!({
                    "message_type": "status",
                    "seconds_elapsed": t.0.elapsed().as_secs(),
                    "files_done": self.files.load(Ordering::Relaxed),
                    "bytes_done": self.bytes.load(Ordering::Relaxed),
                }));
            }
        }
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "{} files, {}",
                self.files.load(Ordering::Relaxed),
                size(self.bytes.load(Ordering::Relaxed))
            ));
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl hoard_core::Progress for CliProgress {
    fn bytes_read(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.update();
    }

    fn file_done(&self, _path: &Path, size: u64, read: bool) {
        self.files.fetch_add(1, Ordering::Relaxed);
        if !read {
            self.bytes.fetch_add(size, Ordering::Relaxed);
        }
        self.update();
    }

    fn error(&self, path: &Path, message: &str) {
        let line = format!("error: {}: {message}", path.display());
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// Prints a JSON value on one line.
pub fn json_line<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Prints snapshots as a table: ID, local time, host and tags, then a last column that may
/// take several lines per snapshot (paths, reasons). `rule` is the width of the dashed lines.
pub fn snapshot_table(
    last_title: &str,
    rows: &[(&hoard_core::SnapshotEntry, Vec<String>)],
    rule: usize,
) {
    let row = |id: &str, time: &str, host: &str, tags: &str, last: &str| {
        println!("{id:<8}  {time:<19}  {host:<16}  {tags:<16}  {last}")
    };
    row("ID", "Time", "Host", "Tags", last_title);
    println!("{}", "-".repeat(rule));
    for (entry, lines) in rows {
        let s = &entry.snapshot;
        let time = s
            .time
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let mut lines = lines.iter();
        let first = lines.next().map(String::as_str).unwrap_or_default();
        row(
            &entry.short_id(),
            &time,
            &s.hostname,
            &s.tags.join(","),
            first,
        );
        for more in lines {
            row("", "", "", "", more);
        }
    }
    println!("{}", "-".repeat(rule));
}
