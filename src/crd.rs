//! Driving backups from a Stash-style `Repository` manifest and its Secret, as an operator
//! does, without the CLI.

use hoard_core::{InitOptions, Repository};
use hoard_s3::crd::Target;
use hoard_s3::secrets::RESTIC_PASSWORD;
use hoard_s3::{BucketMode, S3Config, S3Error, Secrets};

pub use hoard_s3::crd::{parse_crd, select_secret, CrdFile, RepositoryManifest};

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error(transparent)]
    Config(#[from] S3Error),
    #[error(transparent)]
    Repository(#[from] hoard_core::Error),
    #[error("the Secret has no RESTIC_PASSWORD")]
    MissingPassword,
}

/// Opens the repository `repository` describes with the credentials in `secrets`. With
/// `init_if_absent`, a missing bucket and repository are created first (never an existing
/// repository: a wrong password stays [`hoard_core::Error::WrongPassword`]). Returns whether
/// the repository was created.
pub async fn open(
    repository: &RepositoryManifest,
    secrets: &Secrets,
    init_if_absent: bool,
    init: InitOptions,
) -> Result<(Repository, bool), CrdError> {
    let password = secrets
        .get(RESTIC_PASSWORD)
        .ok_or(CrdError::MissingPassword)?
        .as_bytes()
        .to_vec();
    let password = zeroize::Zeroizing::new(password);
    let op = match repository.target()? {
        Target::Local(path) => hoard_core::repository::local_operator(&path, init_if_absent)?,
        Target::S3 { location, region } => {
            let mut cfg = S3Config::from_secrets(location, secrets)?;
            cfg.region = Some(region);
            let mode = if init_if_absent {
                BucketMode::Create
            } else {
                BucketMode::MustExist
            };
            match hoard_s3::connect(&cfg, mode).await {
                Err(S3Error::NoSuchBucket { .. }) => {
                    return Err(
                        hoard_core::Error::RepositoryNotFound(cfg.location.to_string()).into(),
                    )
                }
                other => other?,
            }
        }
    };
    if init_if_absent {
        Ok(Repository::open_or_init(op, &password, init).await?)
    } else {
        Ok((Repository::open(op, &password).await?, false))
    }
}
