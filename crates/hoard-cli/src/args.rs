//! Command-line flags. Library option types carry no clap attributes; `commands` turns these
//! into them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::parse::{parse_size, parse_time, parse_wait};

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
#[command(next_help_heading = "Global options")]
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
    /// When the repository is locked, keep retrying this long (e.g. 30s, 5m, 1h) before
    /// giving up with exit code 11.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait, global = true)]
    pub retry_lock: Option<std::time::Duration>,
    /// Take no lock: for read-only credentials (restore, dump, check). Results may be off
    /// while a prune runs.
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Where S3 repositories keep their metadata cache [default: $RESTIC_CACHE_DIR,
    /// $XDG_CACHE_HOME/hoard or ~/.cache/hoard]. A sidecar mounts an emptyDir here.
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Read everything from the repository itself; keep no local copies.
    #[arg(long, global = true)]
    pub no_cache: bool,
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
    /// Remove snapshots by id or by a retention policy (data goes away with `prune`).
    Forget(Box<ForgetArgs>),
    /// Remove data no snapshot uses, repacking partly used packs.
    Prune(PruneArgs),
    /// Verify the repository's structure and, with --read-data, its contents.
    Check(CheckArgs),
    /// Remove stale locks (or all locks with --remove-all).
    Unlock(UnlockArgs),
    /// Manage the passwords (keys) that open the repository.
    Key(KeyArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Write a file, or a directory as tar or zip, from a snapshot to stdout.
    Dump(DumpArgs),
    /// Bring a damaged repository back to a clean check.
    Repair(RepairArgs),
    /// List the local metadata caches; with --cleanup, remove those unused for 30 days.
    Cache(CacheArgs),
    /// Add, remove or replace the tags of snapshots.
    Tag(TagArgs),
    /// List the ids of one kind of repository file: snapshots, index, packs, keys or locks.
    List(ListArgs),
    /// Write shell completions and man pages (no repository needed).
    Generate(GenerateArgs),
    /// Copy snapshots from another repository (--from-repo) into this one; only the blobs
    /// this one lacks are stored, and snapshots it already has are skipped.
    Copy(CopyArgs),
    /// Find files in snapshots by name or path pattern, size and modification time.
    Find(FindArgs),
    /// Remove files from existing snapshots (new snapshots tagged `rewrite`; --forget drops
    /// the originals; prune then frees the data).
    Rewrite(RewriteArgs),
    /// Serve a web console: browse, diff, download (and with --allow-restore: restore,
    /// share, check) from a browser.
    Serve(ServeArgs),
    /// Hand out a file (or a directory as tar or zip) from a snapshot with a time-limited
    /// link that needs no credentials (S3 repositories); list, revoke and expire shares.
    Share(ShareArgs),
    /// Browse the repository as a read-only file system (FUSE) until Ctrl-C, SIGTERM or
    /// umount: ids/, snapshots/ (with latest), hosts/ and tags/.
    Mount(MountArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").args(["list", "revoke", "expire"])))]
pub struct ShareArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    #[arg(required_unless_present = "action", conflicts_with = "action")]
    pub snapshot: Option<String>,
    /// Path in the snapshot: a file is shared as is, a directory as a tar (or --zip) archive.
    #[arg(required_unless_present = "action", conflicts_with = "action")]
    pub path: Option<String>,
    /// How long the link works: 30s, 15m, 24h, 7d (at most 7 days).
    #[arg(long, default_value = "24h", value_parser = parse_wait, conflicts_with = "action")]
    pub expires: std::time::Duration,
    /// The file name the recipient gets (default: the path's last part, plus .tar or .zip
    /// for a directory).
    #[arg(long, conflicts_with = "action")]
    pub name: Option<String>,
    /// Share a directory as a zip archive instead of tar.
    #[arg(long, conflicts_with = "action")]
    pub zip: bool,
    /// List the shares: id, expiry, size, name, origin.
    #[arg(long)]
    pub list: bool,
    /// Delete a share (its id or a unique prefix); its link stops working at once.
    #[arg(long, value_name = "ID")]
    pub revoke: Option<String>,
    /// Delete every share whose link has expired (prune does this too).
    #[arg(long)]
    pub expire: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; anything but loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// File holding the access token (else HOARD_SERVE_TOKEN from the environment or the
    /// Secret). Browsers log in once; other clients send `Authorization: Bearer TOKEN`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Allow actions: restores into directories on this machine, share links, checks.
    #[arg(long)]
    pub allow_restore: bool,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// An existing, empty directory to mount on.
    pub mountpoint: PathBuf,
    /// Let other users (and root) read the mount, not only this user.
    #[arg(long)]
    pub allow_other: bool,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// Path patterns to leave out, as backup and rewrite both take them.
#[derive(Debug, Args)]
pub struct ExcludeArgs {
    /// Exclude paths matching a glob (repeatable).
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from FILE, one per line (`#` comments; repeatable).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// As --exclude, ignoring case (repeatable).
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["excludes", "exclude_file", "iexcludes"])))]
pub struct RewriteArgs {
    /// Snapshots to rewrite (ids, unique prefixes or `latest`); none means every snapshot
    /// the filters select.
    pub snapshots: Vec<String>,
    /// The paths to remove.
    #[command(flatten)]
    pub exclude: ExcludeArgs,
    /// Remove the original snapshots once the rewritten ones are saved.
    #[arg(long)]
    pub forget: bool,
    /// Say what would be removed; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("criteria").required(true).multiple(true).args(["patterns", "newest", "oldest", "larger_than", "smaller_than"])))]
pub struct FindArgs {
    /// Glob patterns: without `/` a name (`*.sql`), with `/` a path (`/etc/*.conf`,
    /// `docs/*.md` at any depth).
    pub patterns: Vec<String>,
    /// Match the patterns without regard to case.
    #[arg(short, long)]
    pub ignore_case: bool,
    /// Only entries modified at or after this time (RFC 3339 or "YYYY-MM-DD HH:MM:SS").
    #[arg(long, short = 'O', value_parser = parse_time)]
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries modified at or before this time.
    #[arg(long, short = 'N', value_parser = parse_time)]
    pub newest: Option<chrono::DateTime<chrono::Utc>>,
    /// Only files of at least SIZE (e.g. 100M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub larger_than: Option<u64>,
    /// Only files of at most SIZE.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub smaller_than: Option<u64>,
    /// Look only in this snapshot (repeatable; default: all that the filters select).
    #[arg(short, long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Show mode, size and mtime.
    #[arg(short, long)]
    pub long: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Snapshots to copy (ids, unique prefixes or `latest`); none means every snapshot the
    /// filters select.
    pub snapshots: Vec<String>,
    /// The repository to copy from (same forms as --repo).
    #[arg(long, env = "RESTIC_FROM_REPOSITORY", value_name = "REPO")]
    pub from_repo: Option<String>,
    /// File holding the source repository's password (else RESTIC_FROM_PASSWORD, or
    /// RESTIC_PASSWORD in --from-secret).
    #[arg(long, env = "RESTIC_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// The source's Secret (a mounted directory, a manifest or a COSI BucketInfo): its keys,
    /// CA and password, when they differ from this repository's.
    #[arg(long, value_name = "PATH")]
    pub from_secret: Option<PathBuf>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["bash_completion", "zsh_completion", "fish_completion", "powershell_completion", "man"])))]
pub struct GenerateArgs {
    /// Write the bash completion script to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub bash_completion: Option<PathBuf>,
    /// Write the zsh completion script to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub zsh_completion: Option<PathBuf>,
    /// Write the fish completion script to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub fish_completion: Option<PathBuf>,
    /// Write the PowerShell completion script to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub powershell_completion: Option<PathBuf>,
    /// Write one man page per command (hoard.1, hoard-backup.1, …) into DIR.
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["add", "remove", "set"])))]
pub struct TagArgs {
    /// Snapshots to change (ids, unique prefixes or `latest`); none means every snapshot the
    /// filters select.
    pub snapshots: Vec<String>,
    /// Tag to add (repeatable, or comma separated).
    #[arg(long, value_delimiter = ',')]
    pub add: Vec<String>,
    /// Tag to remove (repeatable, or comma separated).
    #[arg(long, value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Replace all tags with these (`--set ''` removes every tag).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// Which snapshots a command takes when it is given no ids, or which of the given ones.
#[derive(Debug, Args)]
pub struct SnapshotFilter {
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots that have all these tags (repeatable, or comma separated).
    #[arg(long, value_delimiter = ',')]
    pub tag: Vec<String>,
    /// Only snapshots that include this path (repeatable).
    #[arg(long)]
    pub path: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// What to list.
    #[arg(value_enum)]
    pub kind: ListKind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListKind {
    /// Snapshot files.
    Snapshots,
    /// Index files.
    Index,
    /// Pack files (`data/`).
    Packs,
    /// Key files.
    Keys,
    /// Lock files.
    Locks,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Remove the caches of repositories not used for --max-age days.
    #[arg(long)]
    pub cleanup: bool,
    /// Age in days after which --cleanup removes a repository's cache.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub max_age: u64,
    /// Say what --cleanup would remove; remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove (ids or unique prefixes), in addition to the policy.
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(short = 'l', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the last N hours (-1: all hours).
    #[arg(short = 'H', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i64>,
    /// Keep the newest snapshot of each of the last N days (-1: all days).
    #[arg(short = 'd', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i64>,
    /// Keep the newest snapshot of each of the last N ISO weeks (-1: all weeks).
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i64>,
    /// Keep the newest snapshot of each of the last N months (-1: all months).
    #[arg(short = 'm', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i64>,
    /// Keep the newest snapshot of each of the last N years (-1: all years).
    #[arg(short = 'y', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i64>,
    /// Keep snapshots newer than this before the newest one, e.g. 1y6m, 14d, 36h.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest snapshot of each hour within this span of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep the newest snapshot of each day within this span of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep the newest snapshot of each ISO week within this span of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep the newest snapshot of each month within this span of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep the newest snapshot of each year within this span of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with all these tags (comma separated; repeat for alternatives).
    #[arg(long, value_name = "TAG[,TAG]")]
    pub keep_tag: Vec<String>,
    /// Group by any of host, paths, tags (comma separated; empty: one group).
    #[arg(short, long, default_value = "host,paths")]
    pub group_by: String,
    /// Only consider snapshots of this host.
    #[arg(long)]
    pub host: Vec<String>,
    /// Only consider snapshots with all these tags (comma separated; repeat for alternatives).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only consider snapshots with this path (repeatable).
    #[arg(long)]
    pub path: Vec<String>,
    /// Show what would be removed; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: the unused space tolerated (see `prune --max-unused`).
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// With --prune: repack at most SIZE (see `prune --max-repack-size`).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_repack_size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Unused space tolerated afterwards: a share of the repository (5%, 0%), a size (0,
    /// 10M, 2G) or unlimited; partly used packs are repacked until it is met.
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// Repack at most SIZE of packs in this run (e.g. 500M); the rest waits for the next.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_repack_size: Option<u64>,
    /// Show what would be done; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Download every pack and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Download part of the packs: n/t (e.g. 1/7 on Mondays) or x% (random).
    #[arg(long, value_name = "SUBSET")]
    pub read_data_subset: Option<String>,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones. Only when no hoard process is running.
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub command: RepairCommand,
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Replace a damaged, missing or invalid config, keeping whatever of it is still readable
    /// and valid (above all the chunker parameters, so dedup continues).
    Config,
    /// Rebuild the index from the pack headers, replacing every index file.
    Index,
    /// Rewrite snapshots that need missing blobs, leaving out files whose data is gone (a
    /// directory whose listing is gone becomes empty); the repaired ones are tagged `repaired`.
    Snapshots {
        /// Remove each original snapshot once its repaired one is written.
        #[arg(long)]
        forget: bool,
        /// Report what would be repaired; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Salvage the readable blobs of damaged packs (as `check --read-data` names them) into new
    /// packs, then remove the damaged packs; what could not be salvaged is listed, for
    /// `repair snapshots`.
    Packs {
        /// Pack ids, or unique prefixes of them.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List keys.
    List,
    /// Add a key for another password.
    Add(NewKeyArgs),
    /// Remove a key (never the last one, nor the one in use).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the password: add a key for the new one, remove the one in use.
    Passwd(NewKeyArgs),
}

#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// File holding the new password.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: PathBuf,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot.
    pub from: String,
    /// The newer snapshot.
    pub to: String,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    pub snapshot: String,
    /// Path in the snapshot: a file is written as is, a directory as an archive.
    pub path: String,
    /// A directory's archive format (zip entries are stored, names UTF-8).
    #[arg(long, value_enum, default_value_t = ArchiveFormat::Tar)]
    pub archive: ArchiveFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ArchiveFormat {
    Tar,
    Zip,
}

impl From<ArchiveFormat> for hoard_core::dump::Archive {
    fn from(a: ArchiveFormat) -> Self {
        match a {
            ArchiveFormat::Tar => hoard_core::dump::Archive::Tar,
            ArchiveFormat::Zip => hoard_core::dump::Archive::Zip,
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Target pack size in MiB (default 16).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub pack_size: Option<u32>,
    /// zstd level for blobs (default 2; 3 stores ~3.5% less for ~15% more backup CPU).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub compression: Option<i32>,
}

/// The password-hashing cost of a new key.
#[derive(Debug, Args)]
pub struct KdfArgs {
    /// argon2id memory in KiB for the new key (default 65536). Lower only for tests.
    #[arg(long)]
    pub kdf_memory: Option<u32>,
    /// argon2id passes (default 3).
    #[arg(long)]
    pub kdf_iterations: Option<u32>,
    /// argon2id lanes (default 4).
    #[arg(long)]
    pub kdf_parallelism: Option<u32>,
}

impl KdfArgs {
    pub fn params(&self) -> hoard_core::KdfParams {
        let d = hoard_core::KdfParams::default();
        hoard_core::KdfParams {
            memory_kib: self.kdf_memory.unwrap_or(d.memory_kib),
            iterations: self.kdf_iterations.unwrap_or(d.iterations),
            parallelism: self.kdf_parallelism.unwrap_or(d.parallelism),
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up; with --stdin-from-command, the command and its
    /// arguments (after `--`).
    #[arg(required_unless_present_any = ["stdin", "files_from", "files_from_raw"])]
    pub paths: Vec<PathBuf>,
    /// Read the paths to back up from FILE, one per line; empty lines and lines starting
    /// with `#` are skipped (repeatable; `-` is standard input).
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Read the paths to back up from FILE, separated by NUL bytes as `find -print0` writes
    /// them (repeatable; `-` is standard input).
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Back up what arrives on standard input, as one file (see --stdin-filename).
    #[arg(long, conflicts_with_all = ["paths", "stdin_from_command"])]
    pub stdin: bool,
    /// The file name (or relative path) the stream gets in the snapshot.
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub stdin_filename: String,
    /// Run the command given as the paths (`-- pg_dump mydb`) and back up its output as one
    /// file. If the command exits non-zero, no snapshot is written and the backup fails.
    #[arg(long)]
    pub stdin_from_command: bool,
    /// Tag for the snapshot (repeatable, or comma separated).
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Hostname to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub exclude: ExcludeArgs,
    /// Leave out directories that hold a CACHEDIR.TAG file with the standard signature.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out directories that hold a file NAME; NAME:HEADER only if the file starts
    /// with HEADER (repeatable).
    #[arg(long, value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Leave out files larger than SIZE (e.g. 500K, 2G; binary units as restic reads them).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exclude_larger_than: Option<u64>,
    /// Stay on the file systems of the given paths; mount points below them are recorded as
    /// empty directories.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Read everything and report what would be added; write nothing to the repository.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Files read at once (default: the number of cores); files under the chunker's minimum
    /// size count half.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub read_concurrency: Option<u16>,
    /// Write no snapshot when nothing changed since the parent snapshot.
    #[arg(long)]
    pub skip_if_unchanged: bool,
    /// Record access times. By default atime is recorded as mtime, because reading files for
    /// the backup moves atime and would make every directory look changed next time.
    #[arg(long)]
    pub with_atime: bool,
    /// Compare against this snapshot instead of the latest one with the same host and paths.
    #[arg(long, conflicts_with = "force")]
    pub parent: Option<String>,
    /// Read every file, ignoring the parent snapshot.
    #[arg(short, long)]
    pub force: bool,
    /// Record this time instead of now: RFC 3339, or "YYYY-MM-DD HH:MM:SS" in local time.
    #[arg(long, value_parser = parse_time)]
    pub time: Option<chrono::DateTime<chrono::Utc>>,
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
    /// Snapshot id (or unique prefix), or `latest`; `SNAPSHOT:/path` restores only that path
    /// of it, a directory's contents straight into the target (as restic 0.17).
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only paths matching a glob, with everything below them (repeatable).
    #[arg(short, long)]
    pub include: Vec<String>,
    /// As --include, ignoring case (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub iinclude: Vec<String>,
    /// Leave out paths matching a glob, with everything below them (repeatable).
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// As --exclude, ignoring case (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Files already in the target: always (made the snapshot's; identical ones are
    /// verified by hash and not rewritten), if-changed (trust size and mtime), if-newer
    /// (only when the snapshot's is newer), never.
    #[arg(long, value_enum, default_value = "always")]
    pub overwrite: OverwriteArg,
    /// Remove files and directories in the restored directories that the snapshot does not
    /// have (excluded ones are kept).
    #[arg(long)]
    pub delete: bool,
    /// Report what would be restored, kept and deleted; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Read every restored file back and check it against the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Accepted for restic scripts: runs of zeros are always restored as holes.
    #[arg(long)]
    pub sparse: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OverwriteArg {
    Always,
    IfChanged,
    IfNewer,
    Never,
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
