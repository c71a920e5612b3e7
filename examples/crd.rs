//! What a Kubernetes operator does with hoard: read a Stash `Repository` manifest and the
//! Secret it names, open (or on first use create) the repository, and back up.
//!
//! `cargo run --example crd` runs it against the in-process S3 test server over TLS; the
//! Secret carries CA_CERT_DATA exactly as it would for a MinIO with a private CA.

use std::sync::Arc;

use hoard::crd::{open, parse_crd, select_secret};
use hoard::{backup, BackupOptions, InitOptions, NoProgress};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let server = hoard_testkit::S3Server::https()?;
    let ca: String = server
        .ca_pem
        .clone()
        .unwrap_or_default()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let manifests = format!(
        "apiVersion: stash.appscode.com/v1alpha1
kind: Repository
metadata:
  name: app-backup
spec:
  backend:
    s3:
      endpoint: {endpoint}
      bucket: stash-backups
      prefix: demo/app
    storageSecretName: s3-creds
---
apiVersion: v1
kind: Secret
metadata:
  name: s3-creds
stringData:
  RESTIC_PASSWORD: example password
  AWS_ACCESS_KEY_ID: {ak}
  AWS_SECRET_ACCESS_KEY: {sk}
  CA_CERT_DATA: |
{ca}",
        endpoint = server.endpoint,
        ak = hoard_testkit::ACCESS_KEY,
        sk = hoard_testkit::SECRET_KEY,
    );
    let crd = parse_crd(&manifests)?;
    let secret = select_secret(&crd.repository, &crd.secrets)?.ok_or("no Secret")?;
    let (repo, created) = open(&crd.repository, &secret, true, InitOptions::default()).await?;
    println!(
        "repository {} (created now: {created})",
        repo.config().id.short()
    );
    let opts = BackupOptions {
        paths: vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")],
        tags: vec![crd.repository.metadata.name.clone()],
        ..Default::default()
    };
    let done = backup(&repo, opts, Arc::new(NoProgress)).await?;
    println!(
        "snapshot {}: {} files",
        done.snapshot.short_id(),
        done.summary.total_files_processed
    );
    let (_, created) = open(&crd.repository, &secret, true, InitOptions::default()).await?;
    println!("second open reuses it (created now: {created})");
    Ok(())
}
