//! The library API on an in-memory OpenDAL operator, as an embedding program uses it.

mod common;

use std::sync::Arc;

use hoard::{
    backup, restore, BackupOptions, Error, InitOptions, KdfParams, NoProgress, Repository,
    RestoreOptions,
};

fn memory() -> hoard::opendal::Operator {
    hoard::opendal::Operator::new(hoard::opendal::services::Memory::default()).unwrap()
}

fn cheap() -> InitOptions {
    InitOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_repository_round_trip_and_typed_errors() {
    let op = memory();
    assert!(matches!(
        Repository::open(op.clone(), b"pw").await,
        Err(Error::RepositoryNotFound(_))
    ));
    let repo = Repository::init(op.clone(), b"pw", cheap()).await.unwrap();
    assert!(matches!(
        Repository::init(op.clone(), b"pw", cheap()).await,
        Err(Error::AlreadyInitialised(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    common::make_tree(&src);
    let opts = BackupOptions {
        paths: vec![src.clone()],
        tags: vec!["lib".into()],
        ..Default::default()
    };
    let done = backup(&repo, opts.clone(), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(done.errors.is_empty());
    assert!(done.summary.files_new >= 8);

    // A fresh handle sees the snapshot; a wrong password is a typed error.
    assert!(matches!(
        Repository::open(op.clone(), b"nope").await,
        Err(Error::WrongPassword)
    ));
    let reopened = Repository::open(op.clone(), b"pw").await.unwrap();
    let snaps = reopened.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].snapshot.tags, vec!["lib".to_string()]);

    let again = backup(&reopened, opts, Arc::new(NoProgress)).await.unwrap();
    assert_eq!(again.summary.files_new + again.summary.files_changed, 0);
    assert_eq!(again.summary.data_blobs, 0);
    assert_eq!(again.snapshot.snapshot.parent, Some(done.snapshot.id));

    let target = dir.path().join("out");
    let ropts = RestoreOptions {
        target: target.clone(),
        ..Default::default()
    };
    let s = restore(&reopened, &again.snapshot, &ropts, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    common::assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// An embedding program reaches an S3 repository through `hoard::s3::connect`.
#[tokio::test(flavor = "multi_thread")]
async fn s3_repository_through_the_library() {
    use hoard::s3::{connect, BucketMode, Credentials, S3Config, S3Location};
    let server = hoard_testkit::S3Server::https().unwrap();
    let location =
        S3Location::parse(&format!("{}/lib-bucket/some/prefix", server.endpoint)).unwrap();
    let creds = Credentials::Static {
        access_key_id: hoard_testkit::ACCESS_KEY.into(),
        secret_access_key: hoard_testkit::SECRET_KEY.to_string().into(),
        session_token: None,
    };
    let mut cfg = S3Config::new(location, creds);
    cfg.ca_pem = server.ca_pem.clone();
    assert!(matches!(
        connect(&cfg, BucketMode::MustExist).await,
        Err(hoard::s3::S3Error::NoSuchBucket { .. })
    ));
    let op = connect(&cfg, BucketMode::Create).await.unwrap();
    let repo = Repository::init(op, b"pw", cheap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"through the library").unwrap();
    let opts = BackupOptions {
        paths: vec![dir.path().to_path_buf()],
        ..Default::default()
    };
    let done = backup(&repo, opts, Arc::new(NoProgress)).await.unwrap();
    let op = connect(&cfg, BucketMode::MustExist).await.unwrap();
    let reopened = Repository::open(op, b"pw").await.unwrap();
    assert_eq!(reopened.snapshots().await.unwrap()[0].id, done.snapshot.id);
    assert!(server
        .object_keys("lib-bucket")
        .iter()
        .all(|k| k.starts_with("some/prefix/")));

    // Without the CA, the error says what to set.
    cfg.ca_pem = None;
    let err = connect(&cfg, BucketMode::MustExist)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("CA_CERT_DATA"), "{err}");
}
