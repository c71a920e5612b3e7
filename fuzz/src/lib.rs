//! What each fuzz target does with its input, shared by the libFuzzer binaries
//! (`fuzz_targets/*.rs`, run with `cargo fuzz`) and by the workspace test that replays the
//! committed corpus on stable Rust (`tests/fuzz_corpus.rs`), so a crash found once stays a
//! failing test.
//!
//! Repository files are fuzzed through the real read paths, not only their decoders: the
//! input is sealed with the repository's own key (so the fuzzer gets past authentication)
//! and planted in an in-memory repository, then the operation that would meet it runs.
//! Every target must return, never panic, whatever the input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // harness set-up may fail loudly

use std::sync::OnceLock;
use std::time::Duration;

use hoard_core::format::crypto::MasterKey;
use hoard_core::format::keyfile::{KdfParams, KeyFile};
use hoard_core::{FileKind, Id, InitOptions, Repository};
use opendal::Operator;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("key_file", key_file),
    ("config", config),
    ("index", index),
    ("snapshot", snapshot),
    ("lock", lock),
    ("tree", tree),
    ("pack_header", pack_header),
    ("sealed", sealed),
    ("document", document),
    ("secret_manifest", secret_manifest),
    ("bucket_info", bucket_info),
    ("crd", crd),
    ("ca_pem", ca_pem),
    ("repository_url", repository_url),
];

const PASSWORD: &[u8] = b"fuzz";

/// One in-memory repository per process, with cheap key derivation so that opening it costs
/// microseconds, and its master key so inputs can be sealed as the repository would.
struct Fixture {
    rt: tokio::runtime::Runtime,
    op: Operator,
    key: MasterKey,
    config: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let op = Operator::new(opendal::services::Memory::default()).unwrap();
        let opts = InitOptions {
            kdf: KdfParams::insecure_fast(),
            ..InitOptions::default()
        };
        rt.block_on(Repository::init(op.clone(), PASSWORD, opts))
            .unwrap();
        let (key, config) = rt.block_on(async {
            let keys = op.list("keys/").await.unwrap();
            let entry = keys.iter().find(|e| !e.path().ends_with('/')).unwrap();
            let bytes = op.read(entry.path()).await.unwrap().to_vec();
            let kf: KeyFile = serde_json::from_slice(&bytes).unwrap();
            let key = kf.open(PASSWORD).unwrap().unwrap();
            let config = op.read("config").await.unwrap().to_vec();
            (key, config)
        });
        Fixture {
            rt,
            op,
            key,
            config,
        }
    })
}

/// Writes `bytes` under their own name in `kind`'s directory, as a planter who can write to
/// the bucket would, runs `then`, and removes the file again so inputs do not accumulate.
fn planted<F, Fut>(kind: FileKind, bytes: Vec<u8>, then: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let f = fixture();
    let path = kind.path(&Id::of_file(&bytes));
    f.rt.block_on(async {
        f.op.write(&path, bytes).await.unwrap();
        then().await;
        f.op.delete(&path).await.unwrap();
    });
}

async fn open() -> Option<Repository> {
    Repository::open(fixture().op.clone(), PASSWORD).await.ok()
}

/// Key files are plain JSON (they are what unlocks the key). Opening must skip what is
/// damaged or costs too much and still find the real key.
pub fn key_file(data: &[u8]) {
    if let Ok(kf) = serde_json::from_slice::<KeyFile>(data) {
        let cheap = kf.params.memory_kib <= 1024 && kf.params.iterations <= 2;
        if kf.params.check_bounds().is_ok() && !cheap {
            // Within the bounds a planted key costs what it says (at most seconds): that is
            // the defence by design, not a finding.
            return;
        }
        let _ = kf.open(PASSWORD);
    }
    planted(FileKind::Key, data.to_vec(), || async {
        assert!(
            open().await.is_some(),
            "a planted key file hid the real key"
        );
    });
}

/// The config is one fixed file; a damaged one must fail the open with an error.
pub fn config(data: &[u8]) {
    let f = fixture();
    let sealed = f.key.seal(data);
    f.rt.block_on(async {
        f.op.write("config", sealed).await.unwrap();
        let _ = open().await;
        f.op.write("config", f.config.clone()).await.unwrap();
    });
}

/// Index files: the open loads every one and sets damaged ones aside.
pub fn index(data: &[u8]) {
    let sealed = fixture().key.seal(data);
    planted(FileKind::Index, sealed, || async {
        assert!(
            open().await.is_some(),
            "a planted index file stopped the open"
        );
    });
}

/// Snapshot files: listed (damaged ones skipped) and looked up by prefix.
pub fn snapshot(data: &[u8]) {
    let sealed = fixture().key.seal(data);
    planted(FileKind::Snapshot, sealed, || async {
        let repo = open().await.expect("open");
        let _ = repo.snapshots().await;
        let _ = repo.find_snapshot("latest").await;
    });
}

/// Lock files: listed, and an exclusive lock attempted without waiting. A lock that cannot
/// be read must count as stale, never block.
pub fn lock(data: &[u8]) {
    let sealed = fixture().key.seal(data);
    planted(FileKind::Lock, sealed, || async {
        let repo = open().await.expect("open");
        let _ = hoard_core::lock::list_locks(&repo).await;
        let timing = hoard_core::LockTiming::default();
        if let Ok(guard) = hoard_core::lock::lock(&repo, true, Duration::ZERO, timing).await {
            let _ = guard.release().await;
        }
    });
}

/// Tree blobs after decryption; what parses must serialise back to an equal tree.
pub fn tree(data: &[u8]) {
    use hoard_core::format::tree::Tree;
    if let Ok(t) = Tree::from_bytes(data, "fuzz") {
        let again = Tree::from_bytes(&t.to_bytes(), "fuzz").expect("a tree we wrote must parse");
        assert_eq!(again, t);
    }
}

/// Pack header entries after decryption, and the header's place in a pack of any length.
pub fn pack_header(data: &[u8]) {
    use hoard_core::format::pack;
    if data.len() < 8 {
        return;
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[..8]);
    let offset = u64::from_le_bytes(len);
    let _ = pack::parse_entries(&data[8..], offset, "fuzz");
    let _ = pack::header_range(offset, [data[0], data[1], data[2], data[3]]);
}

/// Whole packs and sealed objects as stored: under the wrong key they must be rejected; a
/// pack sealed with the right key for its header must be parsed or rejected.
pub fn sealed(data: &[u8]) {
    use hoard_core::format::{blob, index::IndexFile, pack};
    let key = &fixture().key;
    let _ = pack::read_pack(key, data, "fuzz");
    let _ = key.open(data, "fuzz");
    let _ = blob::open_doc::<IndexFile>(key, data, "fuzz");
    // The same bytes as the plaintext of a pack header, behind a valid length trailer.
    let header = key.seal(data);
    let mut pack = vec![0u8; data.len() % 64];
    pack.extend_from_slice(&header);
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    let _ = pack::read_pack(key, &pack, "fuzz");
}

/// Opened documents: the format byte, bounded zstd, and the JSON of every document type.
pub fn document(data: &[u8]) {
    use hoard_core::format::{blob, index::IndexFile};
    if let Ok(json) = blob::decode_doc_payload(data, "fuzz") {
        let _ = serde_json::from_slice::<IndexFile>(&json);
        let _ = serde_json::from_slice::<hoard_core::Snapshot>(&json);
        let _ = serde_json::from_slice::<hoard_core::Config>(&json);
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A Kubernetes Secret manifest (YAML or JSON, data or stringData, several documents), then
/// the S3 settings built from it.
pub fn secret_manifest(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(secrets) = hoard_s3::Secrets::from_manifest(text) {
        let loc = hoard_s3::S3Location::parse("127.0.0.1:9/bucket").expect("fixed location");
        let _ = hoard_s3::S3Config::from_secrets(loc, &secrets);
    }
}

/// A BucketInfo (COSI) document as the value of a Secret key, the way a mounted Secret or
/// `from_map` sees it.
pub fn bucket_info(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = hoard_s3::Secrets::from_map([("BucketInfo", text)]);
    let _ = hoard_s3::Secrets::from_manifest(text);
}

/// A Repository custom resource (YAML or JSON), its target, and the choice of its Secret.
pub fn crd(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(file) = hoard_s3::crd::parse_crd(text) {
        let _ = file.repository.target();
        let _ = file.repository.explicit_region();
        let _ = hoard_s3::crd::select_secret(&file.repository, &file.secrets);
    }
}

/// `CA_CERT_DATA`: PEM of one or more certificates.
pub fn ca_pem(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = hoard_s3::check_ca_pem(text);
}

/// `-r`/`RESTIC_REPOSITORY`: local paths, `local:` and `s3:` URLs.
pub fn repository_url(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(loc) = text.parse::<hoard_s3::Location>() {
        let _ = loc.to_string();
    }
}
