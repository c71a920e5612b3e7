//! Command-line flags. Library option types carry no clap attributes; `commands` turns these
//! into them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hoard",
    version,
    about = "Encrypted, deduplicated backups into restic-style repositories"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository: a directory, local:/path, or s3:[https://]host[:port]/bucket[/prefix].
    #[arg(short = 'r', long = "repo", env = "RESTIC_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Secrets from a mounted Secret directory, a Secret manifest (YAML/JSON) or a COSI
    /// BucketInfo; they take precedence over environment variables.
    #[arg(long, value_name = "PATH", global = true)]
    pub secret: Option<PathBuf>,
    /// A Stash-style Repository manifest (YAML/JSON; may also hold its Secret). The first
    /// backup initialises the repository (and bucket) when there is none.
    #[arg(long, value_name = "FILE", global = true)]
    pub crd: Option<PathBuf>,
    /// Write Prometheus text-format metrics of the run here (atomically).
    #[arg(long, value_name = "PATH", global = true)]
    pub metrics_file: Option<PathBuf>,
    /// Extra CA certificate(s) to trust, PEM (in addition to CA_CERT_DATA).
    #[arg(long, value_name = "FILE", global = true)]
    pub cacert: Vec<PathBuf>,
    /// Backend options: s3.bucket-lookup=auto|dns|path, s3.region=R, s3.connections=N,
    /// s3.timeout=SECONDS, s3.retries=N.
    #[arg(short = 'o', long = "option", value_name = "KEY=VALUE", global = true)]
    pub options: Vec<String>,
    /// File holding the repository password (else RESTIC_PASSWORD).
    #[arg(long, env = "RESTIC_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Print results as JSON (one document, or one JSON object per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up files and directories into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// Restore a snapshot into a directory.
    Restore(RestoreArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Print a repository object as JSON.
    Cat(CatArgs),
    /// Show sizes and deduplication of snapshots.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// argon2id memory in KiB for the new key (default 65536). Lower only for tests.
    #[arg(long)]
    pub kdf_memory: Option<u32>,
    /// argon2id passes (default 3).
    #[arg(long)]
    pub kdf_iterations: Option<u32>,
    /// argon2id lanes (default 4).
    #[arg(long)]
    pub kdf_parallelism: Option<u32>,
    /// Target pack size in MiB (default 16).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub pack_size: Option<u32>,
    /// zstd level for blobs (default 3).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub compression: Option<i32>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Tag for the snapshot (repeatable, or comma separated).
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Hostname to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Exclude paths matching a glob (repeatable).
    #[arg(short = 'e', long = "exclude")]
    pub excludes: Vec<String>,
    /// Compare against this snapshot instead of the latest one with the same host and paths.
    #[arg(long, conflicts_with = "force")]
    pub parent: Option<String>,
    /// Read every file, ignoring the parent snapshot.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only paths matching a glob (repeatable).
    #[arg(short, long)]
    pub include: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    pub snapshot: String,
    /// List only below this path.
    pub path: Option<String>,
    /// Show mode, owner, size and mtime.
    #[arg(short, long)]
    pub long: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// config, index, snapshot, key or pack.
    pub kind: String,
    /// Id or unique prefix (not for config).
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Snapshots to count (default: all).
    pub snapshots: Vec<String>,
}
