//! From configuration to an opened [`Repository`]: the one path that the CLI, the
//! Repository-manifest executor and library users share, so that a region, a `-o` option or
//! an extra CA means the same thing wherever it is given.
//!
//! Region, first found wins: the `s3.region` option; the Repository manifest's
//! `spec.backend.s3.region`; the COSI BucketInfo's region; `AWS_REGION`;
//! `AWS_DEFAULT_REGION`; then the bucket's own region for AWS endpoints, else `us-east-1`.

use std::path::PathBuf;
use std::time::Duration;

use hoard_core::{InitOptions, OpenOptions, Repository};
use opendal::Operator;
use zeroize::Zeroizing;

use crate::crd::{RepositoryManifest, Target};
use crate::error::S3Error;
use crate::location::S3Location;
use crate::secrets::{Secrets, CA_CERT_DATA, RESTIC_PASSWORD};
use crate::{connect, BucketMode, S3Config};

/// Where a repository lives, as given by `-r`, `RESTIC_REPOSITORY` or a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket and prefix.
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

impl std::str::FromStr for Location {
    type Err = S3Error;

    /// restic's forms: `/path`, `local:/path`, `s3:…`; other backends are refused by name.
    fn from_str(s: &str) -> Result<Self, S3Error> {
        if let Some(rest) = s.strip_prefix("local:") {
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            return Ok(Location::S3(S3Location::parse(rest)?));
        }
        if let Some((scheme, _)) = s.split_once(':') {
            if !scheme.contains('/') && scheme.len() > 1 {
                return Err(S3Error::Config(format!("repository {s:?}: the {scheme:?} backend is not supported (use a local path, local:/path or s3:host/bucket/prefix)")));
            }
        }
        if s.is_empty() {
            return Err(S3Error::Config("empty repository location".into()));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }
}

/// What [`Connection::open`] does when there is no repository yet.
#[derive(Debug, Clone)]
pub enum OpenMode {
    /// A missing repository is [`hoard_core::Error::RepositoryNotFound`].
    Existing,
    /// Create bucket and repository when absent (as Stash does on the first backup); an
    /// existing repository is never re-initialised.
    CreateIfAbsent(InitOptions),
}

/// Errors on the way to an opened repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    /// Configuration or connection.
    Config(#[from] S3Error),
    #[error(transparent)]
    /// The repository itself (missing, wrong password, damaged, …).
    Repository(#[from] hoard_core::Error),
    #[error("no password given: set RESTIC_PASSWORD (in the environment or the Secret)")]
    /// The secrets hold no `RESTIC_PASSWORD`.
    MissingPassword,
}

/// Everything needed to reach one repository.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Where the repository lives.
    pub location: Location,
    /// Password, credentials and CA.
    pub secrets: Secrets,
    /// The region a Repository manifest names.
    pub region: Option<String>,
    /// Backend options (`s3.region`, `s3.bucket-lookup`, `s3.connections`, `s3.timeout`,
    /// `s3.connect-timeout`, `s3.retries`), applied last.
    pub options: Vec<(String, String)>,
    /// PEM text of CAs to trust besides `CA_CERT_DATA` (the CLI's `--cacert` files).
    pub extra_ca_pem: Option<String>,
    /// Where S3 repositories keep their metadata cache (index files, snapshots, tree packs);
    /// `None` for none. Local repositories are never cached: their files are as near as the
    /// cache would be.
    pub cache_dir: Option<PathBuf>,
}

impl Connection {
    /// A connection with no region, options or extra CAs.
    pub fn new(location: Location, secrets: Secrets) -> Connection {
        Connection {
            location,
            secrets,
            region: None,
            options: Vec::new(),
            extra_ca_pem: None,
            cache_dir: None,
        }
    }

    /// The storage a Repository manifest describes, with the Secret's values.
    pub fn from_manifest(
        manifest: &RepositoryManifest,
        secrets: Secrets,
    ) -> Result<Connection, S3Error> {
        let mut c = match manifest.target()? {
            Target::S3 { location, .. } => Connection::new(Location::S3(location), secrets),
            Target::Local(p) => Connection::new(Location::Local(p), secrets),
        };
        c.region = manifest.explicit_region();
        Ok(c)
    }

    /// The S3 settings for `loc`: credentials and CA from the secrets, region and options as
    /// the module docs order them.
    pub fn s3_config(&self, loc: &S3Location) -> Result<S3Config, S3Error> {
        let mut cfg = S3Config::from_secrets(loc.clone(), &self.secrets)?;
        let mut pem = cfg.ca_pem.take().unwrap_or_default();
        if let Some(extra) = &self.extra_ca_pem {
            pem.push('\n');
            pem.push_str(extra);
        }
        if !pem.trim().is_empty() {
            cfg.ca_pem = Some(pem);
        } else if self.secrets.get(CA_CERT_DATA).is_some() || self.extra_ca_pem.is_some() {
            return Err(S3Error::Config("CA_CERT_DATA is empty".into()));
        }
        let bucket_info_region = cfg.region.take();
        cfg.region = self.region.clone().or(bucket_info_region).or_else(|| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        });
        for (k, v) in &self.options {
            let bad = |e: &dyn std::fmt::Display| S3Error::Config(format!("option {k}={v}: {e}"));
            let seconds = |v: &str| -> Result<Duration, S3Error> {
                let s: f64 = v.parse().map_err(|e| bad(&e))?;
                Ok(Duration::from_secs_f64(s.max(0.1)))
            };
            match k.as_str() {
                "s3.bucket-lookup" => cfg.bucket_lookup = v.parse()?,
                "s3.region" => cfg.region = Some(v.clone()),
                "s3.connections" => {
                    cfg.max_connections = v.parse::<usize>().map_err(|e| bad(&e))?.max(1)
                }
                "s3.timeout" => cfg.request_timeout = seconds(v)?,
                "s3.connect-timeout" => cfg.connect_timeout = seconds(v)?,
                "s3.retries" => cfg.retries = v.parse().map_err(|e| bad(&e))?,
                other => return Err(S3Error::Config(format!("unknown option {other:?} (known: s3.bucket-lookup, s3.region, s3.connections, s3.timeout, s3.connect-timeout, s3.retries)"))),
            }
        }
        Ok(cfg)
    }

    /// The storage for this location; `create` makes the directory or bucket (init).
    pub async fn operator(&self, create: bool) -> Result<Operator, OpenError> {
        match &self.location {
            Location::Local(p) => {
                if let Some((k, _)) = self.options.first() {
                    return Err(S3Error::Config(format!(
                        "option {k} does not apply to a local repository"
                    ))
                    .into());
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
                match connect(&cfg, mode).await {
                    Err(S3Error::NoSuchBucket { .. }) => {
                        Err(hoard_core::Error::RepositoryNotFound(loc.to_string()).into())
                    }
                    other => Ok(other?),
                }
            }
        }
    }

    /// `RESTIC_PASSWORD` from the secrets.
    pub fn password(&self) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        self.secrets
            .get(RESTIC_PASSWORD)
            .map(|p| Zeroizing::new(p.as_bytes().to_vec()))
            .ok_or(OpenError::MissingPassword)
    }

    /// How a repository here is opened: with the metadata cache on S3 (a local repository
    /// has nothing to gain from one).
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            cache_dir: match self.location {
                Location::S3(_) => self.cache_dir.clone(),
                Location::Local(_) => None,
            },
        }
    }

    /// Opens the repository with `password`; returns it and whether it was created now.
    pub async fn open(
        &self,
        password: &[u8],
        mode: OpenMode,
    ) -> Result<(Repository, bool), OpenError> {
        let opts = self.open_options();
        match mode {
            OpenMode::Existing => {
                let op = self.operator(false).await?;
                Ok((Repository::open_with(op, password, &opts).await?, false))
            }
            OpenMode::CreateIfAbsent(init) => {
                let op = self.operator(true).await?;
                Ok(Repository::open_or_init_with(op, password, init, &opts).await?)
            }
        }
    }
}

/// Opens the repository at `location` (`/path`, `local:/path`, `s3:…`) with the credentials
/// and the password (`RESTIC_PASSWORD`) in `secrets`; returns it and whether it was created.
pub async fn open(
    location: &str,
    secrets: &Secrets,
    mode: OpenMode,
) -> Result<(Repository, bool), OpenError> {
    let conn = Connection::new(location.parse()?, secrets.clone());
    let password = conn.password()?;
    conn.open(&password, mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let p = |s: &str| s.parse::<Location>();
        assert_eq!(p("/tmp/r").unwrap(), Location::Local("/tmp/r".into()));
        assert_eq!(p("local:/tmp/r").unwrap(), Location::Local("/tmp/r".into()));
        assert_eq!(p("rel/dir").unwrap(), Location::Local("rel/dir".into()));
        assert!(matches!(
            p("s3:http://127.0.0.1:9000/bkt/p").unwrap(),
            Location::S3(_)
        ));
        assert!(p("sftp:host:/x").is_err());
        assert!(p("s3:host").is_err());
    }

    #[test]
    fn region_order() {
        let loc = S3Location::from_parts("http://127.0.0.1:1", "bkt", "").unwrap();
        let mut secrets = Secrets::default();
        secrets.set("AWS_ACCESS_KEY_ID", "a".into());
        secrets.set("AWS_SECRET_ACCESS_KEY", "s".into());
        secrets.bucket_info = Some(crate::secrets::BucketInfo {
            region: Some("from-bucket-info".into()),
            ..Default::default()
        });
        let mut c = Connection::new(Location::S3(loc.clone()), secrets);
        let region = |c: &Connection| c.s3_config(&loc).unwrap().region;
        assert_eq!(region(&c).as_deref(), Some("from-bucket-info"));
        c.region = Some("from-manifest".into());
        assert_eq!(region(&c).as_deref(), Some("from-manifest"));
        c.options.push(("s3.region".into(), "from-option".into()));
        assert_eq!(region(&c).as_deref(), Some("from-option"));
        c.options.push(("s3.nope".into(), "1".into()));
        assert!(c
            .s3_config(&loc)
            .unwrap_err()
            .to_string()
            .contains("s3.nope"));
    }
}
