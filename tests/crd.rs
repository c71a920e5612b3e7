//! The Repository-CRD executor and sidecar behaviour, end to end: hoard driven only by a
//! Stash Repository manifest and a Secret (CA_CERT_DATA inside) against the S3 test server
//! over TLS; SIGTERM mid-backup; metrics and the JSON summary; the deploy/ manifests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use hoard_testkit::{S3Server, ACCESS_KEY, SECRET_KEY};

struct Cluster {
    server: S3Server,
    dir: tempfile::TempDir,
    repository: PathBuf,
    secret: PathBuf,
}

const PREFIX: &str = "demo/app";
const CRD_BUCKET: &str = "stash-backups";

impl Cluster {
    /// A Repository whose endpoint has no scheme (so https), and its Secret as a manifest.
    fn new(password: &str) -> Cluster {
        let server = S3Server::https().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let endpoint = server.endpoint.trim_start_matches("https://").to_string();
        let repository = dir.path().join("repository.yaml");
        fs::write(
            &repository,
            format!("apiVersion: stash.appscode.com/v1alpha1\nkind: Repository\nmetadata:\n  name: app\n  namespace: demo\nspec:\n  backend:\n    s3:\n      endpoint: {endpoint}\n      bucket: {CRD_BUCKET}\n      prefix: {PREFIX}\n    storageSecretName: s3-creds\n"),
        )
        .unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = dir.path().join("secret.yaml");
        fs::write(
            &secret,
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3-creds\ndata:\n  RESTIC_PASSWORD: {}\n  AWS_ACCESS_KEY_ID: {}\n  AWS_SECRET_ACCESS_KEY: {}\n  CA_CERT_DATA: {}\n",
                b64(password),
                b64(ACCESS_KEY),
                b64(SECRET_KEY),
                b64(server.ca_pem.as_deref().unwrap())
            ),
        )
        .unwrap();
        Cluster {
            server,
            dir,
            repository,
            secret,
        }
    }

    fn hoard(&self, secret: &Path) -> Command {
        let mut c = bare();
        c.arg("--crd")
            .arg(&self.repository)
            .arg("--secret")
            .arg(secret);
        c
    }

    /// `--json backup SRC` with this Secret; returns the summary line.
    fn backup(&self, secret: &Path, src: &Path) -> serde_json::Value {
        let out = self
            .hoard(secret)
            .args(["--json", "backup"])
            .arg(src)
            .output()
            .unwrap();
        assert_ok(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
    }

    fn snapshot_count(&self, secret: &Path) -> usize {
        let out = self
            .hoard(secret)
            .args(["--json", "snapshots"])
            .output()
            .unwrap();
        assert_ok(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    }

    /// Restores the latest snapshot and compares it with `src`.
    fn restore_and_compare(&self, src: &Path) {
        let target = self.dir.path().join("restored");
        assert_ok(
            &self
                .hoard(&self.secret)
                .args(["restore", "latest", "--target"])
                .arg(&target)
                .output()
                .unwrap(),
        );
        assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
    }

    /// `check --read-data` through the manifests finds nothing wrong.
    fn assert_check_clean(&self) {
        let out = self
            .hoard(&self.secret)
            .args(["check", "--read-data"])
            .output()
            .unwrap();
        assert_ok(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
    }

    fn config_bytes(&self) -> Vec<u8> {
        fs::read(
            self.server
                .root
                .join(CRD_BUCKET)
                .join(PREFIX)
                .join("config"),
        )
        .unwrap()
    }
}

fn source(dir: &Path) -> PathBuf {
    let src = dir.join("data");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("index.html"), b"<h1>hello</h1>").unwrap();
    fs::write(src.join("sub/blob.bin"), random_bytes(300_000, 21)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    src
}

#[test]
fn manifests_alone_create_bucket_and_repository_then_reuse_them() {
    let c = Cluster::new("pod password");
    let src = source(c.dir.path());
    assert!(!c.server.root.join(CRD_BUCKET).exists());
    c.backup(&c.secret, &src);
    let config = c.config_bytes();
    assert!(c
        .server
        .object_keys(CRD_BUCKET)
        .iter()
        .all(|k| k.starts_with("demo/app/")));

    // Second backup: same bucket, same repository (config untouched), nothing new to store.
    let summary = c.backup(&c.secret, &src);
    assert_eq!(summary["files_unmodified"], 3);
    assert_eq!(summary["data_blobs"], 0);
    assert_eq!(c.config_bytes(), config);

    c.restore_and_compare(&src);

    // The same Secret mounted as a directory.
    let mounted = c.dir.path().join("secret-dir");
    fs::create_dir(&mounted).unwrap();
    fs::write(mounted.join("RESTIC_PASSWORD"), "pod password").unwrap();
    fs::write(mounted.join("AWS_ACCESS_KEY_ID"), ACCESS_KEY).unwrap();
    fs::write(mounted.join("AWS_SECRET_ACCESS_KEY"), SECRET_KEY).unwrap();
    fs::write(
        mounted.join("CA_CERT_DATA"),
        c.server.ca_pem.as_deref().unwrap(),
    )
    .unwrap();
    c.backup(&mounted, &src);
    assert_eq!(c.snapshot_count(&mounted), 3);

    // A wrong password on the existing repository is exit 12, never a new repository.
    fs::write(mounted.join("RESTIC_PASSWORD"), "another password").unwrap();
    let out = c.hoard(&mounted).arg("backup").arg(&src).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.config_bytes(), config);
}

#[test]
fn secret_name_and_backend_kind_are_checked() {
    let c = Cluster::new("pw");
    let renamed = c.dir.path().join("other.yaml");
    fs::write(
        &renamed,
        fs::read_to_string(&c.secret)
            .unwrap()
            .replace("name: s3-creds", "name: someone-else"),
    )
    .unwrap();
    let out = c.hoard(&renamed).arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("s3-creds") && e.contains("someone-else"), "{e}");

    let gcs = c.dir.path().join("gcs.yaml");
    fs::write(&gcs, "apiVersion: stash.appscode.com/v1alpha1\nkind: Repository\nmetadata: {name: g}\nspec:\n  backend:\n    gcs: {bucket: b, prefix: p}\n    storageSecretName: s3-creds\n").unwrap();
    let out = bare()
        .arg("--crd")
        .arg(&gcs)
        .arg("--secret")
        .arg(&c.secret)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("gcs") && e.contains("s3, local"), "{e}");
}

#[test]
fn sigterm_mid_backup_exits_130_and_keeps_uploaded_data_usable() {
    let c = Cluster::new("pw");
    let src = c.dir.path().join("big");
    fs::create_dir(&src).unwrap();
    let total = 160 * 1024 * 1024;
    fs::write(src.join("large.bin"), random_bytes(total, 77)).unwrap();
    let mut child = c
        .hoard(&c.secret)
        .arg("backup")
        .arg(&src)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until at least one pack has landed, then stop the pod.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !c
        .server
        .object_keys(CRD_BUCKET)
        .iter()
        .any(|k| k.contains("/data/"))
    {
        assert!(Instant::now() < deadline, "no pack uploaded in time");
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        c.server
            .object_keys(CRD_BUCKET)
            .iter()
            .any(|k| k.contains("/index/")),
        "uploaded packs were indexed"
    );
    assert!(
        !c.server
            .object_keys(CRD_BUCKET)
            .iter()
            .any(|k| k.contains("/locks/")),
        "the lock was released"
    );
    c.assert_check_clean();
    assert_eq!(c.snapshot_count(&c.secret), 0);

    // The next backup reuses what was uploaded and completes.
    let summary = c.backup(&c.secret, &src);
    assert!(
        (summary["data_added"].as_u64().unwrap() as usize) < total,
        "{summary}"
    );
    c.restore_and_compare(&src);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_file_and_json_summary_carry_the_numbers() {
    let c = Cluster::new("pw");
    let src = source(c.dir.path());
    let metrics = c.dir.path().join("metrics/hoard.prom");
    fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let out = c
        .hoard(&c.secret)
        .args(["--json", "--metrics-file"])
        .arg(&metrics)
        .arg("backup")
        .arg(&src)
        .output()
        .unwrap();
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let bytes = 14 + 300_000;
    assert_eq!(summary["files_new"], 3);
    assert_eq!(summary["total_files_processed"], 3);
    assert_eq!(summary["total_bytes_processed"], bytes);
    assert!(summary["snapshot_id"].as_str().unwrap().len() == 64);
    assert!(
        stdout
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "stdout is JSON lines only"
    );

    let text = fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("repository=\"s3:https://"), "{text}");
    assert_eq!(metric(&text, "hoard_backup_success"), 1.0);
    assert_eq!(metric(&text, "hoard_backup_files_new"), 3.0);
    assert_eq!(metric(&text, "hoard_backup_bytes_processed"), bytes as f64);
    assert_eq!(
        metric(&text, "hoard_backup_bytes_added"),
        summary["data_added"].as_f64().unwrap()
    );
    assert_eq!(metric(&text, "hoard_repository_snapshots"), 1.0);
    assert!(metric(&text, "hoard_backup_last_run_timestamp_seconds") > 1.7e9);
    assert!(!fs::read_dir(metrics.parent().unwrap()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));

    // A failed run says so.
    let wrong = c.dir.path().join("wrong.yaml");
    let b64 = base64::engine::general_purpose::STANDARD.encode("pw");
    fs::write(
        &wrong,
        fs::read_to_string(&c.secret).unwrap().replace(
            &format!("RESTIC_PASSWORD: {b64}"),
            "RESTIC_PASSWORD: bm9wZQ==",
        ),
    )
    .unwrap();
    let out = c
        .hoard(&wrong)
        .arg("--metrics-file")
        .arg(&metrics)
        .arg("backup")
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert_eq!(
        metric(
            &fs::read_to_string(&metrics).unwrap(),
            "hoard_backup_success"
        ),
        0.0
    );
}

#[test]
fn deploy_manifests_parse_with_the_projects_loader() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let crd = hoard::crd::parse_crd(&fs::read_to_string(deploy.join("repository.yaml")).unwrap())
        .unwrap();
    assert!(crd.repository.target().is_ok());
    let secret = hoard::s3::Secrets::from_path(&deploy.join("secret.yaml")).unwrap();
    for k in [
        "RESTIC_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "CA_CERT_DATA",
    ] {
        assert!(secret.get(k).is_some(), "{k}");
    }
    assert_eq!(
        secret.name.as_deref(),
        crd.repository.spec.backend.storage_secret_name.as_deref()
    );
    for f in ["sidecar-deployment.yaml", "cronjob.yaml"] {
        let text = fs::read_to_string(deploy.join(f)).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert!(doc.get("kind").is_some(), "{f}");
        assert!(text.contains("hoard --crd"), "{f}");
    }
    assert!(fs::read_to_string(deploy.join("Dockerfile"))
        .unwrap()
        .contains("USER 65532"));
}

/// The CronJob's script, run line by line against the test server with the in-cluster paths
/// replaced: backup, then forget with prune, on two nights.
#[test]
fn cronjob_commands_run_against_the_repository() {
    let c = Cluster::new("pw");
    let src = source(c.dir.path());
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(deploy.join("cronjob.yaml")).unwrap()).unwrap();
    let script = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("hoard "))
        .collect();
    assert_eq!(lines.len(), 2, "{script}");
    assert!(lines[1].contains("forget") && lines[1].contains("--prune"));
    for night in 0..2 {
        fs::write(src.join("nightly.txt"), format!("night {night}")).unwrap();
        for line in &lines {
            let mut cmd = bare();
            for word in line.split_whitespace().skip(1) {
                match word {
                    "/etc/hoard/repository.yaml" => cmd.arg(&c.repository),
                    "/etc/hoard/secret" => cmd.arg(&c.secret),
                    "/data" => cmd.arg(&src),
                    w => cmd.arg(w),
                };
            }
            let out = cmd.output().unwrap();
            assert_ok(&out);
        }
    }
    c.assert_check_clean();
}
