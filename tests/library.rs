//! The library API on an in-memory OpenDAL operator, as an embedding program uses it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

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

    restores_as(&reopened, &again.snapshot, &src, &dir.path().join("out")).await;

    // Memory storage cannot sign URLs: share says so, typed, and writes nothing.
    let snap = &again.snapshot;
    let e = hoard::share(
        &reopened,
        snap.id,
        snap.snapshot.tree,
        "/",
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Share(_)), "{e}");
    assert!(hoard::list_shares(&reopened).await.unwrap().is_empty());
}

/// Restores `snap` into `target` without errors and finds `src` there as it is now.
async fn restores_as(
    repo: &Repository,
    snap: &hoard::SnapshotEntry,
    src: &std::path::Path,
    target: &std::path::Path,
) {
    let ropts = RestoreOptions {
        target: target.to_path_buf(),
        ..Default::default()
    };
    let s = restore(repo, snap, &ropts, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    common::assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
}

/// The tree id of the directory at `path` (absolute) in a snapshot whose root tree is `root`.
async fn tree_at(repo: &Repository, root: hoard::id::Id, path: &std::path::Path) -> hoard::id::Id {
    let mut id = root;
    for part in path.strip_prefix("/").unwrap().components() {
        let name = part.as_os_str().as_encoded_bytes();
        let tree = repo.load_tree(&id).await.unwrap();
        let node = tree.nodes.iter().find(|n| n.name.0 == name).unwrap();
        id = node.subtree.unwrap();
    }
    id
}

/// A re-backup takes an unchanged directory's tree from the parent snapshot as it is; a
/// directory with a changed entry, and every directory above it, gets a new tree, and the
/// new snapshot restores the change.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebackup_keeps_the_trees_of_unchanged_directories_only() {
    let repo = Repository::init(memory(), b"pw", cheap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("same/inner")).unwrap();
    std::fs::create_dir_all(src.join("changes")).unwrap();
    std::fs::write(src.join("same/inner/x"), b"x").unwrap();
    std::fs::write(src.join("same/y"), b"y").unwrap();
    std::fs::write(src.join("changes/z"), b"z").unwrap();
    let opts = BackupOptions {
        paths: vec![src.clone()],
        ..Default::default()
    };
    let first = backup(&repo, opts.clone(), Arc::new(NoProgress))
        .await
        .unwrap();
    std::fs::write(src.join("changes/z"), b"z, and longer now").unwrap();
    let second = backup(&repo, opts, Arc::new(NoProgress)).await.unwrap();
    assert_eq!(second.summary.files_changed, 1);
    assert_eq!(second.summary.files_unmodified, 2);

    let (a, b) = (first.snapshot.snapshot.tree, second.snapshot.snapshot.tree);
    for same in ["same", "same/inner"] {
        let p = src.join(same);
        assert_eq!(
            tree_at(&repo, a, &p).await,
            tree_at(&repo, b, &p).await,
            "{same}"
        );
    }
    for changed in [src.join("changes"), src.clone(), dir.path().to_path_buf()] {
        assert_ne!(
            tree_at(&repo, a, &changed).await,
            tree_at(&repo, b, &changed).await,
            "{}",
            changed.display()
        );
    }
    // The directories above the backed-up path are the snapshot's frame, not counted.
    assert_eq!(second.summary.dirs_unmodified, 2, "same, same/inner");
    assert_eq!(second.summary.dirs_changed, 2, "changes, src");

    restores_as(&repo, &second.snapshot, &src, &dir.path().join("out")).await;
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

    // Share a file through the library: a signed URL, listed until revoked.
    let snap = &done.snapshot;
    let path = dir.path().join("f");
    let opts = hoard::ShareOptions {
        expires: std::time::Duration::from_secs(600),
        name: Some("for-you.txt".into()),
        ..Default::default()
    };
    let shared = hoard::share(
        &reopened,
        snap.id,
        snap.snapshot.tree,
        path.to_str().unwrap(),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(shared.size, 19);
    assert!(
        shared.url.contains("/some/prefix/shares/") && shared.url.contains("X-Amz-Expires=600")
    );
    let listed = hoard::list_shares(&reopened).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].info.as_ref(), Some(&shared.info));
    assert_eq!(listed[0].size, Some(19));
    hoard::revoke_share(&reopened, &shared.info.id)
        .await
        .unwrap();
    assert!(hoard::list_shares(&reopened).await.unwrap().is_empty());

    // s3s honours If-None-Match, so lock and config files are created conditionally.
    assert!(hoard::repository::conditional_create_works(reopened.operator()).await);

    // Without the CA, the error says what to set.
    cfg.ca_pem = None;
    let err = connect(&cfg, BucketMode::MustExist)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("CA_CERT_DATA"), "{err}");
}

/// Releasing a lock while it is being refreshed leaves no lock file behind: a file left would
/// block every other process until it went stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_released_mid_refresh_leaves_no_file() {
    use hoard::lock::{lock, LockTiming};
    use hoard::FileKind;
    let dir = tempfile::tempdir().unwrap();
    let op = hoard::repository::local_operator(&dir.path().join("repo"), true).unwrap();
    let repo = Repository::init(op, b"pw", cheap()).await.unwrap();
    let busy = LockTiming {
        refresh: std::time::Duration::from_micros(200),
        stale_after: std::time::Duration::from_secs(30),
    };
    for round in 0..200u64 {
        let guard = lock(&repo, round % 2 == 0, std::time::Duration::ZERO, busy)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_micros(round * 7 % 1500)).await;
        guard.release().await.unwrap();
        let left = repo.list(FileKind::Lock).await.unwrap();
        assert!(left.is_empty(), "round {round}: {left:?} left behind");
    }
}

/// Locks from other hosts are judged by time alone: blocking while fresh, ignored and removed
/// once not refreshed for the stale limit. Shared locks do not block each other.
#[tokio::test(flavor = "multi_thread")]
async fn locks_from_other_hosts_block_until_stale() {
    use hoard::lock::{lock, LockInfo, LockTiming};
    use hoard::FileKind;
    let dir = tempfile::tempdir().unwrap();
    let op = hoard::repository::local_operator(&dir.path().join("repo"), true).unwrap();
    let repo = Repository::init(op, b"pw", cheap()).await.unwrap();
    assert!(hoard::repository::conditional_create_works(repo.operator()).await);
    let timing = LockTiming::default();
    let wait = std::time::Duration::ZERO;

    let mut foreign = LockInfo::new(true);
    foreign.hostname = "other-pod".into();
    foreign.pid = 1;
    foreign.time = chrono::Utc::now() - chrono::Duration::minutes(10);
    let fresh = repo.save_doc(FileKind::Lock, &foreign).await.unwrap();
    let err = lock(&repo, false, wait, timing).await.unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("other-pod") && msg.contains("exclusive"),
        "{msg}"
    );

    // Not refreshed for 31 minutes: stale, removed, and the lock is ours.
    repo.delete_file(FileKind::Lock, &fresh).await.unwrap();
    foreign.time = chrono::Utc::now() - chrono::Duration::minutes(31);
    let old = repo.save_doc(FileKind::Lock, &foreign).await.unwrap();
    let guard = lock(&repo, true, wait, timing).await.unwrap();
    let ids = repo.list(FileKind::Lock).await.unwrap();
    assert_eq!(ids, vec![guard.id()]);
    assert!(!ids.contains(&old));
    // While we hold it exclusively, even a shared lock waits, then gives up.
    let err = lock(&repo, false, std::time::Duration::from_millis(300), timing)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }));
    guard.release().await.unwrap();

    // Shared locks coexist, and refreshing replaces the file while keeping the lock valid.
    let fast = LockTiming {
        refresh: std::time::Duration::from_millis(100),
        stale_after: std::time::Duration::from_secs(30),
    };
    let a = lock(&repo, false, wait, fast).await.unwrap();
    let b = lock(&repo, false, wait, timing).await.unwrap();
    let first = a.id();
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_ne!(a.id(), first, "refreshed");
    a.ensure_valid().await.unwrap();
    // b's file and a's (two of a's while a refresh has written the new and not yet removed
    // the old).
    let ids = repo.list(FileKind::Lock).await.unwrap();
    assert!(
        ids.contains(&b.id()) && (2..=3).contains(&ids.len()),
        "{ids:?}"
    );
    a.release().await.unwrap();
    b.release().await.unwrap();
    assert!(repo.list(FileKind::Lock).await.unwrap().is_empty());
}
