//! `hoard mount` for real, through /dev/fuse: the layout, ordinary reads, a read from the
//! middle of a large file that fetches only the blobs there (counted on the S3 test
//! server), and a clean unmount on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn mounted(at: &std::path::Path) -> bool {
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(at.to_str().unwrap()))
}

#[test]
fn a_mounted_repository_is_browsed_read_from_the_middle_and_unmounted_on_sigterm() {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
    {
        eprintln!("SKIPPED: /dev/fuse cannot be opened here (FUSE needs root or a fuse group)");
        return;
    }
    let env = Env::s3();
    let server = env.server.as_ref().unwrap();
    let src = env.path("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    let big = random_bytes(40 << 20, 21);
    fs::write(src.join("big.bin"), &big).unwrap();
    fs::write(src.join("docs/readme.txt"), "read me").unwrap();
    std::os::unix::fs::symlink("docs/readme.txt", src.join("link")).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", "--tag", "nightly", src.to_str().unwrap()]));
    let snap = env.hoard_json(&["snapshots"]);
    let short = snap[0]["short_id"].as_str().unwrap().to_string();
    let host = snap[0]["hostname"].as_str().unwrap().to_string();

    let mnt = env.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let mut child = env
        .cmd()
        .arg("mount")
        .arg(&mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !mnt.join("ids").exists() {
        assert!(child.try_wait().unwrap().is_none(), "mount exited early");
        assert!(Instant::now() < deadline, "never mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rel = src.strip_prefix("/").unwrap();
    let names = |p: &std::path::Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&mnt), ["hosts", "ids", "snapshots", "tags"]);
    assert_eq!(names(&mnt.join("ids")), std::slice::from_ref(&short));
    assert!(names(&mnt.join("snapshots")).contains(&"latest".to_string()));
    let latest = mnt.join("snapshots/latest").join(rel);
    assert_eq!(names(&latest), ["big.bin", "docs", "link"]);
    assert_eq!(
        fs::read_to_string(latest.join("docs/readme.txt")).unwrap(),
        "read me"
    );
    assert_eq!(
        fs::read_link(latest.join("link")).unwrap(),
        std::path::Path::new("docs/readme.txt")
    );
    assert_eq!(fs::read_to_string(latest.join("link")).unwrap(), "read me");
    let by_host = mnt.join("hosts").join(&host);
    assert_eq!(names(&by_host).len(), 1);
    let by_tag = mnt.join("tags/nightly");
    let tagged = by_tag.join(&names(&by_tag)[0]).join(rel);
    assert_eq!(
        fs::metadata(tagged.join("big.bin")).unwrap().len(),
        big.len() as u64
    );
    // Read-only.
    assert!(fs::write(latest.join("new.txt"), "x").is_err());

    // One MiB from the middle of the 40 MiB file: only the blobs there are fetched.
    let _ = server.requests();
    let mut f = fs::File::open(latest.join("big.bin")).unwrap();
    f.seek(SeekFrom::Start(25 << 20)).unwrap();
    let mut middle = vec![0u8; 1 << 20];
    f.read_exact(&mut middle).unwrap();
    assert!(middle == big[25 << 20..26 << 20], "the middle differs");
    let fetched: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/data/"))
        .collect();
    assert!(
        !fetched.is_empty() && fetched.len() <= 6,
        "a 1 MiB read of a 40 MiB file fetched {} blobs: {fetched:#?}",
        fetched.len()
    );
    eprintln!(
        "a 1 MiB read from the middle of a 40 MiB file: {} ranged GETs",
        fetched.len()
    );
    drop(f);
    // The whole file reads back identical.
    assert!(fs::read(latest.join("big.bin")).unwrap() == big);

    let (status, _) = sigterm_and_wait(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(!mounted(&mnt), "still mounted after SIGTERM");
    assert!(fs::read_dir(&mnt).unwrap().next().is_none());
    // The lock went with it.
    assert_ok(&env.hoard(&["check"]));
}
