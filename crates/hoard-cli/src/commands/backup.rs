use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use hoard_core::backup::Written;
use hoard_core::{BackupOptions, CancelToken, ParentSelection, StreamOptions};

use crate::args::{BackupArgs, ExcludeArgs, GlobalArgs};
use crate::output::{json_line, size, CliProgress};
use crate::{repo, Incomplete};

pub async fn run(g: &GlobalArgs, a: BackupArgs) -> Result<()> {
    let started = Instant::now();
    let result = run_backup(g, a).await;
    if let Some(path) = &g.metrics_file {
        let (repo, outcome) = match &result {
            Ok((r, done)) => (Some(r), Ok(done)),
            Err(e) => (None, Err(e)),
        };
        let snapshots = match repo {
            Some(r) => r
                .list(hoard_core::FileKind::Snapshot)
                .await
                .ok()
                .map(|s| s.len()),
            None => None,
        };
        if let Err(e) = crate::metrics::write(
            path,
            &location_label(g),
            outcome,
            started.elapsed(),
            snapshots,
        ) {
            eprintln!("hoard: cannot write metrics to {}: {e}", path.display());
        }
    }
    let (_, done) = result?;
    print_summary(g, &done, started.elapsed().as_secs_f64())?;
    if !done.errors.is_empty() {
        let what = match done.written {
            Written::DryRun => "dry run".to_string(),
            _ => format!("snapshot {} saved", done.snapshot.id.short()),
        };
        return Err(Incomplete(format!(
            "{what}, but {} files or directories could not be read (listed above)",
            done.errors.len()
        ))
        .into());
    }
    Ok(())
}

fn location_label(g: &GlobalArgs) -> String {
    repo::settings(g)
        .map(|s| s.conn.location.to_string())
        .unwrap_or_default()
}

/// Stops the backup cleanly on SIGTERM (Kubernetes stopping the pod) or SIGINT.
fn cancel_on_signals() -> CancelToken {
    let token = CancelToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!("stopping: finishing uploads and writing the index");
        t.cancel();
    });
    token
}

async fn run_backup(
    g: &GlobalArgs,
    a: BackupArgs,
) -> Result<(hoard_core::Repository, hoard_core::BackupResult)> {
    let r = repo::open_for_backup(g).await?;
    if a.stdin || a.stdin_from_command {
        return stream_backup(g, a, r).await;
    }
    let parent = match (&a.parent, a.force) {
        (_, true) => ParentSelection::None,
        (Some(p), _) => ParentSelection::Id(r.find_snapshot(p).await?.id),
        (None, false) => ParentSelection::Latest,
    };
    let mut paths = a.paths;
    for file in &a.files_from {
        paths.extend(
            lines(file, b'\n')?
                .into_iter()
                .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
                .map(path_of),
        );
    }
    for file in &a.files_from_raw {
        paths.extend(
            lines(file, 0)?
                .into_iter()
                .filter(|l| !l.is_empty())
                .map(path_of),
        );
    }
    if paths.is_empty() {
        anyhow::bail!("nothing to back up: the --files-from lists are empty");
    }
    let (excludes, iexcludes) = a.exclude.patterns()?;
    let opts = BackupOptions {
        paths,
        host: a.host,
        tags: a.tags.into_iter().filter(|t| !t.is_empty()).collect(),
        excludes,
        iexcludes,
        exclude_caches: a.exclude_caches,
        exclude_if_present: a.exclude_if_present,
        exclude_larger_than: a.exclude_larger_than,
        one_file_system: a.one_file_system,
        dry_run: a.dry_run,
        skip_if_unchanged: a.skip_if_unchanged,
        with_atime: a.with_atime,
        read_concurrency: a.read_concurrency.map(usize::from),
        parent,
        cancel: Some(cancel_on_signals()),
        time: a.time,
    };
    let progress = Arc::new(CliProgress::new(g.quiet, g.json));
    let result = hoard_core::backup(&r, opts, progress.clone()).await;
    progress.finish();
    Ok((r, result?))
}

/// The records of a list file (`-` is standard input), split at `sep`, a trailing `\r` of
/// each text line removed.
fn lines(file: &std::path::Path, sep: u8) -> Result<Vec<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if file == std::path::Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    }
    Ok(bytes
        .split(|&b| b == sep)
        .map(|l| {
            let l = if sep == b'\n' {
                l.strip_suffix(b"\r").unwrap_or(l)
            } else {
                l
            };
            l.to_vec()
        })
        .collect())
}

impl ExcludeArgs {
    /// The patterns to match with case (`--exclude` and the `--exclude-file` lines), and
    /// those to match without (`--iexclude`).
    pub fn patterns(self) -> Result<(Vec<String>, Vec<String>)> {
        let mut excludes = self.excludes;
        excludes.extend(exclude_files(&self.exclude_file)?);
        Ok((excludes, self.iexcludes))
    }
}

/// The patterns in `--exclude-file` files: one per line, blank lines and `#` comments
/// skipped.
fn exclude_files(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut patterns = Vec::new();
    for file in files {
        for line in lines(file, b'\n')? {
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                patterns.push(line.to_string());
            }
        }
    }
    Ok(patterns)
}

fn path_of(bytes: Vec<u8>) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(bytes).into()
}

/// `--stdin` and `--stdin-from-command`: one stream backed up as one file.
async fn stream_backup(
    g: &GlobalArgs,
    a: BackupArgs,
    r: hoard_core::Repository,
) -> Result<(hoard_core::Repository, hoard_core::BackupResult)> {
    let opts = StreamOptions {
        filename: a.stdin_filename,
        host: a.host,
        tags: a.tags.into_iter().filter(|t| !t.is_empty()).collect(),
        time: a.time,
        cancel: Some(cancel_on_signals()),
    };
    let progress = Arc::new(CliProgress::new(g.quiet, g.json));
    let result = if a.stdin_from_command {
        let output = CommandOutput::spawn(&a.paths)?;
        let pid = output.child.id();
        let result = hoard_core::backup_stream(&r, opts, output, progress.clone()).await;
        if result.is_err() {
            // A stopped backup abandons its read, and with it the command's handle: stop the
            // command here, or a hung dump would outlive the backup. It is not reaped until
            // this process exits, so the pid still names it.
            // The command leads its own process group, so a pipeline it started
            // (`sh -c 'pg_dump | gzip'`) stops with it.
            // SAFETY: kill(2) on the process group of our own unreaped child.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGTERM) };
        }
        result
    } else {
        hoard_core::backup_stream(&r, opts, std::io::stdin(), progress.clone()).await
    };
    progress.finish();
    Ok((r, result?))
}

/// A command's standard output, read to its end; the end is an error when the command
/// failed, so that a dump cut short by a failing `pg_dump` never becomes a snapshot. Dropped
/// early (the backup failed or was stopped), it kills the command.
struct CommandOutput {
    child: std::process::Child,
    stdout: std::process::ChildStdout,
    program: String,
    finished: bool,
}

impl CommandOutput {
    fn spawn(command: &[std::path::PathBuf]) -> Result<Self> {
        let Some((program, args)) = command.split_first() else {
            anyhow::bail!("--stdin-from-command needs a command: hoard backup --stdin-from-command -- pg_dump mydb");
        };
        let name = program.display().to_string();
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(program)
            .args(args)
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run {name:?}: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("{name:?}: no standard output to read"))?;
        Ok(Self {
            child,
            stdout,
            program: name,
            finished: false,
        })
    }
}

impl std::io::Read for CommandOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.finished {
            self.finished = true;
            let status = self.child.wait()?;
            if !status.success() {
                return Err(std::io::Error::other(format!(
                    "command {:?} failed ({status})",
                    self.program
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for CommandOutput {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn print_summary(g: &GlobalArgs, done: &hoard_core::BackupResult, secs: f64) -> Result<()> {
    let s = &done.summary;
    if g.json {
        json_line(&serde_json::json!({
            "message_type": "summary",
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unmodified": s.files_unmodified,
            "dirs_new": s.dirs_new,
            "dirs_changed": s.dirs_changed,
            "dirs_unmodified": s.dirs_unmodified,
            "data_blobs": s.data_blobs,
            "tree_blobs": s.tree_blobs,
            "data_added": s.data_added,
            "data_added_packed": s.data_added_packed,
            "total_files_processed": s.total_files_processed,
            "total_bytes_processed": s.total_bytes_processed,
            "total_duration": secs,
            "snapshot_id": (done.written == Written::Saved).then_some(done.snapshot.id),
            "dry_run": done.written == Written::DryRun,
            "skipped": done.written == Written::Unchanged,
            "errors": done.errors.len(),
        }))?;
    } else if !g.quiet {
        println!(
            "Files:       {:>6} new, {:>6} changed, {:>6} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        );
        println!(
            "Dirs:        {:>6} new, {:>6} changed, {:>6} unmodified",
            s.dirs_new, s.dirs_changed, s.dirs_unmodified
        );
        let added = if done.written == Written::DryRun {
            "Would add to the repository"
        } else {
            "Added to the repository"
        };
        println!(
            "{added}: {} ({} stored)",
            size(s.data_added),
            size(s.data_added_packed)
        );
        println!(
            "processed {} files, {} in {:.2}s",
            s.total_files_processed,
            size(s.total_bytes_processed),
            secs
        );
        match done.written {
            Written::Saved => println!("snapshot {} saved", done.snapshot.id.short()),
            Written::Unchanged => println!(
                "skipped creating snapshot: nothing changed since {}",
                done.snapshot.id.short()
            ),
            Written::DryRun => println!("dry run: nothing was written"),
        }
    }
    Ok(())
}
