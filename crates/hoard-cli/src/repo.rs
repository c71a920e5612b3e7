//! From flags, environment and secrets to an opened repository: the one place where the
//! command line's own inputs (`--crd`, `--secret`, `-o`, `--cacert`, `--password-file`,
//! `--retry-lock`, `--no-lock`) become a [`Connection`]; opening itself is hoard-s3's.

use anyhow::{anyhow, bail, Context, Result};
use hoard_core::Repository;
use hoard_s3::secrets::RESTIC_PASSWORD;
use hoard_s3::{Connection, Location, OpenError, OpenMode, S3Config, Secrets};
use secret::Password;

use crate::args::GlobalArgs;

/// Validated settings: where, with which secrets and options.
pub struct Settings {
    pub conn: Connection,
    /// The location came from a Repository manifest (`--crd`).
    pub from_crd: bool,
}

/// Environment first, then `--secret` on top.
pub fn secrets(g: &GlobalArgs) -> Result<Secrets> {
    let mut s = Secrets::from_env();
    if let Some(p) = &g.secret {
        s.overlay(Secrets::from_path(p)?);
    }
    Ok(s)
}

/// A Repository manifest and the Secret it names (from the same file, `--secret`, or the
/// environment).
fn crd_connection(g: &GlobalArgs, path: &std::path::Path) -> Result<Connection> {
    use hoard_s3::crd::{parse_crd, select_secret};
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --crd {}", path.display()))?;
    let crd = parse_crd(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut secrets = Secrets::from_env();
    let mut named = crd.secrets.clone();
    if let Some(p) = &g.secret {
        let s = Secrets::from_path(p)?;
        match s.name.clone() {
            Some(n) => named.push((n, s)),
            None => secrets.overlay(s), // a mounted directory carries no name to check
        }
    }
    if let Some(selected) = select_secret(&crd.repository, &named)? {
        secrets.overlay(selected);
    }
    Ok(Connection::from_manifest(&crd.repository, secrets)?)
}

pub fn settings(g: &GlobalArgs) -> Result<Settings> {
    let mut conn = match &g.crd {
        Some(path) => crd_connection(g, path)?,
        None => {
            let secrets = secrets(g)?;
            let location = location(g.repo.as_deref(), &secrets).ok_or_else(|| {
                anyhow!("no repository given: use -r/--repo, set RESTIC_REPOSITORY, or give --crd")
            })??;
            Connection::new(location, secrets)
        }
    };
    apply_options(g, &mut conn)?;
    Ok(Settings {
        conn,
        from_crd: g.crd.is_some(),
    })
}

/// The repository a URL names, else the bucket of a COSI BucketInfo secret; `None` when
/// neither is given.
fn location(repo: Option<&str>, secrets: &Secrets) -> Option<Result<Location>> {
    match (repo, &secrets.bucket_info) {
        (Some(r), _) => Some(r.parse::<Location>().map_err(Into::into)),
        (None, Some(info)) => Some(
            hoard_s3::S3Location::from_parts(&info.endpoint, &info.bucket, "")
                .map(Location::S3)
                .map_err(Into::into),
        ),
        (None, None) => None,
    }
}

/// `-o`, `--cacert` and the cache settings, which apply to every repository a command opens.
fn apply_options(g: &GlobalArgs, conn: &mut Connection) -> Result<()> {
    for o in &g.options {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("option {o:?} is not KEY=VALUE"))?;
        conn.options
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    if !g.cacert.is_empty() {
        let mut pem = String::new();
        for f in &g.cacert {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --cacert {}", f.display()))?;
            pem.push_str(&text);
            pem.push('\n');
        }
        conn.extra_ca_pem = Some(pem);
    }
    conn.cache_dir = cache_base(g);
    Ok(())
}

/// The cache directory's base (`--cache-dir`, else the platform's), unless `--no-cache`.
pub fn cache_base(g: &GlobalArgs) -> Option<std::path::PathBuf> {
    if g.no_cache {
        return None;
    }
    g.cache_dir
        .clone()
        .or_else(hoard_core::repository::cache::default_base)
}

/// Where `copy` reads from and how to open it.
pub struct Source<'a> {
    pub repo: Option<&'a str>,
    pub secret: Option<&'a std::path::Path>,
    pub password_file: Option<&'a std::path::Path>,
}

/// Opens `copy`'s source: its own location, Secret and password. The environment's storage
/// keys serve both repositories unless the source's Secret has its own; the environment's
/// RESTIC_PASSWORD is the destination's and never opens the source (RESTIC_FROM_PASSWORD
/// does, as in restic).
pub async fn open_source(g: &GlobalArgs, from: &Source<'_>) -> Result<Repository> {
    let mut secrets = Secrets::from_env();
    secrets.remove(RESTIC_PASSWORD);
    if let Ok(pw) = std::env::var("RESTIC_FROM_PASSWORD") {
        secrets.set(RESTIC_PASSWORD, pw);
    }
    if let Some(p) = from.secret {
        secrets.overlay(Secrets::from_path(p)?);
    }
    let location = location(from.repo, &secrets).ok_or_else(|| {
        anyhow!("no source repository: give --from-repo (or RESTIC_FROM_REPOSITORY), or a --from-secret with bucket info")
    })??;
    let mut conn = Connection::new(location, secrets);
    apply_options(g, &mut conn)?;
    let s = Settings {
        conn,
        from_crd: false,
    };
    let pw = match from.password_file {
        Some(f) => read_password_file(f)?,
        None => match s.conn.secrets.get(RESTIC_PASSWORD) {
            Some(p) => Password::new(p.as_bytes().to_vec()),
            None => bail!("no password for the source repository: set RESTIC_FROM_PASSWORD or RESTIC_FROM_PASSWORD_FILE, give --from-password-file, or put RESTIC_PASSWORD in --from-secret"),
        },
    };
    // Said as the source's error, in words: as a repository error it would be explained
    // (and named) as the destination's.
    let (repo, _) = s.conn.open(&pw.0, OpenMode::Existing).await.map_err(|e| {
        let e = s.explain(e);
        anyhow!(
            "source repository {}: {}",
            s.conn.location,
            crate::output::error_line(&e)
        )
    })?;
    Ok(repo.with_lock_options(lock_options(g)))
}

fn read_password_file(f: &std::path::Path) -> Result<Password> {
    let text = std::fs::read_to_string(f)
        .with_context(|| format!("cannot read the password file {}", f.display()))?;
    let pw = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if pw.is_empty() {
        bail!("the password file {} is empty", f.display());
    }
    Ok(Password::new(pw.as_bytes().to_vec()))
}

/// The password from `--password-file`/`RESTIC_PASSWORD_FILE`, else RESTIC_PASSWORD from the
/// secret or the environment. Never prompts: a sidecar must not hang waiting for input.
pub fn password(g: &GlobalArgs, secrets: &Secrets) -> Result<Password> {
    if let Some(f) = &g.password_file {
        return read_password_file(f);
    }
    match secrets.get(RESTIC_PASSWORD) {
        Some(p) => Ok(Password::new(p.as_bytes().to_vec())),
        None => bail!("no password given: set RESTIC_PASSWORD (in the environment or the secret), RESTIC_PASSWORD_FILE or --password-file"),
    }
}

impl Settings {
    /// The storage for this location; `create` makes the directory or bucket (init).
    pub async fn operator(&self, create: bool) -> Result<opendal::Operator> {
        self.conn
            .operator(create)
            .await
            .map_err(|e| self.explain(e))
    }

    /// Says what a refused storage request means: the server's code, and whether the keys
    /// or their policy stand in the way. The access key id is named; the secret never.
    pub fn explain(&self, e: impl Into<OpenError>) -> anyhow::Error {
        let e = match e.into() {
            OpenError::Repository(e) => e,
            other => return other.into(),
        };
        if let hoard_core::Error::RepositoryNotFound(_) = e {
            return hoard_core::Error::RepositoryNotFound(self.conn.location.to_string()).into();
        }
        let denied = e
            .storage_error()
            .is_some_and(|s| s.kind() == opendal::ErrorKind::PermissionDenied);
        match (&self.conn.location, &e) {
            (Location::S3(loc), hoard_core::Error::Storage { op, path, source }) if denied => {
                let who = S3Config::from_secrets(loc.clone(), &self.conn.secrets)
                    .map(|c| c.credentials.holder())
                    .unwrap_or_default();
                // OpenDAL's message carries the whole response; its error code is what matters.
                match server_code(&source.to_string()) {
                    Some(code @ ("AccessDenied" | "AllAccessDisabled")) => anyhow!(
                        "the S3 server refused {op} of {path:?} in {loc} ({code}): {who} may not do that, by its policy (read-only keys can restore, dump and list with --no-lock)"
                    ),
                    code => anyhow!(
                        "the S3 server refused {who} for {loc} ({op} of {path:?} got HTTP 403{}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                        code.map(|c| format!(", {c}")).unwrap_or_default()
                    ),
                }
            }
            _ => e.into(),
        }
    }
}

/// The S3 error code in an OpenDAL error's text (`code: "AccessDenied"`, or `<Code>…</Code>`).
fn server_code(text: &str) -> Option<&str> {
    let after = |marker: &str, end: char| {
        let start = text.find(marker)? + marker.len();
        let len = text[start..].find(end)?;
        Some(&text[start..start + len])
    };
    after("code: \"", '"')
        .or_else(|| after("<Code>", '<'))
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
}

/// Any command's error, with refused storage requests explained as [`Settings::explain`]
/// does (settings that cannot be read leave the error as it is).
pub fn explain_storage(g: &GlobalArgs, e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<hoard_core::Error>() {
        Ok(core) => match settings(g) {
            Ok(s) => s.explain(core),
            Err(_) => core.into(),
        },
        Err(other) => other,
    }
}

/// How commands take repository locks: `--retry-lock` sets how long to wait, `--no-lock` lets
/// read-only commands run without one.
fn lock_options(g: &GlobalArgs) -> hoard_core::LockOptions {
    hoard_core::LockOptions {
        wait: g.retry_lock.unwrap_or_default(),
        no_lock: g.no_lock,
        ..Default::default()
    }
}

pub async fn open(g: &GlobalArgs) -> Result<Repository> {
    open_settings(g, settings(g)?).await
}

/// Opens the repository without the metadata cache: `check` must see what storage holds, not
/// an intact copy of a file that storage has damaged.
pub async fn open_uncached(g: &GlobalArgs) -> Result<Repository> {
    let mut s = settings(g)?;
    s.conn.cache_dir = None;
    open_settings(g, s).await
}

async fn open_settings(g: &GlobalArgs, s: Settings) -> Result<Repository> {
    let pw = password(g, &s.conn.secrets)?;
    let (repo, _) = s
        .conn
        .open(&pw.0, OpenMode::Existing)
        .await
        .map_err(|e| s.explain(e))?;
    Ok(repo.with_lock_options(lock_options(g)))
}

/// Opens the repository; with `--crd`, creates bucket and repository first when absent, as
/// Stash does on the first backup (never re-initialising an existing one).
pub async fn open_for_backup(g: &GlobalArgs) -> Result<Repository> {
    let s = settings(g)?;
    if !s.from_crd {
        return open(g).await;
    }
    let pw = password(g, &s.conn.secrets)?;
    let mode = OpenMode::CreateIfAbsent(hoard_core::InitOptions::default());
    let (repo, created) = s.conn.open(&pw.0, mode).await.map_err(|e| s.explain(e))?;
    if created {
        tracing::info!(
            "initialised repository {} at {}",
            repo.config().id.short(),
            s.conn.location
        );
    }
    Ok(repo.with_lock_options(lock_options(g)))
}

/// A password that is wiped from memory when dropped and never printed.
mod secret {
    pub struct Password(pub zeroize::Zeroizing<Vec<u8>>);

    impl Password {
        pub fn new(bytes: Vec<u8>) -> Self {
            Password(zeroize::Zeroizing::new(bytes))
        }
    }

    impl std::fmt::Debug for Password {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Password(..)")
        }
    }
}

/// The snapshots named by `specs` (ids, prefixes, `latest`), or every snapshot when none is
/// named, that pass `filter`: how tag, copy, rewrite, find and mount choose.
pub async fn select_snapshots(
    r: &Repository,
    specs: &[String],
    filter: &crate::args::SnapshotFilter,
) -> Result<Vec<hoard_core::SnapshotEntry>> {
    let chosen = if specs.is_empty() {
        r.snapshots().await?
    } else {
        let mut v = Vec::new();
        for spec in specs {
            v.push(r.find_snapshot(spec).await?);
        }
        v
    };
    Ok(chosen
        .into_iter()
        .filter(|s| {
            filter
                .host
                .as_ref()
                .is_none_or(|h| &s.snapshot.hostname == h)
        })
        .filter(|s| filter.tag.iter().all(|t| s.snapshot.tags.contains(t)))
        .filter(|s| filter.path.iter().all(|p| s.snapshot.paths.contains(p)))
        .collect())
}
