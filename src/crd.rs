//! Driving backups from a Stash-style `Repository` manifest and its Secret, as an operator
//! does, without the CLI. The work is [`hoard_s3::Connection`]'s, the same path the CLI's
//! `--crd` takes.

use hoard_core::{InitOptions, Repository};
use hoard_s3::{Connection, OpenMode, Secrets};

pub use hoard_s3::crd::{parse_crd, select_secret, CrdFile, RepositoryManifest};
pub use hoard_s3::OpenError as CrdError;

/// Opens the repository `repository` describes with the credentials in `secrets` (the
/// password is their `RESTIC_PASSWORD`). With `init_if_absent`, a missing bucket and
/// repository are created first (never an existing repository: a wrong password stays
/// [`hoard_core::Error::WrongPassword`]). Returns whether the repository was created.
pub async fn open(
    repository: &RepositoryManifest,
    secrets: &Secrets,
    init_if_absent: bool,
    init: InitOptions,
) -> Result<(Repository, bool), CrdError> {
    let conn = Connection::from_manifest(repository, secrets.clone())?;
    let password = conn.password()?;
    let mode = if init_if_absent {
        OpenMode::CreateIfAbsent(init)
    } else {
        OpenMode::Existing
    };
    conn.open(&password, mode).await
}
