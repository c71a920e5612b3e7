//! The independent reader (`tools/hoard-read.py`, Python, written from docs/FORMAT.md alone)
//! against repositories hoard wrote: local and S3-server layouts, compressed and raw blobs,
//! files across several packs, hard links, symlinks, empty files, non-UTF-8 names, after a
//! prune's repack. Its restore must equal the source byte for byte; damage must stop it.
//!
//! The reader's packages are installed from PyPI into a virtualenv under the target
//! directory on first use (or `HOARD_READER_PYTHON` names an interpreter that has them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;

fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("HOARD_READER_PYTHON") {
                return PathBuf::from(p);
            }
            let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reader-venv");
            let py = venv.join("bin/python3");
            let wanted = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/requirements.txt");
            let stamp = venv.join("installed-requirements.txt");
            // nextest runs each test in its own process: one sets the virtualenv up while the
            // others wait (two at once clear each other's files).
            let lock = fs::File::create(venv.with_extension("lock")).unwrap();
            let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .unwrap();
            if fs::read(&stamp).ok() != fs::read(&wanted).ok() {
                let run = |c: &mut Command| {
                    let out = c.output().unwrap();
                    assert!(
                        out.status.success(),
                        "setting up the reader's packages failed (PyPI must be reachable, or set HOARD_READER_PYTHON): {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                };
                run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv));
                run(Command::new(&py)
                    .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                    .arg(&wanted));
                fs::copy(&wanted, &stamp).unwrap();
            }
            py
        })
        .clone()
}

fn reader(dir: &Path, args: &[&str], password: &str) -> Output {
    Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/hoard-read.py"))
        .arg(dir)
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .output()
        .unwrap()
}

/// `make_tree` plus files that span several 1 MiB packs, compressible and not.
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    make_tree(&src);
    fs::write(src.join("multi-pack.bin"), random_bytes(6 << 20, 3)).unwrap();
    let text: String = (0..300_000)
        .map(|i| format!("row {i}, value {}\n", i % 97))
        .collect();
    fs::write(src.join("docs/compressible.csv"), text).unwrap();
    src
}

/// Backs `src` up, then changes it and backs it up again; returns both snapshot ids.
fn two_snapshots(env: &Env, src: &Path) -> (String, String) {
    let first = env.hoard_json(&["backup", src.to_str().unwrap()]);
    let first_tree = env.path("first");
    copy_tree(src, &first_tree);
    fs::write(
        src.join("docs/text.txt"),
        b"changed after the first snapshot",
    )
    .unwrap();
    fs::remove_file(src.join("run.sh")).unwrap();
    let second = env.hoard_json(&["backup", src.to_str().unwrap()]);
    (
        first["snapshot_id"].as_str().unwrap().to_string(),
        second["snapshot_id"].as_str().unwrap().to_string(),
    )
}

/// A copy with hard links, symlinks, modes and times kept (the first snapshot's source).
fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn init_small_packs(env: &Env) {
    let mut args = vec!["init", "--pack-size", "1"];
    args.extend_from_slice(&CHEAP_KDF);
    assert_ok(&env.hoard(&args));
}

/// Both kinds of blob and files over several packs are really in the repository.
fn assert_matrix(env: &Env) {
    let ids = String::from_utf8(env.hoard(&["list", "index"]).stdout).unwrap();
    let (mut compressed, mut raw, mut packs) = (false, false, 0);
    for id in ids.lines() {
        let v: serde_json::Value =
            serde_json::from_slice(&env.hoard(&["cat", "index", id]).stdout).unwrap();
        for p in v["packs"].as_array().unwrap() {
            packs += 1;
            for b in p["blobs"].as_array().unwrap() {
                compressed |= b["compressed"] == true;
                raw |= b["compressed"] == false && b["type"] == "data";
            }
        }
    }
    assert!(
        compressed && raw && packs > 6,
        "compressed {compressed}, raw {raw}, {packs} packs"
    );
}

fn restore_and_compare(env: &Env, dir: &Path, snapshot: &str, expect: &Path) {
    let target = env.path(&format!("read-{snapshot}"));
    let out = reader(
        dir,
        &["restore", snapshot, target.to_str().unwrap()],
        PASSWORD,
    );
    assert!(
        out.status.success(),
        "reader: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let src = env.path("src");
    assert_same_tree(expect, &target.join(src.strip_prefix("/").unwrap()));
}

fn round_trip(env: Env) {
    init_small_packs(&env);
    let src = source(&env);
    let (first, second) = two_snapshots(&env, &src);
    assert_matrix(&env);
    let out = reader(&env.storage, &["snapshots"], PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains(&first[..8]) && listed.contains(&second[..8]),
        "{listed}"
    );
    assert!(listed.contains("2 snapshots"), "{listed}");
    restore_and_compare(&env, &env.storage, "latest", &src);
    restore_and_compare(&env, &env.storage, &first[..8], &env.path("first"));

    // After forget and a prune that repacks every partly used pack, the reader still reads
    // the one snapshot left (new packs, a new index superseding the old files).
    assert_ok(&env.hoard(&["forget", &first]));
    assert_ok(&env.hoard(&["prune", "--max-unused", "0"]));
    let target = env.path("read-latest");
    fs::remove_dir_all(&target).unwrap();
    restore_and_compare(&env, &env.storage, "latest", &src);
}

#[test]
fn local_repository_restores_byte_identical() {
    round_trip(Env::empty());
}

#[test]
fn s3_server_layout_restores_byte_identical() {
    // The S3 test server keeps each object as a file under bucket/prefix/: the layout a
    // bucket copied to disk (aws s3 sync, rclone) has.
    let server = hoard_testkit::S3Server::https().unwrap();
    round_trip(Env::s3_empty(server, "team/repo"));
}

#[test]
fn damage_and_a_wrong_password_stop_the_reader() {
    let env = Env::empty();
    init_small_packs(&env);
    let src = source(&env);
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    // Files that are not part of the format are ignored.
    fs::write(env.storage.join("data/README"), b"not a pack").unwrap();
    let out = reader(&env.storage, &["snapshots"], "wrong");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));

    // One flipped byte in the middle of the largest pack: its name no longer matches.
    let pack = largest_pack(&env);
    flip_middle_bit(&pack);
    let target = env.path("out");
    let out = reader(
        &env.storage,
        &["restore", "latest", target.to_str().unwrap()],
        PASSWORD,
    );
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("does not match its name"), "{e}");

    // The config is the one file not named by its hash: its seal stops a changed byte.
    flip_middle_bit(&pack);
    let config = env.storage.join("config");
    let mut c = fs::read(&config).unwrap();
    let last = c.len() - 1;
    c[last] ^= 1;
    writable(&config);
    fs::write(&config, &c).unwrap();
    let out = reader(&env.storage, &["snapshots"], PASSWORD);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("config: failed authentication"), "{e}");
}
