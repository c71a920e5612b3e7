//! Damaged and planted repository files: anyone who can write to the bucket can add files
//! under valid names, and a flipped byte can damage any file. What does not need the file
//! keeps working, the file is named, and it can be removed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// [`plant`], with the short id messages name the file by.
fn plant_named(env: &Env, dir: &str, bytes: &[u8]) -> (PathBuf, String) {
    let path = plant(env, dir, bytes);
    let short = path.file_name().unwrap().to_string_lossy()[..8].to_string();
    (path, short)
}

fn only_file(dir: &Path) -> PathBuf {
    let files = files_below(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Keeps the first half of a file: a pack loses its header and its later blobs.
fn cut_in_half(path: &Path) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

#[test]
fn unreadable_snapshots_are_skipped_named_and_removable() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"kept").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    // One planted under a valid name, one real snapshot with a flipped byte.
    let (_, planted) = plant_named(&env, "snapshots", b"{\"not\": \"a sealed snapshot\"}");
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let newest = env.hoard_json(&["snapshots"]).as_array().unwrap()[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let damaged = env.storage.join("snapshots").join(&newest);
    flip_middle_bit(&damaged);

    // Listing, backups (parent search) and restores of healthy snapshots go on, with a warning
    // naming each bad file.
    let out = env.hoard(&["--json", "snapshots"]);
    assert_ok(&out);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let e = stderr(&out);
    assert!(e.contains(&planted) && e.contains(&newest[..8]), "{e}");
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));

    // check names them; prune will not treat their data as garbage.
    let out = env.hoard(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains(&planted) && e.contains(&newest[..8]), "{e}");
    let out = env.hoard(&["prune"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing was pruned"),
        "{}",
        stderr(&out)
    );

    // forget removes them by id, without reading them; then all is clean again.
    assert_ok(&env.hoard(&["forget", &planted, &newest[..8]]));
    assert_ok(&env.hoard(&["check", "--read-data"]));
    assert_ok(&env.hoard(&["prune"]));
}

#[test]
fn unreadable_lock_files_block_nobody() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"locked out?").unwrap();
    let (planted, _) = plant_named(&env, "locks", b"garbage where a lock should be");
    let start = Instant::now();
    // Exclusive (prune) and shared (backup) both go ahead at once, and the file is removed.
    assert_ok(&env.hoard(&["prune"]));
    assert!(!planted.exists());
    let (planted, short) = plant_named(&env, "locks", b"another planted lock");
    let out = env.hoard(&["backup", src.to_str().unwrap()]);
    assert_ok(&out);
    assert!(stderr(&out).contains(&short), "{}", stderr(&out));
    assert!(!planted.exists());
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn hostile_and_damaged_key_files() {
    let env = Env::new();
    let real_key = only_file(&env.storage.join("keys"));
    let real: serde_json::Value = serde_json::from_slice(&fs::read(&real_key).unwrap()).unwrap();

    // A well-formed key file asking argon2 for 4 TiB: the real key still opens the
    // repository (whichever order the key files are tried in)...
    let mut hostile = real.clone();
    hostile["memory_kib"] = serde_json::json!(u32::MAX);
    hostile["iterations"] = serde_json::json!(1_000_000);
    let (hostile_path, hostile_id) =
        plant_named(&env, "keys", &serde_json::to_vec(&hostile).unwrap());
    let start = Instant::now();
    assert_ok(&env.hoard(&["snapshots"]));
    // ...and with the wrong password every key file is tried: the hostile one is refused with
    // a warning naming it (argon2 never runs with its costs), and it is still the password
    // that is wrong (exit 12).
    let out = env
        .cmd()
        .env("RESTIC_PASSWORD", "not the password")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&hostile_id) && e.contains("out of bounds"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));

    // The only real key damaged: reported as damaged (exit 1), not as a wrong password.
    fs::remove_file(&hostile_path).unwrap();
    flip_middle_bit(&real_key);
    let out = env.hoard(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    let name = real_key.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        e.contains(&name) && e.contains("does not match its name"),
        "{e}"
    );
    assert!(!e.contains("wrong password"), "{e}");
}

#[test]
fn a_file_that_cannot_be_restored_whole_does_not_look_whole() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let data = random_bytes(100_000, 9);
    fs::write(src.join("f"), &data).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let pack = largest_pack(&env);
    flip_middle_bit(&pack);
    let target = env.path("out");
    let summary = restore_with_errors(&env, &target);
    assert_eq!(summary["files_damaged"], 1, "{summary}");
    assert_eq!(summary["files_restored"], 0, "{summary}");
    let message = summary["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(".damaged"), "{message}");
    let dir = target.join(src.strip_prefix("/").unwrap());
    assert!(!dir.join("f").exists(), "nothing under the file's own name");
    let damaged = fs::metadata(dir.join("f.damaged")).unwrap();
    assert_ne!(
        damaged.modified().unwrap(),
        fs::metadata(src.join("f")).unwrap().modified().unwrap()
    );
}

/// A file of one blob is created by its write, after the batch is prepared. Something put at
/// its path in between is neither overwritten nor renamed as if it were the restore's.
#[test]
fn a_file_planted_before_a_one_blob_write_is_left_alone() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"first file").unwrap();
    fs::write(src.join("b"), b"second file").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let target = env.path("out");
    let (child, release) = hold_at(
        &env,
        "restore-after-prepare",
        &[
            "--json",
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    let dir = target.join(src.strip_prefix("/").unwrap());
    fs::write(dir.join("a"), b"not the restore's").unwrap();
    fs::write(&release, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["files_restored"], 1, "{summary}");
    assert_eq!(summary["files_damaged"], 0, "{summary}");
    let message = summary["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("exists"), "{message}");
    assert_eq!(fs::read(dir.join("a")).unwrap(), b"not the restore's");
    assert!(!dir.join("a.damaged").exists());
    assert_eq!(fs::read(dir.join("b")).unwrap(), b"second file");
}

#[test]
fn staging_files_left_by_dead_runs_are_cleaned() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"x").unwrap();
    let staging = env.storage.join(".tmp");
    fs::create_dir_all(&staging).unwrap();
    let old = staging.join("left-by-a-killed-backup");
    let fresh = staging.join("maybe-a-live-writer");
    fs::write(&old, b"half a pack").unwrap();
    fs::write(&fresh, b"being written").unwrap();
    let two_hours_ago = nix::sys::time::TimeSpec::new(
        (std::time::SystemTime::now() - Duration::from_secs(7200))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        0,
    );
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &old,
        &two_hours_ago,
        &two_hours_ago,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    // Any writer removes what is an hour old...
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    assert!(!old.exists());
    assert!(
        fresh.exists(),
        "a young staging file may belong to a live writer"
    );
    // ...and prune, which runs alone, removes everything.
    assert_ok(&env.hoard(&["prune"]));
    assert!(!fresh.exists());
}

#[test]
fn a_damaged_index_is_rebuilt_from_the_pack_headers() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.bin"), random_bytes(300_000, 21)).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    fs::write(src.join("b.bin"), random_bytes(300_000, 22)).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let index_files = files_below(&env.storage.join("index"));
    assert_eq!(index_files.len(), 2);
    let damaged = index_files[0].clone();
    flip_middle_bit(&damaged);
    let short = damaged.file_name().unwrap().to_string_lossy()[..8].to_string();
    plant(&env, "index", b"a planted index file");

    // What does not need the lost entries still works, naming the file; prune will not guess.
    let out = env.hoard(&["snapshots"]);
    assert_ok(&out);
    assert!(stderr(&out).contains(&short), "{}", stderr(&out));
    let out = env.hoard(&["prune"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("repair index"), "{}", stderr(&out));
    assert_eq!(env.hoard(&["check"]).status.code(), Some(1));

    // A repair killed after writing the new index leaves a repository that checks clean.
    let out = env
        .cmd()
        .args(["repair", "index"])
        .env("HOARD_TEST_HOOK", "repair-index-after-index:abort")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "{}", stderr(&out));
    assert_ok(&env.hoard(&["check", "--read-data"]));

    // Run to its end, the repair leaves one index made from the packs, and all is well.
    let stats = env.hoard_json(&["repair", "index"]);
    assert_eq!(
        stats["packs_damaged"].as_array().unwrap().len(),
        0,
        "{stats}"
    );
    assert_ok(&env.hoard(&["check", "--read-data"]));
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert_ok(&env.hoard(&["prune"]));
    assert_eq!(files_below(&env.storage.join("index")).len(), 1);
}

/// Backs up `src` with `a.bin`, then again with `b.bin` added, and loses the pack that holds
/// b.bin's data (the large one of the second backup's packs).
fn backup_twice_and_lose_b(env: &Env, src: &Path, seed: u64) {
    fs::create_dir_all(src).unwrap();
    fs::write(src.join("a.bin"), random_bytes(300_000, seed)).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let before = files_below(&env.storage.join("data"));
    fs::write(src.join("b.bin"), random_bytes(300_000, seed + 1)).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let lost = files_below(&env.storage.join("data"))
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(&lost).unwrap();
}

#[test]
fn snapshots_that_need_lost_data_are_repaired() {
    let env = Env::new();
    let src = env.path("src");
    backup_twice_and_lose_b(&env, &src, 31);
    let out = env.hoard(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("b.bin"), "{}", stderr(&out));
    assert_eq!(env.hoard(&["prune"]).status.code(), Some(1));

    // A dry run changes nothing; the repair writes a snapshot without b.bin, tagged.
    let plan = env.hoard_json(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(plan["repaired"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(env.hoard_json(&["snapshots"]).as_array().unwrap().len(), 2);
    let done = env.hoard_json(&["repair", "snapshots", "--forget"]);
    assert_eq!(done["repaired"].as_array().unwrap().len(), 1, "{done}");
    assert!(
        done["removed"][0].as_str().unwrap().contains("b.bin"),
        "{done}"
    );
    let snaps = env.hoard_json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().any(|s| s["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == "repaired"))));

    // prune can run again and drops the lost pack from the index; all checks clean.
    assert_ok(&env.hoard(&["prune"]));
    assert_ok(&env.hoard(&["check", "--read-data"]));
    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let dir = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(dir.join("a.bin")).unwrap(),
        fs::read(src.join("a.bin")).unwrap()
    );
    assert!(!dir.join("b.bin").exists());
}

/// The data pack of a one-pack backup of `files` random files, made writable.
fn backup_into_one_pack(env: &Env, src: &Path, files: usize) -> PathBuf {
    fs::create_dir_all(src).unwrap();
    for i in 0..files {
        fs::write(
            src.join(format!("f{i:02}")),
            random_bytes(40_000, 100 + i as u64),
        )
        .unwrap();
    }
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let pack = largest_pack(env);
    writable(&pack);
    pack
}

/// Files of `src` restored identically, and how many are missing.
fn restored_and_missing(env: &Env, src: &Path) -> (usize, usize) {
    let target = env.path("restored");
    let _ = fs::remove_dir_all(&target);
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let dir = target.join(src.strip_prefix("/").unwrap());
    let (mut same, mut missing) = (0, 0);
    for f in fs::read_dir(src).unwrap() {
        let f = f.unwrap();
        match fs::read(dir.join(f.file_name())) {
            Ok(b) => {
                assert_eq!(b, fs::read(f.path()).unwrap(), "{:?}", f.file_name());
                same += 1;
            }
            Err(_) => missing += 1,
        }
    }
    (same, missing)
}

#[test]
fn a_damaged_pack_is_salvaged_blob_by_blob() {
    let env = Env::new();
    let src = env.path("src");
    let pack = backup_into_one_pack(&env, &src, 20);
    let id = pack.file_name().unwrap().to_string_lossy().to_string();
    flip_middle_bit(&pack);
    let out = env.hoard(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&id[..8]), "{}", stderr(&out));

    // Killed after copying, nothing changed but unreferenced new packs; killed after the new
    // index, the damaged pack is only unreferenced. Either way a rerun completes the repair.
    let out = env
        .cmd()
        .args(["repair", "packs", &id[..10]])
        .env("HOARD_TEST_HOOK", "repair-packs-after-copy:abort")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "{}", stderr(&out));
    let out = env
        .cmd()
        .args(["repair", "packs", &id[..10]])
        .env("HOARD_TEST_HOOK", "repair-packs-after-index:abort")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "{}", stderr(&out));
    let stats = env.hoard_json(&["repair", "packs", &id]);
    // The flipped byte sits in one blob; the other 19 come back whole. The interrupted runs
    // already salvaged them, so this run finds them held elsewhere (or salvages them again).
    let lost = stats["blobs_lost"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{stats}");
    assert_eq!(
        stats["blobs_salvaged"].as_u64().unwrap() + stats["blobs_elsewhere"].as_u64().unwrap(),
        19,
        "{stats}"
    );
    assert!(!pack.exists());

    // The snapshot still needs the lost blob until `repair snapshots`; then all is clean.
    assert_eq!(env.hoard(&["check"]).status.code(), Some(1));
    assert_ok(&env.hoard(&["repair", "snapshots", "--forget"]));
    assert_ok(&env.hoard(&["check", "--read-data"]));
    assert_eq!(restored_and_missing(&env, &src), (19, 1));
    assert_ok(&env.hoard(&["prune"]));
    assert_ok(&env.hoard(&["check", "--read-data"]));
}

#[test]
fn a_truncated_pack_is_salvaged_from_the_index() {
    let env = Env::new();
    let src = env.path("src");
    let pack = backup_into_one_pack(&env, &src, 20);
    let id = pack.file_name().unwrap().to_string_lossy().to_string();
    // Cut the pack in half: its header is gone, so only the index knows what it held.
    cut_in_half(&pack);

    let out = env.hoard(&["repair", "packs", &id]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("repair snapshots"),
        "{}",
        stderr(&out)
    );
    assert_ok(&env.hoard(&["repair", "snapshots", "--forget"]));
    assert_ok(&env.hoard(&["check", "--read-data"]));
    let (same, missing) = restored_and_missing(&env, &src);
    assert_eq!(same + missing, 20);
    assert!((8..=11).contains(&same), "about half survive: {same}");
}

#[test]
fn repair_index_keeps_what_the_old_index_knew_of_a_pack_with_a_damaged_header() {
    let env = Env::new();
    let src = env.path("src");
    let pack = backup_into_one_pack(&env, &src, 20);
    let id = pack.file_name().unwrap().to_string_lossy().to_string();
    cut_in_half(&pack);

    // The header is gone; the index entries survive the rebuild, so the salvage still works.
    let stats = env.hoard_json(&["repair", "index"]);
    assert_eq!(stats["packs_kept_from_index"][0], id.as_str(), "{stats}");
    let stats = env.hoard_json(&["repair", "packs", &id]);
    let salvaged = stats["blobs_salvaged"].as_u64().unwrap();
    assert!((8..=11).contains(&salvaged), "{stats}");
    assert_ok(&env.hoard(&["repair", "snapshots", "--forget"]));
    assert_ok(&env.hoard(&["check", "--read-data"]));
    let (same, _) = restored_and_missing(&env, &src);
    assert_eq!(same as u64, salvaged);
}

#[test]
fn a_pack_longer_than_its_index_says_is_not_read_whole_nor_pruned_over() {
    let env = Env::new();
    let src = env.path("src");
    let pack = backup_into_one_pack(&env, &src, 20);
    let id = pack.file_name().unwrap().to_string_lossy().to_string();
    // Bytes appended under the pack's name, as a planter or a broken copy would.
    let mut bytes = fs::read(&pack).unwrap();
    bytes.extend(random_bytes(2 << 20, 99));
    fs::write(&pack, &bytes).unwrap();

    let out = env.hoard(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&id[..8]), "{}", stderr(&out));
    let out = env.hoard(&["prune"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("repair packs"), "{}", stderr(&out));

    // Every blob is still where the index says: all of them are salvaged.
    let stats = env.hoard_json(&["repair", "packs", &id]);
    assert_eq!(stats["blobs_salvaged"], 20, "{stats}");
    assert_ok(&env.hoard(&["check", "--read-data"]));
    assert_eq!(restored_and_missing(&env, &src), (20, 0));
    assert_ok(&env.hoard(&["prune"]));
}

/// A snapshot whose data is no longer indexed (a pack lost, then `repair index`): the rest of
/// the snapshot is restored, and the file that lost data is left as `<name>.damaged`.
#[test]
fn a_file_whose_blobs_are_not_indexed_is_damaged_and_the_rest_restored() {
    let env = Env::new();
    let src = env.path("src");
    backup_twice_and_lose_b(&env, &src, 41);
    assert_ok(&env.hoard(&["repair", "index"]));

    let target = env.path("out");
    let summary = restore_with_errors(&env, &target);
    assert_eq!(summary["files_restored"], 1, "{summary}");
    assert_eq!(summary["files_damaged"], 1, "{summary}");
    let message = summary["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("not in the index"), "{message}");
    let dir = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(dir.join("a.bin")).unwrap(),
        fs::read(src.join("a.bin")).unwrap()
    );
    assert!(!dir.join("b.bin").exists());
    assert!(dir.join("b.bin.damaged").exists());
}
