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
