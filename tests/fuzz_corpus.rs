//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every input that once
//! crashed a target (`fuzz/regressions/<target>/`) through the same code the libFuzzer
//! binaries run, so CI catches a regression on stable Rust without running a fuzzer.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` writes the hand-made seeds the
//! corpus grew from: real repository files of every kind (opened with the repository's key,
//! as the targets take them) and the user inputs the documentation shows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn every_target_survives_its_corpus_and_past_crashes() {
    let mut failures = Vec::new();
    for (name, run) in targets::TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(
            corpus.len() >= 3,
            "fuzz/corpus/{name} has {} inputs: the corpus was not committed",
            corpus.len()
        );
        let regressions = inputs(&fuzz_dir().join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            // A fuzzer running beside the test replaces corpus files as it shrinks them.
            let Ok(data) = fs::read(file) else { continue };
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "targets panicked on: {failures:#?}");
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

#[test]
#[ignore = "writes fuzz/corpus seeds; run by hand"]
fn write_seeds() {
    use hoard_core::format::crypto::MasterKey;
    use hoard_core::format::keyfile::{KdfParams, KeyFile};
    use hoard_core::{FileKind, InitOptions, Repository};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"hello fuzz").unwrap();
    fs::write(src.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let op =
        hoard_core::repository::storage::local_operator(&dir.path().join("repo"), true).unwrap();
    rt.block_on(async {
        let opts = InitOptions {
            kdf: KdfParams::insecure_fast(),
            ..InitOptions::default()
        };
        let repo = Repository::init(op.clone(), b"pw", opts).await.unwrap();
        let backup = hoard_core::BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        };
        hoard_core::backup(&repo, backup, std::sync::Arc::new(hoard_core::NoProgress))
            .await
            .unwrap();
        let guard =
            hoard_core::lock::lock(&repo, false, std::time::Duration::ZERO, Default::default())
                .await
                .unwrap();

        let key_id = repo.list(FileKind::Key).await.unwrap()[0];
        let key_bytes = repo.read_file(FileKind::Key, &key_id).await.unwrap();
        seed("key_file", "real", &key_bytes);
        let kf: KeyFile = serde_json::from_slice(&key_bytes).unwrap();
        let key: MasterKey = kf.open(b"pw").unwrap().unwrap();
        let mut bounded = serde_json::from_slice::<serde_json::Value>(&key_bytes).unwrap();
        bounded["memory_kib"] = serde_json::json!(u32::MAX);
        seed("key_file", "huge-cost", bounded.to_string().as_bytes());
        bounded["memory_kib"] = serde_json::json!(64);
        bounded["parallelism"] = serde_json::json!(0);
        seed("key_file", "zero-lanes", bounded.to_string().as_bytes());

        let config = op.read("config").await.unwrap().to_vec();
        let plain = key.open(&config, "config").unwrap();
        seed("config", "real", &plain);
        json_variants("config", "real", &plain);
        for (kind, target) in [
            (FileKind::Index, "index"),
            (FileKind::Snapshot, "snapshot"),
            (FileKind::Lock, "lock"),
        ] {
            for id in repo.list(kind).await.unwrap() {
                let sealed = repo.read_file(kind, &id).await.unwrap();
                let plain = key.open(&sealed, target).unwrap();
                seed(target, &id.short(), &plain);
                seed("document", &id.short(), &plain);
                json_variants(target, &id.short(), &plain);
            }
        }
        guard.release().await.unwrap();
        for id in repo.list(FileKind::Pack).await.unwrap() {
            let pack = repo.read_file(FileKind::Pack, &id).await.unwrap();
            if pack.len() < 4096 {
                seed("sealed", &id.short(), &pack);
            }
            hoard_core::format::pack::read_pack(&key, &pack, "seed").unwrap();
            let header_len = u32::from_le_bytes(pack[pack.len() - 4..].try_into().unwrap());
            let offset = (pack.len() - 4 - header_len as usize) as u64;
            let header = &pack[offset as usize..pack.len() - 4];
            let mut input = offset.to_le_bytes().to_vec();
            input.extend(key.open(header, "seed").unwrap());
            seed("pack_header", &id.short(), &input);
        }
        let snap = repo.find_snapshot("latest").await.unwrap();
        let root = repo.load_tree(&snap.snapshot.tree).await.unwrap();
        seed("tree", "root", &root.to_bytes());
        for node in &root.nodes {
            if let Some(sub) = node.subtree {
                seed(
                    "tree",
                    "sub",
                    &repo.load_tree(&sub).await.unwrap().to_bytes(),
                );
            }
        }
    });
    seed("tree", "empty", b"{\"nodes\":[]}");
    seed(
        "sealed",
        "short",
        b"0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    seed("sealed", "empty", b"");
    seed("pack_header", "short", &[0u8; 8]);
    seed("document", "plain-json", b"\x00{\"version\":1}");

    seed_user_inputs();
}

/// The document uncompressed (format byte 0), and with every number made huge: the shapes
/// a planter would write by hand.
fn json_variants(target: &str, name: &str, payload: &[u8]) {
    let json = hoard_core::format::blob::decode_doc_payload(payload, "seed").unwrap();
    let mut plain = vec![hoard_core::format::blob::DOC_JSON];
    plain.extend_from_slice(&json);
    seed(target, &format!("{name}-json"), &plain);
    let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    fn inflate(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(_) => *v = serde_json::json!(u64::MAX),
            serde_json::Value::Array(a) => a.iter_mut().for_each(inflate),
            serde_json::Value::Object(o) => o.values_mut().for_each(inflate),
            _ => {}
        }
    }
    inflate(&mut value);
    let mut huge = vec![hoard_core::format::blob::DOC_JSON];
    huge.extend_from_slice(value.to_string().as_bytes());
    seed(target, &format!("{name}-huge"), &huge);
}

fn seed_user_inputs() {
    let secret_yaml = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: minio-secret\nstringData:\n  RESTIC_PASSWORD: pw\n  AWS_ACCESS_KEY_ID: AKIA\n  AWS_SECRET_ACCESS_KEY: secret\n  CA_CERT_DATA: |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n    -----END CERTIFICATE-----\n";
    seed("secret_manifest", "stringdata", secret_yaml.as_bytes());
    let secret_json = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"RESTIC_PASSWORD":"cHc=","AWS_ACCESS_KEY_ID":"QUtJQQ==","AWS_SECRET_ACCESS_KEY":"c2VjcmV0"}}"#;
    seed("secret_manifest", "data-json", secret_json.as_bytes());
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: a}\n  stringData: {RESTIC_PASSWORD: x}\n---\nkind: Secret\nstringData:\n  MINIO_ACCESS_KEY: m\n";
    seed("secret_manifest", "list", list.as_bytes());
    let bucket_info = r#"{"metadata":{"name":"bc-1"},"spec":{"bucketName":"backups-1a2b","authenticationType":"KEY","protocols":["s3"],"secretS3":{"endpoint":"https://127.0.0.1:9000","region":"us-east-1","accessKeyID":"AKIA","accessSecretKey":"secret"},"secretAzure":null}}"#;
    seed("bucket_info", "key", bucket_info.as_bytes());
    seed(
        "bucket_info",
        "iam-yaml",
        b"apiVersion: objectstorage.k8s.io/v1alpha1\nkind: BucketInfo\nspec:\n  bucketName: b\n  authenticationType: IAM\n  secretS3:\n    endpoint: s3.amazonaws.com\n    region: ''\n",
    );
    seed(
        "bucket_info",
        "azure",
        br#"{"spec":{"bucketName":"b","secretS3":null,"secretAzure":{"accessToken":"t"}}}"#,
    );
    seed(
        "secret_manifest",
        "bucket-info",
        format!(
            "kind: Secret\nstringData:\n  BucketInfo: '{bucket_info}'\n  RESTIC_PASSWORD: pw\n"
        )
        .as_bytes(),
    );
    let crd = "apiVersion: stash.appscode.com/v1alpha1\nkind: Repository\nmetadata:\n  name: repo\n  namespace: demo\nspec:\n  backend:\n    s3:\n      endpoint: https://127.0.0.1:9000\n      bucket: stash\n      region: us-east-1\n      prefix: /demo/app\n    storageSecretName: minio-secret\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: minio-secret\nstringData:\n  RESTIC_PASSWORD: pw\n";
    seed("crd", "stash", crd.as_bytes());
    seed(
        "crd",
        "local-json",
        br#"{"apiVersion":"stash.appscode.com/v1alpha1","kind":"Repository","metadata":{"name":"r"},"spec":{"backend":{"local":{"mountPath":"/safe/data","subPath":"x"},"storageSecretName":"s"}}}"#,
    );
    seed(
        "crd",
        "gcs",
        b"kind: Repository\nspec:\n  backend:\n    gcs: {bucket: b}\n",
    );
    let ca = hoard_testkit_ca();
    seed("ca_pem", "one", ca.as_bytes());
    seed("ca_pem", "two", format!("{ca}\n{ca}").as_bytes());
    seed(
        "ca_pem",
        "bad-base64",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    for (name, url) in [
        ("path", "/srv/backups"),
        ("local", "local:/srv/backups"),
        ("s3-host", "s3:127.0.0.1:9000/bucket/prefix/deep"),
        ("s3-https", "s3:https://minio.example:9000/bucket"),
        ("aws", "s3:s3.amazonaws.com/bucket"),
        ("other", "sftp:user@host:/srv"),
    ] {
        seed("repository_url", name, url.as_bytes());
    }
}

/// A real CA certificate, made the way the TLS tests make theirs.
fn hoard_testkit_ca() -> String {
    hoard_testkit::TestCa::generate().unwrap().ca_pem
}
