//! Prometheus text-format metrics of a backup run, for a node exporter's textfile collector or
//! a sidecar scraper. Written to a temporary file and renamed, so readers never see half.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn write(
    path: &Path,
    repository: &str,
    outcome: Result<&hoard_core::BackupResult, &anyhow::Error>,
    duration: Duration,
    snapshots: Option<usize>,
) -> std::io::Result<()> {
    let labels = format!("repository=\"{}\"", escape(repository));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut m = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        m.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}\n"
        ));
    };
    gauge(
        "hoard_backup_last_run_timestamp_seconds",
        "When the last backup run ended (Unix time).",
        now,
    );
    gauge(
        "hoard_backup_success",
        "1 if the last backup run saved a snapshot with every file, else 0.",
        match outcome {
            Ok(r) if r.errors.is_empty() => 1.0,
            _ => 0.0,
        },
    );
    gauge(
        "hoard_backup_duration_seconds",
        "Duration of the last backup run.",
        duration.as_secs_f64(),
    );
    if let Ok(r) = outcome {
        let s = &r.summary;
        gauge(
            "hoard_backup_bytes_added",
            "Bytes of new data the last backup added (before compression).",
            s.data_added as f64,
        );
        gauge(
            "hoard_backup_bytes_added_packed",
            "Bytes the last backup added to the repository as stored.",
            s.data_added_packed as f64,
        );
        gauge(
            "hoard_backup_bytes_processed",
            "Bytes of file content the last backup covered.",
            s.total_bytes_processed as f64,
        );
        gauge(
            "hoard_backup_files_new",
            "New files in the last backup.",
            s.files_new as f64,
        );
        gauge(
            "hoard_backup_files_changed",
            "Changed files in the last backup.",
            s.files_changed as f64,
        );
        gauge(
            "hoard_backup_files_unmodified",
            "Unmodified files in the last backup.",
            s.files_unmodified as f64,
        );
        gauge(
            "hoard_backup_errors",
            "Files or directories the last backup could not read.",
            r.errors.len() as f64,
        );
    }
    if let Some(n) = snapshots {
        gauge(
            "hoard_repository_snapshots",
            "Snapshots in the repository.",
            n as f64,
        );
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, path)?;
    tmp.1.write_all(m.as_bytes())?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path, target: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let name = format!(
        ".{}.{}.tmp",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("metrics"),
        std::process::id()
    );
    let p = dir.join(name);
    let f = std::fs::File::create(&p)?;
    Ok((p, f))
}
