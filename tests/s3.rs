//! S3 specifics, end to end against the in-process S3 server (SigV4-verifying, TLS with a CA
//! made by the test): bucket creation, prefixes, every secret source, and the failure cases
//! that must answer with one clear line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

mod common;

use std::fs;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use hoard_testkit::{S3Server, ACCESS_KEY, SECRET_KEY};

fn small_tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("a.txt"), b"hello s3").unwrap();
    fs::write(src.join("d/b.bin"), random_bytes(200_000, 11)).unwrap();
    src
}

#[test]
fn init_creates_the_bucket_and_every_object_lands_under_the_prefix() {
    let env = Env::s3_empty(S3Server::https().unwrap(), "deep/prefix");
    let server = env.server.as_ref().unwrap();
    assert!(!server.root.join(BUCKET).exists());
    let env = env.initialised();
    let server = env.server.as_ref().unwrap();
    assert!(server.root.join(BUCKET).is_dir(), "init created the bucket");
    let src = small_tree(&env);
    assert_ok(&env.hoard(&["backup", src.to_str().unwrap()]));
    let keys = server.object_keys(BUCKET);
    assert!(keys.iter().any(|k| k.starts_with("deep/prefix/data/")));
    assert!(
        keys.iter().all(|k| k.starts_with("deep/prefix/")),
        "{keys:?}"
    );
    let target = env.path("out");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    // A second init on the same prefix is refused; the bucket is reused for another prefix.
    assert_eq!(env.hoard(&["init"]).status.code(), Some(1));
    let mut other = env.cmd_for(&format!("s3:{}/{BUCKET}/other", server.endpoint));
    assert_ok(&other.arg("init").args(CHEAP_KDF).output().unwrap());
}

#[test]
fn plain_http_endpoint_works() {
    let env = Env::s3_empty(S3Server::http().unwrap(), "p").initialised();
    let src = small_tree(&env);
    assert_ok(&env.hoard(&["backup", src.to_str().unwrap()]));
    let target = env.path("out");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn two_prefixes_in_one_bucket_are_isolated() {
    let env = Env::s3_empty(S3Server::https().unwrap(), "one").initialised();
    let server = env.server.as_ref().unwrap();
    let two = format!("s3:{}/{BUCKET}/two", server.endpoint);
    assert_ok(
        &env.cmd_for(&two)
            .arg("init")
            .args(CHEAP_KDF)
            .output()
            .unwrap(),
    );
    let src = small_tree(&env);
    assert_ok(&env.hoard(&["backup", src.to_str().unwrap()]));
    let one_snaps = env.hoard_json(&["snapshots"]);
    let out = env
        .cmd_for(&two)
        .args(["--json", "snapshots"])
        .output()
        .unwrap();
    assert_ok(&out);
    let two_snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one_snaps.as_array().unwrap().len(), 1);
    assert_eq!(two_snaps.as_array().unwrap().len(), 0);
    let keys = server.object_keys(BUCKET);
    assert!(keys
        .iter()
        .filter(|k| k.starts_with("two/"))
        .all(|k| k.starts_with("two/keys/") || *k == "two/config"));
}

#[test]
fn secrets_from_a_directory_a_manifest_and_cosi_bucket_info() {
    let env = Env::s3();
    let server = env.server.as_ref().unwrap();
    let ca = server.ca_pem.clone().unwrap();
    let src = small_tree(&env);
    assert_ok(&env.hoard(&["backup", src.to_str().unwrap()]));

    // A mounted Secret: one file per key.
    let dir = env.path("secret-dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("RESTIC_PASSWORD"), format!("{PASSWORD}\n")).unwrap();
    fs::write(dir.join("AWS_ACCESS_KEY_ID"), ACCESS_KEY).unwrap();
    fs::write(dir.join("AWS_SECRET_ACCESS_KEY"), SECRET_KEY).unwrap();
    fs::write(dir.join("CA_CERT_DATA"), &ca).unwrap();
    let out = bare()
        .args([
            "-r",
            &env.repo,
            "--secret",
            dir.to_str().unwrap(),
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_ok(&out);

    // A Secret manifest: data (base64) and stringData.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let indented: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3-creds\ntype: Opaque\ndata:\n  RESTIC_PASSWORD: {}\n  AWS_ACCESS_KEY_ID: {}\n  AWS_SECRET_ACCESS_KEY: {}\nstringData:\n  CA_CERT_DATA: |\n{indented}",
        b64(PASSWORD),
        b64(ACCESS_KEY),
        b64(SECRET_KEY)
    );
    let mpath = env.path("secret.yaml");
    fs::write(&mpath, manifest).unwrap();
    let out = bare()
        .args([
            "-r",
            &env.repo,
            "--secret",
            mpath.to_str().unwrap(),
            "--json",
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // COSI BucketInfo names endpoint and bucket: no -r needed; the CA comes from --cacert.
    let info = serde_json::json!({
        "apiVersion": "objectstorage.k8s.io/v1alpha1",
        "kind": "BucketInfo",
        "metadata": {"name": "bc-1"},
        "spec": {"bucketName": "cosi-bucket", "authenticationType": "Key", "protocols": ["s3"],
                 "secretS3": {"endpoint": server.endpoint, "region": "us-east-1", "accessKeyID": ACCESS_KEY, "accessSecretKey": SECRET_KEY}}
    })
    .to_string();
    let ipath = env.path("bucketinfo.json");
    fs::write(&ipath, &info).unwrap();
    let capath = env.path("ca.pem");
    fs::write(&capath, &ca).unwrap();
    let cosi = |args: &[&str], secret: &std::path::Path| {
        bare()
            .env("RESTIC_PASSWORD", PASSWORD)
            .args([
                "--secret",
                secret.to_str().unwrap(),
                "--cacert",
                capath.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    assert_ok(&cosi(&init, &ipath));
    assert!(server.root.join("cosi-bucket/config").is_file());
    assert_ok(&cosi(&["backup", src.to_str().unwrap()], &ipath));

    // The same BucketInfo, base64-encoded under a Secret's BucketInfo key.
    let wrapped = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cosi"}, "data": {"BucketInfo": b64(&info)}});
    let wpath = env.path("cosi-secret.json");
    fs::write(&wpath, wrapped.to_string()).unwrap();
    let out = cosi(&["--json", "snapshots"], &wpath);
    assert_ok(&out);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn tls_and_credential_failures_are_one_clear_line() {
    let env = Env::s3();
    let one_line = |out: &std::process::Output| {
        let e = stderr(out);
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        e
    };

    let start = Instant::now();
    let out = env
        .cmd()
        .env_remove("CA_CERT_DATA")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = one_line(&out);
    assert!(
        e.contains("CA_CERT_DATA") && e.contains("not trusted"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "an untrusted certificate must not be retried"
    );

    for bad in [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let out = env
            .cmd()
            .env("CA_CERT_DATA", bad)
            .arg("snapshots")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(one_line(&out).contains("CA_CERT_DATA is not usable"));
    }

    let wrong_secret = "definitely-not-the-secret-key";
    let out = env
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", wrong_secret)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = one_line(&out);
    assert!(
        e.contains(ACCESS_KEY) && e.contains("AWS_SECRET_ACCESS_KEY") && !e.contains(wrong_secret),
        "{e}"
    );
    // The server really checks signatures: init with the wrong key cannot create a bucket.
    let fresh = format!(
        "s3:{}/other-bucket/x",
        env.server.as_ref().unwrap().endpoint
    );
    let out = env
        .cmd_for(&fresh)
        .env("AWS_SECRET_ACCESS_KEY", wrong_secret)
        .arg("init")
        .args(CHEAP_KDF)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = one_line(&out);
    assert!(e.contains(ACCESS_KEY) && !e.contains(wrong_secret), "{e}");

    let out = env
        .cmd()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("MINIO_ACCESS_KEY", ACCESS_KEY)
        .env("MINIO_SECRET_KEY", SECRET_KEY)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("AWS_ACCESS_KEY_ID"));

    let out = env
        .cmd()
        .env("RESTIC_PASSWORD", "wrong")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
}

#[test]
fn unreachable_endpoints_fail_fast() {
    let env = Env::empty();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let mut c = env.cmd_for(&format!("s3:http://127.0.0.1:{port}/bkt/p"));
    let out = c
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the S3 endpoint"),
        "{}",
        stderr(&out)
    );
    assert!(start.elapsed() < Duration::from_secs(5));

    // A server that accepts connections and never answers: the request timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let start = Instant::now();
    let mut c = env.cmd_for(&format!("s3:http://{addr}/bkt/p"));
    let out = c
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .args([
            "-o",
            "s3.timeout=1",
            "-o",
            "s3.connect-timeout=1",
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    drop(silent);
}

/// Hikube's Secret key `BucketInfo` exactly as its documentation shows it (no `apiVersion`,
/// no `kind`, an empty region), for a bucket provisioned with a per-bucket key.
fn hikube_bucket_info(endpoint: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"bc-8d2f","creationTimestamp":null}},"spec":{{"bucketName":"{bucket}","authenticationType":"KEY","secretS3":{{"endpoint":"{endpoint}","region":"","accessKeyID":"{ak}","accessSecretKey":"{sk}"}},"secretAzure":null,"protocols":["s3"]}}}}"#,
        bucket = hoard_testkit::SCOPED_BUCKET,
        ak = hoard_testkit::SCOPED_ACCESS_KEY,
        sk = hoard_testkit::SCOPED_SECRET_KEY,
    )
}

/// One line on stderr, returned.
fn single_line(out: &std::process::Output) -> String {
    let e = stderr(out);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    e
}

#[test]
fn hikube_bucket_info_as_documented_opens_its_provisioned_bucket() {
    let server = S3Server::https().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let info = hikube_bucket_info(&server.endpoint);
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("a.txt"), b"hello hikube").unwrap();
    fs::write(src.join("d/b.bin"), random_bytes(300_000, 5)).unwrap();
    let ca: String = server
        .ca_pem
        .as_deref()
        .unwrap()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();

    // A Secret manifest: BucketInfo base64 under data, password and CA under stringData. No
    // -r: the BucketInfo names endpoint and bucket.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&info);
    let manifest = dir.path().join("secret.yaml");
    fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: bucket-creds\ntype: Opaque\ndata:\n  BucketInfo: {b64}\nstringData:\n  RESTIC_PASSWORD: hikube pw\n  CA_CERT_DATA: |\n{ca}"),
    )
    .unwrap();
    let hoard = |secret: &std::path::Path, args: &[&str]| {
        bare()
            .arg("--secret")
            .arg(secret)
            .args(args)
            .output()
            .unwrap()
    };
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    assert_ok(&hoard(&manifest, &init));
    assert_ok(&hoard(&manifest, &["backup", "-q", src.to_str().unwrap()]));
    let out = dir.path().join("out");
    assert_ok(&hoard(
        &manifest,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    ));
    assert_same_tree(&src, &out.join(src.strip_prefix("/").unwrap()));
    let keys = server.object_keys(hoard_testkit::SCOPED_BUCKET);
    assert!(keys.iter().any(|k| k.starts_with("data/")), "{keys:?}");
    let buckets: Vec<String> = fs::read_dir(&server.root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(
        buckets,
        [hoard_testkit::SCOPED_BUCKET],
        "no bucket was created"
    );

    // A mounted Secret directory: one file per key, BucketInfo among them.
    let mounted = dir.path().join("mounted");
    fs::create_dir(&mounted).unwrap();
    fs::write(mounted.join("BucketInfo"), &info).unwrap();
    fs::write(mounted.join("RESTIC_PASSWORD"), "hikube pw\n").unwrap();
    fs::write(
        mounted.join("CA_CERT_DATA"),
        server.ca_pem.as_deref().unwrap(),
    )
    .unwrap();
    let listed = hoard(&mounted, &["--json", "snapshots"]);
    assert_ok(&listed);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn refused_requests_name_the_servers_reason() {
    let server = S3Server::https().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = server.ca_pem.clone().unwrap();
    let run = |repo: &str, ak: &str, sk: &str, token: Option<&str>, args: &[&str]| {
        let mut c = bare();
        c.env("RESTIC_PASSWORD", "pw")
            .env("AWS_ACCESS_KEY_ID", ak)
            .env("AWS_SECRET_ACCESS_KEY", sk)
            .env("CA_CERT_DATA", &ca)
            .args(["-r", repo])
            .args(args);
        if let Some(t) = token {
            c.env("AWS_SESSION_TOKEN", t);
        }
        c.output().unwrap()
    };
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    let (sk_ak, sk_sk) = (
        hoard_testkit::SCOPED_ACCESS_KEY,
        hoard_testkit::SCOPED_SECRET_KEY,
    );

    // A per-bucket key asked to create a bucket: it is the key's policy, not its keys.
    let missing = format!("s3:{}/not-provisioned/p", server.endpoint);
    let out = run(&missing, sk_ak, sk_sk, None, &init);
    assert_eq!(out.status.code(), Some(1));
    let e = single_line(&out);
    assert!(
        e.contains("may not create buckets")
            && e.contains("\"not-provisioned\"")
            && e.contains("s3:CreateBucket"),
        "{e}"
    );
    assert!(!e.contains(sk_sk));

    // The same key on somebody else's bucket: the server's AccessDenied, and what it means.
    fs::create_dir(server.root.join("somebody-else")).unwrap();
    let other = format!("s3:{}/somebody-else/p", server.endpoint);
    let out = run(&other, sk_ak, sk_sk, None, &["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    let e = single_line(&out);
    assert!(
        e.contains("AccessDenied") && e.contains("may not list") && e.contains(sk_ak),
        "{e}"
    );

    // Temporary credentials with a session token the server does not accept (expired,
    // or from other keys): InvalidToken, and what to do about it.
    let repo = format!("s3:{}/temp-bucket/p", server.endpoint);
    let (tk_ak, tk_sk) = (
        hoard_testkit::TEMPORARY_ACCESS_KEY,
        hoard_testkit::TEMPORARY_SECRET_KEY,
    );
    for token in [Some("stale-token"), None] {
        let out = run(&repo, tk_ak, tk_sk, token, &init);
        assert_eq!(out.status.code(), Some(1), "{token:?}");
        let e = single_line(&out);
        assert!(
            e.contains("InvalidToken") && e.contains("AWS_SESSION_TOKEN"),
            "{token:?}: {e}"
        );
        assert!(!e.contains("stale-token") && !e.contains(tk_sk), "{e}");
    }
    // With the right token the same keys work.
    let token = Some(hoard_testkit::SESSION_TOKEN);
    assert_ok(&run(&repo, tk_ak, tk_sk, token, &init));
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"temporary").unwrap();
    assert_ok(&run(
        &repo,
        tk_ak,
        tk_sk,
        token,
        &["backup", src.to_str().unwrap()],
    ));
}

#[test]
fn a_skewed_clock_is_named_with_what_to_do() {
    // libfaketime moves the clock of the hoard process alone; .ci/run installs it.
    let Some(faketime) = ["/usr/bin/faketime", "/usr/local/bin/faketime"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "faketime is missing (apt-get install faketime)"
        );
        eprintln!("skipped: no faketime on this machine");
        return;
    };
    let server = S3Server::http().unwrap();
    let out = std::process::Command::new(faketime)
        .args(["-f", "+2h"])
        .arg(env!("CARGO_BIN_EXE_hoard"))
        .args([
            "-r",
            &format!("s3:{}/skewed/p", server.endpoint),
            "snapshots",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RESTIC_PASSWORD", "pw")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = single_line(&out);
    assert!(
        e.contains("RequestTimeTooSkewed") && e.contains("clock"),
        "{e}"
    );
}

#[test]
fn read_only_keys_restore_without_a_lock_and_are_told_why_they_cannot_write() {
    let env = Env::s3();
    let src = small_tree(&env);
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let read_only = |args: &[&str]| {
        env.cmd()
            .env("AWS_ACCESS_KEY_ID", hoard_testkit::READONLY_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", hoard_testkit::READONLY_SECRET_KEY)
            .args(args)
            .output()
            .unwrap()
    };
    // Restore with read-only credentials: no lock file can be written, --no-lock says so.
    let target = env.path("restored");
    let out = read_only(&[
        "--no-lock",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_ok(&out);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    // A backup needs to write: the server's AccessDenied is named, and it is the policy, not
    // the keys, that stands in the way.
    let out = read_only(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = single_line(&out);
    assert!(
        e.contains("AccessDenied")
            && e.contains(hoard_testkit::READONLY_ACCESS_KEY)
            && e.contains("may not"),
        "{e}"
    );
    assert!(!e.contains("check AWS_SECRET_ACCESS_KEY"), "{e}");
}

/// GETs of repository files (index, snapshots, packs) among the server's requests.
fn downloads(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|r| {
            r.starts_with("GET ")
                && ["/index/", "/snapshots/", "/data/"]
                    .iter()
                    .any(|d| r.contains(d))
        })
        .collect()
}

#[test]
fn the_metadata_cache_spares_an_unchanged_rebackup_every_download() {
    let env = Env::s3();
    let src = small_tree(&env);
    let server = env.server.as_ref().unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let _ = server.requests();

    // What this machine wrote, it kept: the re-backup reads nothing back from S3.
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let all = server.requests();
    assert_eq!(downloads(&all), Vec::<&String>::new(), "{all:#?}");
    eprintln!(
        "unchanged re-backup with the cache: {} requests: {all:#?}",
        all.len()
    );
    let cache = env.path("cache");
    assert!(files_below(&cache)
        .iter()
        .any(|p| p.to_string_lossy().contains("/data/")));

    // Without the cache, the same re-backup downloads index, snapshots and tree packs.
    assert_ok(&env.hoard(&["--no-cache", "backup", "-q", src.to_str().unwrap()]));
    let all = server.requests();
    assert!(downloads(&all).len() >= 3, "{all:#?}");

    // A damaged cache file is noticed, replaced from S3, and nothing breaks.
    for f in files_below(&cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/index/"))
    {
        fs::write(&f, b"flipped").unwrap();
    }
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert!(!downloads(&server.requests()).is_empty());

    // Another machine's prune is seen: its deleted files leave this cache too.
    assert_ok(&env.hoard(&["--no-cache", "forget", "--keep-last", "1", "--prune"]));
    assert_ok(&env.hoard(&["snapshots"]));
    let cached_snapshots = files_below(&cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/snapshots/"))
        .count();
    assert_eq!(cached_snapshots, 1);
    assert_ok(&env.hoard(&["check", "--read-data"]));
    let caches = env.hoard_json(&["cache"]);
    assert_eq!(caches["kept"].as_array().unwrap().len(), 1, "{caches}");
    assert_eq!(caches["removed"].as_array().unwrap().len(), 0, "{caches}");
}

/// `copy` local → S3 (other password) → local (third password, the S3 source's keys, CA and
/// password from a mounted Secret directory) and S3 → S3 (another server and CA); a second
/// copy adds nothing.
#[test]
fn copy_local_to_s3_to_local_and_s3_to_s3_copies_nothing_twice() {
    let a = Env::new();
    let src = a.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/big.bin"), random_bytes(3 << 20, 11)).unwrap();
    fs::write(src.join("small.txt"), "small").unwrap();
    assert_ok(&a.hoard(&["backup", "-q", "--tag", "first", src.to_str().unwrap()]));
    fs::write(src.join("small.txt"), "changed").unwrap();
    assert_ok(&a.hoard(&["backup", "-q", src.to_str().unwrap()]));

    let b = Env::s3_empty(hoard_testkit::S3Server::https().unwrap(), "copies/b");
    let pw_b = b.path("pw-b");
    fs::write(&pw_b, "password of b\n").unwrap();
    let b_cmd = |args: &[&str]| {
        let mut c = b.cmd();
        c.arg("--password-file").arg(&pw_b).args(args);
        c.env("RESTIC_FROM_PASSWORD", PASSWORD);
        c.output().unwrap()
    };
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    assert_ok(&b_cmd(&init));
    let first = b_cmd(&["--json", "copy", "--from-repo", &a.repo]);
    assert_ok(&first);
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(first.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["copied"].as_array().unwrap().len(), 2, "{first}");
    assert!(first["bytes_added"].as_u64().unwrap() >= 3 << 20, "{first}");
    let again = b_cmd(&["--json", "copy", "--from-repo", &a.repo]);
    assert_ok(&again);
    let again: serde_json::Value = serde_json::from_str(
        String::from_utf8(again.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(again["blobs_added"], 0, "{again}");
    assert_ok(&b_cmd(&["check", "--read-data"]));

    // To a third repository, reading b with the keys, CA and password of a Secret.
    let c = Env::empty();
    let pw_c = c.path("pw-c");
    fs::write(&pw_c, "password of c").unwrap();
    let secret = c.path("b-secret");
    fs::create_dir_all(&secret).unwrap();
    for (k, v) in &b.vars {
        fs::write(secret.join(k), v).unwrap();
    }
    fs::write(secret.join("RESTIC_PASSWORD"), "password of b").unwrap();
    let c_cmd = |args: &[&str]| {
        let mut cmd = c.cmd();
        cmd.arg("--password-file").arg(&pw_c).args(args);
        cmd.output().unwrap()
    };
    assert_ok(&c_cmd(&init));
    let wrong = c_cmd(&["copy", "--from-repo", &b.repo]);
    assert_ne!(wrong.status.code(), Some(0));
    assert!(stderr(&wrong).lines().count() <= 2, "{}", stderr(&wrong));
    assert_ok(&c_cmd(&[
        "copy",
        "--from-repo",
        &b.repo,
        "--from-secret",
        secret.to_str().unwrap(),
        "--tag",
        "first",
    ]));
    let snaps = c_cmd(&["--json", "snapshots"]);
    let snaps: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "only the tagged one: {snaps}"
    );
    let target = c.path("restored");
    assert_ok(&c_cmd(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]));
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(restored.join("sub/big.bin")).unwrap(),
        random_bytes(3 << 20, 11)
    );
    assert_eq!(
        fs::read_to_string(restored.join("small.txt")).unwrap(),
        "small"
    );
    assert_ok(&c_cmd(&["check", "--read-data"]));

    // S3 to S3: another server with its own CA, the source's keys, CA and password from the
    // Secret, the destination's from the environment.
    let d = Env::s3();
    let out = d
        .cmd()
        .args(["copy", "--from-repo", &b.repo, "--from-secret"])
        .arg(&secret)
        .output()
        .unwrap();
    assert_ok(&out);
    let snaps = d.hoard_json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    let dump = d.hoard(&["dump", "latest", src.join("small.txt").to_str().unwrap()]);
    assert_ok(&dump);
    assert_eq!(dump.stdout, b"changed");
    assert_ok(&d.hoard(&["check", "--read-data"]));
}

/// A data pack is built in the cache's spool directory and sent from there: a pack of the
/// default size (16 MiB of random data fills one) as one PUT, one larger than
/// MAX_SINGLE_UPLOAD (20 MiB) as a multipart upload of equal parts. Nothing is left in the
/// spool, and the data comes back whole.
#[test]
fn data_packs_are_sent_from_the_cache_spool_whole_or_in_parts() {
    for (pack_size, bytes, parts) in [(None, 20 << 20, 0), (Some("24"), 28 << 20, 3)] {
        let server = hoard_testkit::S3Server::https().unwrap();
        let env = Env::s3_empty(server, "team/repo");
        let mut init = vec!["init"];
        init.extend_from_slice(&common::CHEAP_KDF);
        init.extend(pack_size.iter().flat_map(|s| ["--pack-size", s]));
        assert_ok(&env.hoard(&init));
        let src = env.path("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("big.bin"), random_bytes(bytes, 5)).unwrap();
        let server = env.server.as_ref().unwrap();
        let _ = server.requests();
        assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
        let all = server.requests();
        let data = |method: &str| -> Vec<&String> {
            all.iter()
                .filter(|r| r.starts_with(method) && r.contains("/data/"))
                .collect()
        };
        let posts = data("POST ");
        let puts = data("PUT ");
        if parts == 0 {
            assert!(posts.is_empty(), "no multipart upload: {all:#?}");
            let packs: std::collections::HashSet<_> = puts.iter().collect();
            assert_eq!(packs.len(), puts.len(), "one PUT per pack: {all:#?}");
            assert!(puts.len() >= 2, "a full pack and the rest: {all:#?}");
        } else {
            // Create and complete of the full pack, both POSTs to its key.
            assert_eq!(posts.len(), 2, "{all:#?}");
            assert_eq!(posts[0], posts[1]);
            let key = posts[0].trim_start_matches("POST ");
            let sent = puts.iter().filter(|r| r.ends_with(key)).count();
            assert_eq!(
                sent, parts,
                "a pack over 24 MiB goes as {parts} parts: {all:#?}"
            );
            assert!(
                puts.iter().any(|r| !r.ends_with(key)),
                "the rest goes as one PUT: {all:#?}"
            );
        }
        let spooled: Vec<_> = files_below(&env.path("cache"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("/spool/"))
            .collect();
        assert!(spooled.is_empty(), "{spooled:?}");

        let target = env.path("restored");
        assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
        assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
        assert_ok(&env.hoard(&["check", "--read-data"]));
    }
}

/// Backs up `f0.bin`..`f2.bin`, 3 MiB of random bytes each (from `seed`), and with `small` a
/// small file too; returns their directory. Incompressible files of several chunks: their
/// blobs share one pack, which holds more than one ranged read's worth (1 MiB from a remote
/// store).
fn backed_up_large_files(env: &Env, seed: u64, small: bool) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3 {
        fs::write(
            src.join(format!("f{i}.bin")),
            random_bytes(3 << 20, seed + i),
        )
        .unwrap();
    }
    if small {
        fs::write(src.join("small.txt"), b"between the large ones").unwrap();
    }
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    src
}

#[test]
fn restore_reads_each_pack_with_one_request_however_many_ranges_it_needs() {
    let env = Env::s3();
    let server = env.server.as_ref().unwrap();
    let src = backed_up_large_files(&env, 40, true);
    let _ = server.requests();

    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    let packs: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/data/"))
        .collect();
    let mut distinct = packs.clone();
    distinct.sort();
    distinct.dedup();
    assert!(!packs.is_empty());
    assert_eq!(packs.len(), distinct.len(), "a pack read twice: {packs:#?}");

    // One file of three: the others' blobs between its own are read past and dropped.
    let one = env.path("one");
    let f1 = src.join("f1.bin");
    assert_ok(&env.hoard(&[
        "restore",
        "latest",
        "--target",
        one.to_str().unwrap(),
        "--include",
        f1.to_str().unwrap(),
    ]));
    let got = fs::read(one.join(f1.strip_prefix("/").unwrap())).unwrap();
    assert!(got == fs::read(&f1).unwrap());
}

#[test]
fn a_pack_cut_short_on_s3_restores_what_lies_before_the_cut() {
    let env = Env::s3();
    let server = env.server.as_ref().unwrap();
    let src = backed_up_large_files(&env, 50, false);
    // The data pack is the large one; the stream of its ranges ends early, part way in.
    let pack = server
        .object_keys(BUCKET)
        .into_iter()
        .filter(|k| k.contains("/data/"))
        .map(|k| server.root.join(BUCKET).join(k))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let len = fs::metadata(&pack).unwrap().len();
    assert!(len > 9 << 20, "one pack holds all three files: {len}");
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();

    let target = env.path("restored");
    let summary = restore_with_errors(&env, &target);
    let dir = target.join(src.strip_prefix("/").unwrap());
    // Files are whole, or marked damaged with what could be read in place: the part of the
    // stream before the cut is used, and nothing written is wrong.
    let mut restored = 0;
    for i in 0..3 {
        let want = fs::read(src.join(format!("f{i}.bin"))).unwrap();
        if let Ok(got) = fs::read(dir.join(format!("f{i}.bin"))) {
            assert!(got == want, "f{i} is whole or marked");
            restored += want.len();
            continue;
        }
        let got = fs::read(dir.join(format!("f{i}.bin.damaged"))).unwrap();
        assert_eq!(got.len(), want.len());
        for (at, (g, w)) in got.iter().zip(&want).enumerate() {
            if *g != 0 {
                assert_eq!(g, w, "f{i}: restored byte {at} differs");
                restored += 1;
            }
        }
    }
    // No blob is larger than a file (3 MiB), so the pack's first blob lies below the cut.
    assert!(restored > 0, "{restored} bytes restored: {summary}");
    assert!(summary["files_damaged"].as_u64().unwrap() >= 1, "{summary}");
}

/// The conditional-write probe (four requests to a `locks/probe-` file) is made once per
/// repository and cache, not by every command: `init` keeps its answer in the cache, so the
/// lock of each later backup is written without asking again. Without the cache it is asked.
#[test]
fn the_conditional_write_probe_is_asked_once_and_kept_in_the_cache() {
    let env = Env::s3_empty(S3Server::http().unwrap(), "team/repo");
    let mut init = vec!["init"];
    init.extend_from_slice(&common::CHEAP_KDF);
    let server = env.server.as_ref().unwrap();
    let probes = || {
        server
            .requests()
            .into_iter()
            .filter(|r| r.contains("/locks/probe-"))
            .collect::<Vec<_>>()
    };
    assert_ok(&env.hoard(&init));
    assert!(!probes().is_empty(), "init probes");
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "a").unwrap();
    for _ in 0..2 {
        assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
        assert_eq!(probes(), Vec::<String>::new());
    }
    assert_ok(&env.hoard(&["--no-cache", "backup", "-q", src.to_str().unwrap()]));
    assert_eq!(probes().len(), 4, "PUT, PUT again, GET, DELETE");
}

/// `check --read-data` verifies a pack in the pieces an HTTP body arrives in (it is never
/// copied whole): a clean one passes, and one byte flipped in the middle of a large pack
/// names the pack and the blob, whichever piece it falls in.
#[test]
fn check_read_data_finds_a_flipped_byte_in_a_pack_read_over_http() {
    let env = Env::s3_empty(S3Server::http().unwrap(), "team/repo").initialised();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), random_bytes(6 << 20, 17)).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    assert_ok(&env.hoard(&["check", "--read-data"]));
    let pack = largest_pack(&env);
    flip_middle_bit(&pack);
    let out = env.hoard(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    let name = pack.file_name().unwrap().to_string_lossy();
    assert!(e.contains(&name[..8]), "{e}");
    assert!(e.contains("does not match its name"), "{e}");
    assert!(e.contains("data blob"), "{e}");
}
