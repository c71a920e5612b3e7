//! The library as a Rust program uses it: only `hoard::` paths (plus the test S3 server),
//! the whole round trip on a local repository and on S3 opened from an in-memory Secret map,
//! with a progress observer that checks what it is told.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

use std::path::Path;
use std::sync::{Arc, Mutex};

use hoard::progress::{Phase, Progress};
use hoard::s3::{OpenMode, Secrets};
use hoard::{
    backup, check, forget, prune, restore, BackupOptions, CheckOptions, ForgetOptions, KdfParams,
    Policy, PruneOptions, ReadData, Repository, RestoreOptions,
};

/// Every event, in order.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Phase(Phase),
    Total(u64, u64, bool),
    Advance(u64, u64),
}

impl Progress for Recorder {
    fn phase(&self, phase: Phase) {
        self.events.lock().unwrap().push(Event::Phase(phase));
    }
    fn total(&self, items: u64, bytes: u64, complete: bool) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Total(items, bytes, complete));
    }
    fn advance(&self, items: u64, bytes: u64) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Advance(items, bytes));
    }
    fn wants_totals(&self) -> bool {
        true
    }
}

/// Per phase: the last totals (which must never have shrunk and must end complete) and
/// what was done.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    total: (u64, u64),
    complete: bool,
    done: (u64, u64),
}

impl Recorder {
    fn tallies(&self) -> Vec<(Phase, Tally)> {
        let mut out: Vec<(Phase, Tally)> = Vec::new();
        for e in self.events.lock().unwrap().iter() {
            match *e {
                Event::Phase(p) => out.push((p, Tally::default())),
                Event::Total(items, bytes, complete) => {
                    let (p, t) = out.last_mut().expect("totals before any phase");
                    assert!(
                        items >= t.total.0 && bytes >= t.total.1,
                        "{p:?}: totals shrank from {:?} to {:?}",
                        t.total,
                        (items, bytes)
                    );
                    assert!(!t.complete, "{p:?}: totals after complete ones");
                    t.total = (items, bytes);
                    t.complete = complete;
                }
                Event::Advance(items, bytes) => {
                    let (_, t) = out.last_mut().expect("progress before any phase");
                    t.done.0 += items;
                    t.done.1 += bytes;
                }
            }
        }
        out
    }

    /// Every phase ended with complete totals, all of them done.
    fn assert_all_done(&self) -> Vec<Phase> {
        let tallies = self.tallies();
        for (p, t) in &tallies {
            assert!(t.complete, "{p:?}: totals never complete: {t:?}");
            assert_eq!(t.done, t.total, "{p:?}: done differs from total");
        }
        tallies.iter().map(|(p, _)| *p).collect()
    }
}

fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("notes.txt"), "hello").unwrap();
    std::fs::write(src.join("sub/empty"), "").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("sub/big.bin"), big).unwrap();
    src
}

/// Backup with totals, snapshots, restore of one file straight into a directory, forget,
/// prune and check, as the crate docs show them.
async fn round_trip(repo: &Repository, src: &Path, out: &Path) {
    let rec = Arc::new(Recorder::default());
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        ..Default::default()
    };
    let first = backup(repo, opts.clone(), rec.clone()).await.unwrap();
    assert!(first.errors.is_empty());
    assert_eq!(rec.assert_all_done(), vec![Phase::Backup]);
    let (_, t) = rec.tallies()[0];
    assert_eq!(t.total, (3, 3_000_005), "three files, all their bytes");

    // An unchanged second backup reads nothing, yet its progress still reaches 100%.
    let rec = Arc::new(Recorder::default());
    let second = backup(repo, opts, rec.clone()).await.unwrap();
    assert_eq!(second.summary.files_unmodified, 3);
    rec.assert_all_done();
    assert_eq!(rec.tallies()[0].1.done, (3, 3_000_005));

    let snapshots = repo.snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 2);

    let rec = Arc::new(Recorder::default());
    let file = src.join("sub/big.bin");
    let ropts = RestoreOptions {
        target: out.to_path_buf(),
        source_path: Some(file.to_string_lossy().into_owned()),
        ..Default::default()
    };
    restore(repo, &second.snapshot, &ropts, rec.clone())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(out.join("big.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(std::fs::read_dir(out).unwrap().count(), 1, "only that file");
    assert_eq!(rec.assert_all_done(), vec![Phase::Restore]);

    let policy = Policy {
        last: 1,
        ..Default::default()
    };
    let forgotten = forget(repo, &policy, &ForgetOptions::default())
        .await
        .unwrap();
    assert_eq!(forgotten.removed, vec![first.snapshot.id]);
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);

    let rec = Recorder::default();
    let popts = PruneOptions {
        max_unused_percent: 0.0,
        ..Default::default()
    };
    prune(repo, &popts, &rec).await.unwrap();
    let phases = rec.assert_all_done();
    assert_eq!(phases[0], Phase::PruneMark);

    let rec = Recorder::default();
    let copts = CheckOptions {
        read_data: ReadData::All,
    };
    let report = check(repo, &copts, &rec).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(
        rec.assert_all_done(),
        vec![Phase::CheckIndex, Phase::CheckSnapshots, Phase::CheckData]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trip_through_the_public_api() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let storage = hoard::repository::local_operator(&dir.path().join("repo"), true).unwrap();
    let init = hoard::InitOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    };
    let repo = Repository::init(storage, b"pw", init).await.unwrap();
    round_trip(&repo, &src, &dir.path().join("out")).await;
    // Opened again, as a later run would.
    let storage = hoard::repository::local_operator(&dir.path().join("repo"), false).unwrap();
    let again = Repository::open(storage, b"pw").await.unwrap();
    assert_eq!(again.snapshots().await.unwrap().len(), 1);
    assert!(matches!(
        Repository::open(
            hoard::repository::local_operator(&dir.path().join("repo"), false).unwrap(),
            b"wrong"
        )
        .await,
        Err(hoard::Error::WrongPassword)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_from_an_in_memory_secret() {
    let server = hoard_testkit::S3Server::https().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let location = format!("s3:{}/api-bucket/team-a", server.endpoint);
    let secrets = Secrets::from_map([
        ("RESTIC_PASSWORD", "s3 pw"),
        ("AWS_ACCESS_KEY_ID", hoard_testkit::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", hoard_testkit::SECRET_KEY),
        ("CA_CERT_DATA", server.ca_pem.as_deref().unwrap()),
    ])
    .unwrap();
    // The first open creates bucket and repository; the second finds them.
    let init = hoard::InitOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    };
    let (repo, created) =
        hoard::s3::open(&location, &secrets, OpenMode::CreateIfAbsent(init.clone()))
            .await
            .unwrap();
    assert!(created);
    round_trip(&repo, &src, &dir.path().join("out")).await;
    let (again, created) = hoard::s3::open(&location, &secrets, OpenMode::CreateIfAbsent(init))
        .await
        .unwrap();
    assert!(
        !created,
        "an existing repository is never initialised again"
    );
    assert_eq!(again.snapshots().await.unwrap().len(), 1);
    assert!(server
        .object_keys("api-bucket")
        .iter()
        .all(|k| k.starts_with("team-a/")));
    // Without the password in the secrets: a clear error, not a panic.
    let keys_only = Secrets::from_map([
        ("AWS_ACCESS_KEY_ID", hoard_testkit::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", hoard_testkit::SECRET_KEY),
    ])
    .unwrap();
    let e = hoard::s3::open(&location, &keys_only, OpenMode::Existing)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("RESTIC_PASSWORD"), "{e}");
}

/// Restore creates files with their permission bits and leaves out the chmod when the umask
/// let them through: every bit must still come out as the snapshot has it, whether the umask
/// hid it (o+w), the owner lacks the write the restore needs (0o444, 0o000, on a file of one
/// blob and one of many), or it may only be set last (setuid, setgid, sticky).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permission_bit_comes_back_as_the_snapshot_has_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let modes = [
        0o644, 0o755, 0o777, 0o666, 0o444, 0o000, 0o200, 0o4755, 0o2750, 0o1644, 0o6711,
    ];
    // Pseudo-random, so that it is cut into several blobs.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..5_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for (i, mode) in modes.iter().enumerate() {
        for (kind, body) in [("small", &b"a few bytes"[..]), ("big", &big[..])] {
            let path = src.join(format!("{kind}-{i}-{mode:o}"));
            std::fs::write(&path, body).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
    let storage = hoard::repository::local_operator(&dir.path().join("repo"), true).unwrap();
    let init = hoard::InitOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    };
    let repo = Repository::init(storage, b"pw", init).await.unwrap();
    let opts = BackupOptions {
        paths: vec![src.clone()],
        ..Default::default()
    };
    let progress = Arc::new(hoard::progress::NoProgress);
    let done = backup(&repo, opts, progress.clone()).await.unwrap();
    let out = dir.path().join("out");
    let ropts = RestoreOptions {
        target: out.clone(),
        source_path: Some(src.to_string_lossy().into_owned()),
        ..Default::default()
    };
    let summary = restore(&repo, &done.snapshot, &ropts, progress)
        .await
        .unwrap();
    assert_eq!(summary.files_restored, 2 * modes.len() as u64);
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let want = entry.metadata().unwrap().permissions().mode() & 0o7777;
        let restored = out.join(entry.file_name());
        let got = std::fs::metadata(&restored).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, want, "{restored:?}: {got:o}, not {want:o}");
        assert_eq!(
            std::fs::read(&restored).unwrap(),
            std::fs::read(entry.path()).unwrap()
        );
    }
}
