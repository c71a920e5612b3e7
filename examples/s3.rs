//! Back up into an S3 repository over TLS with a private CA, through the library API.
//!
//! `cargo run --example s3` starts the in-process test S3 server (SigV4, TLS with a generated
//! CA) and uses it the way a program uses MinIO: the CA PEM goes where CA_CERT_DATA would.
//! Against a real server, build the `S3Config` from `hoard::s3::Secrets::from_env()` instead.

use std::sync::Arc;

use hoard::s3::{connect, BucketMode, Credentials, S3Config, S3Location};
use hoard::{backup, restore, BackupOptions, InitOptions, NoProgress, Repository, RestoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let server = hoard_testkit::S3Server::https()?;
    let location = S3Location::parse(&format!("{}/backups/example", server.endpoint))?;
    let mut cfg = S3Config::new(
        location,
        Credentials::Static {
            access_key_id: hoard_testkit::ACCESS_KEY.into(),
            secret_access_key: hoard_testkit::SECRET_KEY.to_string().into(),
            session_token: None,
        },
    );
    cfg.ca_pem = server.ca_pem.clone();

    // init creates the bucket (us-east-1) when it is missing.
    let repo = Repository::init(
        connect(&cfg, BucketMode::Create).await?,
        b"example password",
        InitOptions::default(),
    )
    .await?;
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let opts = BackupOptions {
        paths: vec![source],
        ..Default::default()
    };
    let done = backup(&repo, opts, Arc::new(NoProgress)).await?;
    println!(
        "snapshot {} stored at {}",
        done.snapshot.short_id(),
        cfg.location
    );
    for key in server.object_keys("backups") {
        println!("  {key}");
    }
    let target = tempfile::tempdir()?;
    let ropts = RestoreOptions {
        target: target.path().to_path_buf(),
        ..Default::default()
    };
    let s = restore(&repo, &done.snapshot, &ropts, Arc::new(NoProgress)).await?;
    println!("restored {} files", s.files_restored);
    Ok(())
}
