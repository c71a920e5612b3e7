//! Every kind of repository object × every kind of harm: no panic, a message naming the
//! object, the expected exit codes, healthy snapshots still restore, and after the matching
//! repair `check --read-data` passes.
//!
//! Two backups of separate directories give two snapshots with their own index file, data
//! pack and tree pack; the harm always lands on the second (B), so the first (A) is the
//! healthy one that must keep restoring.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use hoard::format::crypto::MasterKey;
use hoard::format::keyfile::KeyFile;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Config,
    Key,
    Index,
    Snapshot,
    Lock,
    DataPack,
    TreePack,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Harm {
    /// One byte flipped in the middle.
    Flip,
    /// Cut to half its length.
    Truncate,
    /// Zero bytes.
    Empty,
    /// Random bytes planted under a valid name (their hash).
    Garbage,
    /// Authentic and well-formed (sealed with the repository key), but with values no writer
    /// produces: out-of-range sizes, a tree that does not exist, a date centuries ahead.
    Hostile,
}

const HARMS: [Harm; 5] = [
    Harm::Flip,
    Harm::Truncate,
    Harm::Empty,
    Harm::Garbage,
    Harm::Hostile,
];

struct Case {
    env: Env,
    src_a: PathBuf,
    src_b: PathBuf,
    snap_a: String,
    snap_b: String,
    /// Files of the repository written by backup B.
    b_files: Vec<PathBuf>,
}

/// No panic, whatever the exit code.
fn calm(out: &Output, what: &str) {
    let e = stderr(out);
    assert_ne!(out.status.code(), Some(101), "{what} panicked: {e}");
    assert!(!e.contains("panicked"), "{what} panicked: {e}");
    assert!(out.status.code().is_some(), "{what} was killed: {e}");
}

fn setup(env: Env) -> Case {
    let src_a = env.path("a");
    let src_b = env.path("b");
    for (dir, seed) in [(&src_a, 1u64), (&src_b, 2)] {
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("one.bin"), random_bytes(150_000, seed)).unwrap();
        fs::write(dir.join("sub/two.txt"), format!("text {seed}")).unwrap();
    }
    assert_ok(&env.hoard(&["backup", "-q", src_a.to_str().unwrap()]));
    let before = env.repo_files();
    assert_ok(&env.hoard(&["backup", "-q", src_b.to_str().unwrap()]));
    let b_files = env
        .repo_files()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let snaps = env.hoard_json(&["snapshots"]);
    let snap_a = snaps[0]["id"].as_str().unwrap().to_string();
    let snap_b = snaps[1]["id"].as_str().unwrap().to_string();
    Case {
        env,
        src_a,
        src_b,
        snap_a,
        snap_b,
        b_files,
    }
}

fn master_key(env: &Env) -> MasterKey {
    for f in files_below(&env.storage.join("keys")) {
        if let Ok(kf) = serde_json::from_slice::<KeyFile>(&fs::read(&f).unwrap()) {
            if let Ok(Some(k)) = kf.open(PASSWORD.as_bytes()) {
                return k;
            }
        }
    }
    panic!("no key opens with the test password");
}

fn harm_file(path: &Path, harm: Harm) {
    writable(path);
    let mut b = fs::read(path).unwrap();
    match harm {
        Harm::Flip => {
            let i = b.len() / 2;
            b[i] ^= 0x20;
        }
        Harm::Truncate => b.truncate(b.len() / 2),
        Harm::Empty => b.clear(),
        Harm::Garbage | Harm::Hostile => unreachable!("planted, not harmed in place"),
    }
    fs::write(path, b).unwrap();
}

fn opened_doc(key: &MasterKey, path: &Path) -> serde_json::Value {
    let plain = key.open(&fs::read(path).unwrap(), "test").unwrap();
    let json = hoard::format::blob::decode_doc_payload(&plain, "test").unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn sealed(key: &MasterKey, doc: &serde_json::Value) -> Vec<u8> {
    hoard::format::blob::seal_doc(key, doc).unwrap()
}

fn file_id(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// B's file of a kind (`data` packs: the larger is the data pack, the smaller the trees).
fn b_file(case: &Case, dir: &str, largest: bool) -> PathBuf {
    let mut files: Vec<&PathBuf> = case
        .b_files
        .iter()
        .filter(|p| p.strip_prefix(&case.env.storage).unwrap().starts_with(dir))
        .collect();
    files.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let f = if largest { files.last() } else { files.first() };
    (*f.unwrap()).clone()
}

/// A well-formed pack sealed with the repository key whose one entry claims a length no
/// writer produces.
fn hostile_pack(key: &MasterKey, tree: bool) -> Vec<u8> {
    let body = random_bytes(64, 77);
    let mut entry = vec![u8::from(tree), 0];
    entry.extend_from_slice(&64u32.to_le_bytes());
    entry.extend_from_slice(&u32::MAX.to_le_bytes());
    entry.extend_from_slice(&random_bytes(32, 78));
    let header = key.seal(&entry);
    let mut pack = body;
    pack.extend_from_slice(&header);
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    pack
}

/// Harms the object of `kind`; returns what messages must name (a file's id, or "config").
fn harm(case: &Case, kind: Kind, harm: Harm) -> String {
    let env = &case.env;
    let key = master_key(env);
    match kind {
        Kind::Config => {
            let path = env.storage.join("config");
            match harm {
                Harm::Garbage => fs::write(&path, random_bytes(300, 5)).unwrap(),
                Harm::Hostile => {
                    let mut doc = opened_doc(&key, &path);
                    doc["pack_size"] = serde_json::json!(u32::MAX);
                    doc["compression_level"] = serde_json::json!(1000);
                    writable(&path);
                    fs::write(&path, sealed(&key, &doc)).unwrap();
                }
                h => harm_file(&path, h),
            }
            "config".into()
        }
        Kind::Key => {
            // A second key, for another password, takes the harm: the one in use must still
            // open the repository.
            let pw = env.path("other-password");
            fs::write(&pw, "another password").unwrap();
            let before = files_below(&env.storage.join("keys"));
            let mut args = vec!["key", "add", "--new-password-file", pw.to_str().unwrap()];
            args.extend_from_slice(&CHEAP_KDF);
            assert_ok(&env.hoard(&args));
            let second = files_below(&env.storage.join("keys"))
                .into_iter()
                .find(|p| !before.contains(p))
                .unwrap();
            match harm {
                Harm::Garbage => file_id(&plant(env, "keys", &random_bytes(500, 6))),
                Harm::Hostile => {
                    let mut doc: serde_json::Value =
                        serde_json::from_slice(&fs::read(&second).unwrap()).unwrap();
                    doc["memory_kib"] = serde_json::json!(u32::MAX);
                    doc["iterations"] = serde_json::json!(1_000_000);
                    file_id(&plant(env, "keys", doc.to_string().as_bytes()))
                }
                h => {
                    harm_file(&second, h);
                    file_id(&second)
                }
            }
        }
        Kind::Index => {
            let path = b_file(case, "index", true);
            match harm {
                Harm::Garbage => file_id(&plant(env, "index", &random_bytes(700, 7))),
                Harm::Hostile => {
                    // B's index with every length and offset made absurd, in its place.
                    let mut doc = opened_doc(&key, &path);
                    for p in doc["packs"].as_array_mut().unwrap() {
                        for b in p["blobs"].as_array_mut().unwrap() {
                            for f in ["offset", "length", "raw_length", "uncompressed_length"] {
                                if b.get(f).is_some() {
                                    b[f] = serde_json::json!(u32::MAX);
                                }
                            }
                        }
                    }
                    fs::remove_file(&path).unwrap();
                    file_id(&plant(env, "index", &sealed(&key, &doc)))
                }
                h => {
                    harm_file(&path, h);
                    file_id(&path)
                }
            }
        }
        Kind::Snapshot => {
            let path = b_file(case, "snapshots", true);
            match harm {
                Harm::Garbage => file_id(&plant(env, "snapshots", &random_bytes(400, 8))),
                Harm::Hostile => {
                    // B's snapshot naming a tree that does not exist, dated far ahead.
                    let mut doc = opened_doc(&key, &path);
                    doc["tree"] = serde_json::json!(hoard::Id::of_file(b"no such tree").to_hex());
                    doc["time"] = serde_json::json!("9999-12-31T23:59:59Z");
                    doc["hostname"] = serde_json::json!("h".repeat(100_000));
                    fs::remove_file(&path).unwrap();
                    file_id(&plant(env, "snapshots", &sealed(&key, &doc)))
                }
                h => {
                    harm_file(&path, h);
                    file_id(&path)
                }
            }
        }
        Kind::Lock => {
            // An exclusive lock held by a live process on another host: it would block.
            let mut lock = hoard::LockInfo::new(true);
            lock.hostname = "elsewhere".into();
            lock.pid_namespace = None;
            let mut doc = serde_json::to_value(&lock).unwrap();
            if harm == Harm::Hostile {
                doc["time"] = serde_json::json!("9999-12-31T23:59:59Z");
                return file_id(&plant(env, "locks", &sealed(&key, &doc)));
            }
            if harm == Harm::Garbage {
                return file_id(&plant(env, "locks", &random_bytes(200, 9)));
            }
            let path = plant(env, "locks", &sealed(&key, &doc));
            harm_file(&path, harm);
            file_id(&path)
        }
        Kind::DataPack | Kind::TreePack => {
            let tree = kind == Kind::TreePack;
            match harm {
                Harm::Garbage => file_id(&plant(env, "data", &random_bytes(3000, 10))),
                Harm::Hostile => file_id(&plant(env, "data", &hostile_pack(&key, tree))),
                h => {
                    let path = b_file(case, "data", !tree);
                    harm_file(&path, h);
                    file_id(&path)
                }
            }
        }
    }
}

fn restore_same(case: &Case, snapshot: &str, src: &Path) -> Output {
    let target = case.env.path("restored");
    let _ = fs::remove_dir_all(&target);
    let out = case
        .env
        .hoard(&["restore", snapshot, "--target", target.to_str().unwrap()]);
    if out.status.success() {
        assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
    }
    out
}

/// The command that brings this object back to a clean check.
fn repair(case: &Case, kind: Kind, harm: Harm, name: &str) {
    let env = &case.env;
    let run = |args: &[&str]| {
        let out = env.hoard(args);
        calm(&out, &args.join(" "));
        assert_ok(&out);
    };
    match kind {
        Kind::Config => run(&["repair", "config"]),
        Kind::Key => run(&["key", "remove", name]),
        Kind::Lock => run(&["unlock"]),
        Kind::Index => run(&["repair", "index"]),
        // A snapshot that cannot be read is removed by id; one that reads but needs a tree
        // that is gone is rewritten.
        Kind::Snapshot if harm == Harm::Hostile => run(&["repair", "snapshots", "--forget"]),
        Kind::Snapshot => run(&["forget", name]),
        Kind::DataPack | Kind::TreePack => {
            run(&["repair", "packs", name]);
            run(&["repair", "snapshots", "--forget"]);
        }
    }
}

fn case(env: Env, kind: Kind, h: Harm) {
    let c = setup(env);
    let env = &c.env;
    let name = harm(&c, kind, h);
    let short = &name[..name.len().min(8)];
    let what = format!("{kind:?} × {h:?}");
    let mut said = String::new();

    // Listing: only a damaged config stops it.
    let started = Instant::now();
    let out = env.hoard(&["snapshots"]);
    calm(&out, &format!("{what}: snapshots"));
    said += &stderr(&out);
    if kind == Kind::Config {
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("repair config"),
            "{what}: {}",
            stderr(&out)
        );
    } else {
        assert_ok(&out);
    }

    // The healthy snapshot restores, unless nothing can be opened.
    let out = restore_same(&c, &c.snap_a, &c.src_a);
    calm(&out, &format!("{what}: restore A"));
    said += &stderr(&out);
    assert_eq!(
        out.status.success(),
        kind != Kind::Config,
        "{what}: {}",
        stderr(&out)
    );

    // A backup goes ahead past damaged or planted locks, keys, snapshots and packs.
    let out = env.hoard(&["backup", "-q", c.src_a.to_str().unwrap()]);
    calm(&out, &format!("{what}: backup"));
    said += &stderr(&out);
    assert_eq!(
        out.status.success(),
        kind != Kind::Config,
        "{what}: {}",
        stderr(&out)
    );

    // check finds what it can see; with --read-data, every harmed object but keys and locks.
    let out = env.hoard(&["check", "--read-data"]);
    calm(&out, &format!("{what}: check"));
    said += &stderr(&out);
    said += &String::from_utf8_lossy(&out.stdout);
    // Keys and locks are not checked; a planted pack nobody references is only noted.
    let planted_pack = matches!(kind, Kind::DataPack | Kind::TreePack)
        && matches!(h, Harm::Garbage | Harm::Hostile);
    let expect_clean = matches!(kind, Kind::Key | Kind::Lock) || planted_pack;
    assert_eq!(
        out.status.success(),
        expect_clean,
        "{what}: check --read-data: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{what}: something waited"
    );
    // Somewhere it was said which object is harmed.
    assert!(said.contains(short), "{what}: {short} never named: {said}");

    repair(&c, kind, h, &name);
    let out = env.hoard(&["check", "--read-data"]);
    calm(&out, &format!("{what}: check after repair"));
    assert_ok(&out);
    let out = restore_same(&c, &c.snap_a, &c.src_a);
    assert_ok(&out);
    // B's data survives every harm that does not destroy it.
    if matches!(kind, Kind::Config | Kind::Key | Kind::Lock | Kind::Index) || planted_pack {
        let out = restore_same(&c, &c.snap_b, &c.src_b);
        assert_ok(&out);
    }
}

fn every_harm(kind: Kind) {
    for h in HARMS {
        case(Env::new(), kind, h);
    }
}

/// The same on S3, where reads are ranged requests and listings come from the server: one
/// harm in place and one planted file per kind.
#[test]
fn on_s3() {
    for kind in [
        Kind::Config,
        Kind::Key,
        Kind::Index,
        Kind::Snapshot,
        Kind::Lock,
        Kind::DataPack,
        Kind::TreePack,
    ] {
        case(Env::s3(), kind, Harm::Flip);
        case(Env::s3(), kind, Harm::Garbage);
    }
}

#[test]
fn config() {
    every_harm(Kind::Config)
}

#[test]
fn key() {
    every_harm(Kind::Key)
}

#[test]
fn index() {
    every_harm(Kind::Index)
}

#[test]
fn snapshot() {
    every_harm(Kind::Snapshot)
}

#[test]
fn lock() {
    every_harm(Kind::Lock)
}

#[test]
fn data_pack() {
    every_harm(Kind::DataPack)
}

#[test]
fn tree_pack() {
    every_harm(Kind::TreePack)
}
