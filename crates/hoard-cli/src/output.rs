//! Everything the CLI shows a person: logging setup, the one-line error, sizes, and the
//! progress bar (only on a terminal; pipes and sidecar logs stay quiet).

use std::io::IsTerminal;
use std::path::Path;

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
    hoard_core::progress::human_size(bytes, 3)
}

/// Progress on stderr when it is a terminal, restic-style JSON status lines with `--json`,
/// nothing otherwise. Fed by the engine's progress events, so every command that reports
/// progress shows it the same way.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    state: std::sync::Mutex<Counts>,
    /// In --json mode: when the command started and when the last status line went out (at
    /// most one a second).
    json_status: Option<std::sync::Mutex<(std::time::Instant, std::time::Instant)>>,
}

/// The current phase's numbers.
#[derive(Default)]
struct Counts {
    phase: Option<hoard_core::progress::Phase>,
    items: u64,
    bytes: u64,
    total_items: u64,
    total_bytes: u64,
    /// The totals are final.
    complete: bool,
    /// When the phase started, for speed and time left.
    started: Option<std::time::Instant>,
}

impl Counts {
    /// Fraction done, by bytes where the phase has bytes, else by items.
    fn fraction(&self) -> Option<f64> {
        let (done, total) = if self.total_bytes > 0 {
            (self.bytes, self.total_bytes)
        } else {
            (self.items, self.total_items)
        };
        (total > 0).then(|| (done as f64 / total as f64).min(1.0))
    }

    /// Seconds left at the phase's pace so far, once the totals are final.
    fn seconds_remaining(&self) -> Option<u64> {
        let f = self.fraction().filter(|f| *f > 0.0 && self.complete)?;
        let elapsed = self.started?.elapsed().as_secs_f64();
        Some((elapsed * (1.0 - f) / f).round() as u64)
    }

    /// Bytes a second in this phase.
    fn speed(&self) -> Option<f64> {
        let elapsed = self.started?.elapsed().as_secs_f64();
        (elapsed > 0.5 && self.bytes > 0).then(|| self.bytes as f64 / elapsed)
    }
}

/// `1:02:03` or `2:03`.
fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
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
            state: Default::default(),
            // The first status line goes out at once, then one a second.
            json_status: (json && !quiet).then(|| {
                let first = now
                    .checked_sub(std::time::Duration::from_secs(1))
                    .unwrap_or(now);
                std::sync::Mutex::new((now, first))
            }),
        }
    }

    fn update(&self) {
        let c = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = &self.json_status {
            let mut t = status.lock().unwrap_or_else(|e| e.into_inner());
            if t.1.elapsed() >= std::time::Duration::from_secs(1) {
                t.1 = std::time::Instant::now();
                let _ = json_line(&serde_json::json!({
                    "message_type": "status",
                    "phase": c.phase.map(|p| p.label()),
                    "seconds_elapsed": t.0.elapsed().as_secs(),
                    "percent_done": c.fraction().unwrap_or(0.0),
                    "total_files": c.total_items,
                    "files_done": c.items,
                    "total_bytes": c.total_bytes,
                    "bytes_done": c.bytes,
                    "seconds_remaining": c.seconds_remaining(),
                }));
            }
        }
        if let Some(b) = &self.bar {
            let label = c.phase.map(|p| p.label()).unwrap_or_default();
            let mut amounts = format!("{} / {} items", c.items, c.total_items);
            if c.total_bytes > 0 {
                amounts = format!("{} / {}, {amounts}", size(c.bytes), size(c.total_bytes));
            }
            let mut pace = String::new();
            if let Some(speed) = c.speed() {
                pace = format!(", {}/s", size(speed as u64));
            }
            match c.seconds_remaining() {
                Some(left) => pace.push_str(&format!(", {} left", clock(left))),
                None if c.fraction().is_some() => pace.push_str(", still counting"),
                None => {}
            }
            b.set_message(match c.fraction() {
                Some(f) => format!("{label}: {:.1}% ({amounts}{pace})", f * 100.0),
                None => format!("{label}: {} items, {}{pace}", c.items, size(c.bytes)),
            });
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl hoard_core::Progress for CliProgress {
    fn phase(&self, phase: hoard_core::progress::Phase) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Counts {
            phase: Some(phase),
            started: Some(std::time::Instant::now()),
            ..Default::default()
        };
        self.update();
    }

    fn total(&self, items: u64, bytes: u64, complete: bool) {
        {
            let mut c = self.state.lock().unwrap_or_else(|e| e.into_inner());
            c.total_items = c.total_items.max(items);
            c.total_bytes = c.total_bytes.max(bytes);
            c.complete = complete;
        }
        self.update();
    }

    fn advance(&self, items: u64, bytes: u64) {
        {
            let mut c = self.state.lock().unwrap_or_else(|e| e.into_inner());
            c.items += items;
            c.bytes += bytes;
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

    /// A bar or status lines show percentages: worth the scan.
    fn wants_totals(&self) -> bool {
        self.bar.is_some() || self.json_status.is_some()
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

#[cfg(test)]
mod tests {
    use super::{clock, Counts};

    #[test]
    fn time_left_follows_the_pace_once_totals_are_final() {
        assert_eq!(clock(75), "1:15");
        assert_eq!(clock(3725), "1:02:05");
        let mut c = Counts {
            bytes: 25,
            total_bytes: 100,
            complete: false,
            started: Some(std::time::Instant::now() - std::time::Duration::from_secs(10)),
            ..Default::default()
        };
        assert_eq!(c.seconds_remaining(), None, "the scan is still counting");
        c.complete = true;
        assert_eq!(c.seconds_remaining(), Some(30));
        assert!((c.speed().unwrap() - 2.5).abs() < 0.1);
    }
}
