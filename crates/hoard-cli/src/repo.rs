//! From flags, environment and secrets to an opened repository: the one place where missing or
//! conflicting settings become a clear message.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hoard_core::Repository;
use hoard_s3::secrets::{CA_CERT_DATA, RESTIC_PASSWORD};
use hoard_s3::{BucketMode, S3Config, S3Location, Secrets};
use secret::Password;

use crate::args::GlobalArgs;

/// Where a repository lives, as given by `-r` or `RESTIC_REPOSITORY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(l) => write!(f, "{l}"),
        }
    }
}

pub fn parse_location(s: &str) -> Result<Location> {
    if let Some(rest) = s.strip_prefix("local:") {
        return Ok(Location::Local(PathBuf::from(rest)));
    }
    if let Some(rest) = s.strip_prefix("s3:") {
        return Ok(Location::S3(S3Location::parse(rest)?));
    }
    if let Some((scheme, _)) = s.split_once(':') {
        if !scheme.contains('/') && scheme.len() > 1 {
            bail!("repository {s:?}: the {scheme:?} backend is not supported (use a local path, local:/path or s3:host/bucket/prefix)");
        }
    }
    if s.is_empty() {
        bail!("empty repository location");
    }
    Ok(Location::Local(PathBuf::from(s)))
}

/// Validated settings: location, secrets and backend options.
pub struct Settings {
    pub location: Location,
    pub secrets: Secrets,
    /// Region from a Repository manifest.
    region: Option<String>,
    /// The location came from a Repository manifest (`--crd`).
    pub from_crd: bool,
    options: Vec<(String, String)>,
    cacert: Vec<PathBuf>,
}

/// Environment first, then `--secret` on top.
pub fn secrets(g: &GlobalArgs) -> Result<Secrets> {
    let mut s = Secrets::from_env();
    if let Some(p) = &g.secret {
        s.overlay(Secrets::from_path(p)?);
    }
    Ok(s)
}

/// Location, region and secrets from a Repository manifest and the Secret it names.
fn crd_settings(
    g: &GlobalArgs,
    path: &std::path::Path,
) -> Result<(Location, Option<String>, Secrets)> {
    use hoard_s3::crd::{parse_crd, select_secret, Target};
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
    Ok(match crd.repository.target()? {
        Target::S3 { location, region } => (Location::S3(location), Some(region), secrets),
        Target::Local(p) => (Location::Local(p), None, secrets),
    })
}

pub fn settings(g: &GlobalArgs) -> Result<Settings> {
    let (location, region, secrets) = match &g.crd {
        Some(path) => crd_settings(g, path)?,
        None => {
            let secrets = secrets(g)?;
            let location = match (&g.repo, &secrets.bucket_info) {
                (Some(r), _) => parse_location(r)?,
                (None, Some(info)) => {
                    Location::S3(S3Location::from_parts(&info.endpoint, &info.bucket, "")?)
                }
                (None, None) => bail!(
                    "no repository given: use -r/--repo, set RESTIC_REPOSITORY, or give --crd"
                ),
            };
            (location, None, secrets)
        }
    };
    let mut options = Vec::new();
    for o in &g.options {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("option {o:?} is not KEY=VALUE"))?;
        options.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Settings {
        location,
        secrets,
        region,
        from_crd: g.crd.is_some(),
        options,
        cacert: g.cacert.clone(),
    })
}

/// The password from `--password-file`/`RESTIC_PASSWORD_FILE`, else RESTIC_PASSWORD from the
/// secret or the environment. Never prompts: a sidecar must not hang waiting for input.
pub fn password(g: &GlobalArgs, secrets: &Secrets) -> Result<Password> {
    if let Some(f) = &g.password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        let pw = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if pw.is_empty() {
            bail!("the password file {} is empty", f.display());
        }
        return Ok(Password::new(pw.as_bytes().to_vec()));
    }
    match secrets.get(RESTIC_PASSWORD) {
        Some(p) => Ok(Password::new(p.as_bytes().to_vec())),
        None => bail!("no password given: set RESTIC_PASSWORD (in the environment or the secret), RESTIC_PASSWORD_FILE or --password-file"),
    }
}

impl Settings {
    fn s3_config(&self, loc: &S3Location) -> Result<S3Config> {
        let mut cfg = S3Config::from_secrets(loc.clone(), &self.secrets)?;
        let mut pem = cfg.ca_pem.take().unwrap_or_default();
        for f in &self.cacert {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --cacert {}", f.display()))?;
            pem.push('\n');
            pem.push_str(&text);
        }
        if !pem.trim().is_empty() {
            cfg.ca_pem = Some(pem);
        } else if self.secrets.get(CA_CERT_DATA).is_some() || !self.cacert.is_empty() {
            bail!("CA_CERT_DATA is empty");
        }
        if cfg.region.is_none() {
            cfg.region = self.region.clone();
        }
        if cfg.region.is_none() {
            cfg.region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        }
        for (k, v) in &self.options {
            let bad = |e: &dyn std::fmt::Display| anyhow!("option {k}={v}: {e}");
            match k.as_str() {
                "s3.bucket-lookup" => cfg.bucket_lookup = v.parse()?,
                "s3.region" => cfg.region = Some(v.clone()),
                "s3.connections" => cfg.max_connections = v.parse::<usize>().map_err(|e| bad(&e))?.max(1),
                "s3.timeout" => cfg.request_timeout = Duration::from_secs_f64(v.parse::<f64>().map_err(|e| bad(&e))?.max(0.1)),
                "s3.connect-timeout" => cfg.connect_timeout = Duration::from_secs_f64(v.parse::<f64>().map_err(|e| bad(&e))?.max(0.1)),
                "s3.retries" => cfg.retries = v.parse().map_err(|e| bad(&e))?,
                other => bail!("unknown option {other:?} (known: s3.bucket-lookup, s3.region, s3.connections, s3.timeout, s3.connect-timeout, s3.retries)"),
            }
        }
        Ok(cfg)
    }

    /// The storage for this location; `create` makes the directory or bucket (init).
    pub async fn operator(&self, create: bool) -> Result<opendal::Operator> {
        match &self.location {
            Location::Local(p) => {
                if let Some((k, _)) = self.options.first() {
                    bail!("option {k} does not apply to a local repository");
                }
                Ok(hoard_core::repository::local_operator(p, create)?)
            }
            Location::S3(loc) => {
                let cfg = self.s3_config(loc)?;
                let mode = if create {
                    BucketMode::Create
                } else {
                    BucketMode::MustExist
                };
                match hoard_s3::connect(&cfg, mode).await {
                    Err(hoard_s3::S3Error::NoSuchBucket { .. }) => {
                        Err(hoard_core::Error::RepositoryNotFound(loc.to_string()).into())
                    }
                    other => Ok(other?),
                }
            }
        }
    }

    /// Names the access key when the server refuses it; the secret key is never shown.
    pub fn explain(&self, e: hoard_core::Error) -> anyhow::Error {
        if let hoard_core::Error::RepositoryNotFound(_) = e {
            return hoard_core::Error::RepositoryNotFound(self.location.to_string()).into();
        }
        let denied = e
            .storage_error()
            .is_some_and(|s| s.kind() == opendal::ErrorKind::PermissionDenied);
        match (&self.location, &e) {
            (Location::S3(loc), hoard_core::Error::Storage { op, path, .. }) if denied => {
                let key = S3Config::from_secrets(loc.clone(), &self.secrets)
                    .map(|c| c.credentials.access_key_id().to_string())
                    .unwrap_or_default();
                // OpenDAL's message carries the whole response; the operation is enough here.
                anyhow!(
                    "the S3 server refused access key id {key:?} for {loc} ({op} of {path:?} got HTTP 403): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                )
            }
            _ => e.into(),
        }
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
    let s = settings(g)?;
    let pw = password(g, &s.secrets)?;
    let op = s.operator(false).await?;
    Repository::open(op, &pw.0)
        .await
        .map(|r| r.with_lock_options(lock_options(g)))
        .map_err(|e| s.explain(e))
}

/// Opens the repository; with `--crd`, creates bucket and repository first when absent, as
/// Stash does on the first backup (never re-initialising an existing one).
pub async fn open_for_backup(g: &GlobalArgs) -> Result<Repository> {
    let s = settings(g)?;
    if !s.from_crd {
        return open(g).await;
    }
    let pw = password(g, &s.secrets)?;
    let op = s.operator(true).await?;
    let (repo, created) = Repository::open_or_init(op, &pw.0, hoard_core::InitOptions::default())
        .await
        .map_err(|e| s.explain(e))?;
    if created {
        tracing::info!(
            "initialised repository {} at {}",
            repo.config().id.short(),
            s.location
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("/tmp/r").unwrap(),
            Location::Local("/tmp/r".into())
        );
        assert_eq!(
            parse_location("local:/tmp/r").unwrap(),
            Location::Local("/tmp/r".into())
        );
        assert_eq!(
            parse_location("rel/dir").unwrap(),
            Location::Local("rel/dir".into())
        );
        assert!(matches!(
            parse_location("s3:http://127.0.0.1:9000/bkt/p").unwrap(),
            Location::S3(_)
        ));
        assert!(parse_location("sftp:host:/x").is_err());
        assert!(parse_location("s3:host").is_err());
    }
}
