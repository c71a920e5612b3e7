//! Odd inputs a sysadmin gives without thinking: paths through symlinks, a path list with a
//! missing entry, an include pattern that matches nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;

use common::*;

#[test]
fn a_path_through_a_symlinked_directory_is_found_as_it_was_given() {
    let env = Env::new();
    let real = env.path("data/real");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("file.txt"), b"through the link").unwrap();
    std::os::unix::fs::symlink(&real, env.path("data/link")).unwrap();
    let given = env.path("data/link/file.txt");
    assert_ok(&env.hoard(&["backup", "-q", given.to_str().unwrap()]));

    // ls, dump and restore find the path exactly as it was given.
    let ls = env.hoard(&["ls", "latest"]);
    assert_ok(&ls);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains(given.to_str().unwrap()),
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
    let dump = env.hoard(&["dump", "latest", given.to_str().unwrap()]);
    assert_ok(&dump);
    assert_eq!(dump.stdout, b"through the link");
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let restored = target.join(given.strip_prefix("/").unwrap());
    assert_eq!(fs::read(&restored).unwrap(), b"through the link");
    assert!(fs::symlink_metadata(restored.parent().unwrap())
        .unwrap()
        .is_dir());
    // check verifies that every path a snapshot was made of is in its tree.
    assert_ok(&env.hoard(&["check"]));
}

#[test]
fn a_missing_path_among_several_is_reported_and_the_rest_backed_up() {
    let env = Env::new();
    let here = env.path("here");
    fs::create_dir_all(&here).unwrap();
    fs::write(here.join("a.txt"), b"present").unwrap();
    let gone = env.path("gone");
    let out = env.hoard(&["backup", here.to_str().unwrap(), gone.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(gone.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    let snaps = env.hoard_json(&["snapshots"]);
    let paths = snaps[0]["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].as_str().unwrap(), here.to_str().unwrap());
    // Nothing there at all: a fatal error, no snapshot.
    let out = env.hoard(&["backup", gone.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(env.hoard_json(&["snapshots"]).as_array().unwrap().len(), 1);
}

#[test]
fn an_include_that_matches_nothing_says_so() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"x").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let target = env.path("restored");
    let out = env.hoard(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "/no/such/*.txt",
    ]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("matches --include"),
        "{}",
        stderr(&out)
    );
}

/// A POSIX access ACL as the kernel stores it: owner rw, user 1000 r, group r, mask r, other r.
fn access_acl() -> Vec<u8> {
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    acl
}

#[test]
fn extended_attributes_and_acls_survive_a_round_trip() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let file = src.join("sub/notes.txt");
    fs::write(&file, b"with attributes").unwrap();
    let mut attrs: Vec<(&str, &std::path::Path, Vec<u8>)> = vec![
        ("user.comment", &file, b"binary \x00\xff value".to_vec()),
        ("user.origin", &src, b"the directory's own".to_vec()),
        ("system.posix_acl_access", &file, access_acl()),
    ];
    // security.* needs privileges: tested where the test runs as root (as CI does).
    if nix::unistd::geteuid().is_root() {
        attrs.push(("security.hoard-test", &file, b"security value".to_vec()));
    }
    for (name, path, value) in &attrs {
        xattr::set(path, name, value).unwrap();
    }
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let restored = |p: &std::path::Path| target.join(p.strip_prefix("/").unwrap());
    for (name, path, value) in &attrs {
        assert_eq!(
            xattr::get(restored(path), name).unwrap().as_deref(),
            Some(value.as_slice()),
            "{name} on {}",
            path.display()
        );
    }
    // Unchanged attributes do not make the tree new on the next run; a changed one does.
    let again = env.hoard_json(&["backup", src.to_str().unwrap()]);
    assert_eq!(again["files_unmodified"], 1, "{again}");
    xattr::set(&file, "user.comment", b"changed").unwrap();
    let changed = env.hoard_json(&["backup", src.to_str().unwrap()]);
    assert!(changed["dirs_changed"].as_u64().unwrap() > 0, "{changed}");
}

#[test]
fn sigterm_stops_a_backup_within_seconds_while_a_read_hangs() {
    use std::time::Duration;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"first").unwrap();
    fs::write(src.join("hangs.bin"), vec![7u8; 100_000]).unwrap();
    // The reader is held inside its read, as on a hung network mount, and never let go.
    let (mut child, _never) = hold_at(&env, "file-read", &["backup", src.to_str().unwrap()]);
    let (status, took) = sigterm_and_wait(&mut child);
    assert_eq!(status.code(), Some(130));
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Stopped cleanly: no snapshot, no lock left, the repository checks clean.
    let empty = |d: &str| {
        let d = env.storage.join(d);
        !d.exists() || files_below(&d).is_empty()
    };
    assert!(empty("locks") && empty("snapshots"));
    assert_ok(&env.hoard(&["check", "--read-data"]));
}

/// A disk image or database file is mostly zeros: restored, those runs stay holes, and the
/// data around them is in place.
#[test]
fn runs_of_zeros_are_restored_as_holes() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let src = env.path("data");
    fs::create_dir_all(&src).unwrap();
    let head = random_bytes(100_000, 7);
    let tail = random_bytes(100_000, 8);
    let mut image = head.clone();
    image.resize(head.len() + 64 * 1024 * 1024, 0);
    image.extend_from_slice(&tail);
    fs::write(src.join("disk.img"), &image).unwrap();
    // A file of one blob, all zeros: created by its write, which leaves it a hole too.
    fs::write(src.join("zeros.bin"), vec![0u8; 300_000]).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));

    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let restored = target.join(src.strip_prefix("/").unwrap()).join("disk.img");
    assert_eq!(fs::read(&restored).unwrap(), image);
    let allocated = fs::metadata(&restored).unwrap().blocks() * 512;
    assert!(
        allocated < 16 * 1024 * 1024,
        "{allocated} bytes allocated for a file of {} with 64 MiB of zeros",
        image.len()
    );
    let zeros = restored.with_file_name("zeros.bin");
    assert_eq!(fs::read(&zeros).unwrap(), vec![0u8; 300_000]);
    assert_eq!(fs::metadata(&zeros).unwrap().blocks(), 0, "a hole");
}

/// A file listed small that has grown by the time it is read (a log being written) is read to
/// its end in chunks no larger than the repository allows: not in one read that holds all of
/// it in memory as one oversized chunk.
#[test]
fn a_small_file_that_grows_before_it_is_read_is_cut_into_chunks() {
    use std::io::Write;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let log = src.join("grows.log");
    fs::write(&log, b"first line\n").unwrap();
    // Held after the open, before the read: what is appended now is what the read finds.
    let (child, go) = hold_at(
        &env,
        "file-read",
        &["backup", "--json", src.to_str().unwrap()],
    );
    let grown = random_bytes(20 * 1024 * 1024, 11);
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&grown)
        .unwrap();
    fs::write(&go, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);

    let max = env.hoard_json(&["cat", "config"])["chunker"]["max_size"]
        .as_u64()
        .unwrap();
    let mut blobs = 0;
    for file in files_below(&env.storage.join("index")) {
        let id = file.file_name().unwrap().to_str().unwrap();
        for pack in env.hoard_json(&["cat", "index", id])["packs"]
            .as_array()
            .unwrap()
        {
            for blob in pack["blobs"].as_array().unwrap() {
                if blob["type"] == "data" {
                    blobs += 1;
                    let len = blob["raw_length"].as_u64().unwrap();
                    assert!(len <= max, "a data blob of {len} bytes, above {max}");
                }
            }
        }
    }
    assert!(blobs >= 3, "20 MiB in {blobs} data blobs");
    // All of it is stored, as it was when read.
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let restored = fs::read(target.join(log.strip_prefix("/").unwrap())).unwrap();
    assert_eq!(restored.len(), 11 + grown.len());
    assert!(restored.starts_with(b"first line\n") && restored.ends_with(&grown));
    assert_ok(&env.hoard(&["check", "--read-data"]));
}

/// Run as root (as CI is), restore gives every file the owner its snapshot names, whether
/// that is root or someone else, for files written in one piece, in several, or empty.
#[test]
fn restore_as_root_gives_files_their_owners() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: owners are only restored as root");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let owners = [
        ("small.txt", 1234, 5678),
        ("large.bin", 4321, 8765),
        ("empty", 77, 0),
        ("roots.txt", 0, 0),
        ("group-only.txt", 0, 4242),
    ];
    for (name, uid, gid) in owners {
        let path = src.join(name);
        match name {
            "large.bin" => fs::write(&path, random_bytes(5 << 20, 11)).unwrap(),
            "empty" => fs::write(&path, b"").unwrap(),
            _ => fs::write(&path, name.as_bytes()).unwrap(),
        }
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let restored = target.join(src.strip_prefix("/").unwrap());
    for (name, uid, gid) in owners {
        let md = fs::symlink_metadata(restored.join(name)).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid), "{name}");
    }
    assert_same_tree(&src, &restored);
}
