//! Repository upkeep end to end: many writers at once, locks, forget, prune, check, keys,
//! diff and dump. The scenarios that matter on shared storage run on a local repository and
//! on the S3 test server over TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::*;

on_every_backend!(
    eight_concurrent_backups_then_forget_and_prune_store_shared_data_once,
    prune_waits_for_a_running_backup_and_keeps_its_data,
    killed_prune_is_recovered_by_the_next_one,
    killed_backup_leaves_a_stale_lock_that_the_next_run_clears,
    flipped_byte_in_a_pack_is_named_down_to_the_file,
);

const MIB: usize = 1024 * 1024;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes of all packs.
fn data_bytes(env: &Env) -> u64 {
    files_below(&env.storage.join("data"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn lock_files(env: &Env) -> Vec<PathBuf> {
    let dir = env.storage.join("locks");
    if dir.exists() {
        files_below(&dir)
    } else {
        Vec::new()
    }
}

fn snapshot_count(env: &Env) -> usize {
    env.hoard_json(&["snapshots"]).as_array().unwrap().len()
}

/// `check --read-data` passes (notes about leftovers allowed); returns what it printed.
fn assert_check_clean(env: &Env) -> String {
    let out = env.hoard(&["check", "--read-data"]);
    assert_ok(&out);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(printed.contains("no errors were found"), "{printed}");
    printed
}

fn restore_and_compare(env: &Env, snapshot: &str, src: &Path, name: &str) {
    let target = env.path(name);
    assert_ok(&env.hoard(&["restore", snapshot, "--target", target.to_str().unwrap()]));
    assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
}

fn sigkill(child: Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed by a signal");
}

/// Two snapshots of a source, then the first forgotten: its packs hold unused data.
fn repository_with_garbage(env: &Env) -> PathBuf {
    let src = env.path("src");
    fs::create_dir_all(src.join("keep")).unwrap();
    fs::create_dir_all(src.join("gone")).unwrap();
    fs::write(src.join("keep/stays.bin"), random_bytes(3 * MIB, 1)).unwrap();
    fs::write(src.join("gone/old.bin"), random_bytes(3 * MIB, 2)).unwrap();
    fs::write(src.join("note.txt"), "first version\n").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    fs::remove_dir_all(src.join("gone")).unwrap();
    fs::write(src.join("keep/new.bin"), random_bytes(2 * MIB, 3)).unwrap();
    fs::write(src.join("note.txt"), "second version\n").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    assert_ok(&env.hoard(&["forget", "--keep-last", "1"]));
    src
}

fn eight_concurrent_backups_then_forget_and_prune_store_shared_data_once(env: Env) {
    let shared = random_bytes(6 * MIB, 42);
    let mut dirs = Vec::new();
    for i in 0..8 {
        let d = env.path(&format!("pod{i}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("shared.bin"), &shared).unwrap();
        fs::write(d.join("own.bin"), random_bytes(MIB, 100 + i)).unwrap();
        dirs.push(d);
    }
    let children: Vec<Child> = dirs
        .iter()
        .map(|d| {
            env.cmd()
                .args(["backup", "-q", "--host", "cluster"])
                .arg(d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        assert_ok(&c.wait_with_output().unwrap());
    }
    assert_eq!(snapshot_count(&env), 8);
    assert!(
        lock_files(&env).is_empty(),
        "every backup released its lock"
    );
    assert_check_clean(&env);

    // Keep the four newest; the shared file must end up stored once, whichever writers
    // uploaded it concurrently.
    let out = env.hoard(&[
        "forget",
        "--group-by",
        "host",
        "--keep-last",
        "4",
        "--prune",
        "--max-unused",
        "0%",
    ]);
    assert_ok(&out);
    assert_eq!(snapshot_count(&env), 4);
    let stored = data_bytes(&env) as usize;
    let needed = 6 * MIB + 4 * MIB;
    assert!(
        stored < needed + needed / 20,
        "{stored} bytes stored for {needed} bytes of distinct data"
    );
    assert_check_clean(&env);
    let kept = env.hoard_json(&["snapshots"]);
    let first = kept[0]["paths"][0].as_str().unwrap().to_string();
    let id = kept[0]["id"].as_str().unwrap().to_string();
    restore_and_compare(&env, &id, Path::new(&first), "restored");
}

fn prune_waits_for_a_running_backup_and_keeps_its_data(env: Env) {
    let src = repository_with_garbage(&env);
    // A backup that has uploaded its data and is about to write its snapshot.
    fs::write(src.join("keep/latest.bin"), random_bytes(2 * MIB, 9)).unwrap();
    let (backup, go) = hold_at(
        &env,
        "backup-before-snapshot",
        &["backup", "-q", src.to_str().unwrap()],
    );
    let before = data_bytes(&env);
    let out = env.hoard(&["prune"]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("locked") && e.contains(&format!("pid {}", backup.id())),
        "names the holder: {e}"
    );
    assert_eq!(data_bytes(&env), before, "nothing was deleted");

    // With --retry-lock, prune waits for the backup and then runs.
    let waiting = env
        .cmd()
        .args(["--retry-lock", "2m", "prune", "--max-unused", "0%"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    fs::write(&go, "").unwrap();
    assert_ok(&backup.wait_with_output().unwrap());
    assert_ok(&waiting.wait_with_output().unwrap());
    let after = data_bytes(&env);
    assert!(
        after < before - 2 * MIB as u64,
        "garbage was pruned: {before} -> {after}"
    );
    assert_check_clean(&env);
    restore_and_compare(&env, "latest", &src, "restored");

    // A prune that runs after a backup opened the repository but before it took its lock:
    // the backup must notice the replaced index instead of trusting blobs that are gone.
    let src2 = env.path("src2");
    fs::create_dir_all(&src2).unwrap();
    fs::write(src2.join("again.bin"), random_bytes(2 * MIB, 11)).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src2.to_str().unwrap()]));
    let snaps = env.hoard_json(&["snapshots"]);
    let last = snaps.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ok(&env.hoard(&["forget", &last]));
    let (backup, go) = hold_at(
        &env,
        "backup-before-lock",
        &["backup", "-q", src2.to_str().unwrap()],
    );
    assert_ok(&env.hoard(&["prune", "--max-unused", "0%"]));
    fs::write(&go, "").unwrap();
    assert_ok(&backup.wait_with_output().unwrap());
    assert_check_clean(&env);
    restore_and_compare(&env, "latest", &src2, "restored2");
}

fn killed_prune_is_recovered_by_the_next_one(env: Env) {
    let src = repository_with_garbage(&env);
    let target_before = data_bytes(&env);
    // Abort (as if killed) at each step in turn; every state must check clean and the next
    // prune must finish the job.
    for point in [
        "prune-after-repack",
        "prune-after-index",
        "prune-mid-delete",
    ] {
        let out = env
            .cmd()
            .args(["prune", "--max-unused", "0%"])
            .env("HOARD_TEST_HOOK", format!("{point}:abort"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), None, "{point}: {}", stderr(&out));
        let checked = assert_check_clean(&env);
        if point == "prune-after-index" {
            // The new index supersedes the old files, which are still there.
            assert!(
                checked.contains("is superseded; prune removes it"),
                "{checked}"
            );
        }
        restore_and_compare(&env, "latest", &src, &format!("restored-{point}"));
        // Refill the garbage for the next round.
        fs::write(src.join(format!("{point}.bin")), random_bytes(MIB, 50)).unwrap();
        assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
        fs::remove_file(src.join(format!("{point}.bin"))).unwrap();
        assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
        assert_ok(&env.hoard(&["forget", "--keep-last", "1"]));
    }
    // A real SIGKILL while prune holds its exclusive lock halfway through deleting.
    let (prune, _go) = hold_at(&env, "prune-mid-delete", &["prune", "--max-unused", "0%"]);
    sigkill(prune);
    assert_eq!(lock_files(&env).len(), 1, "the killed prune's lock is left");
    // No `unlock`: the dead process's lock is stale at once on this host.
    let out = env.hoard_json(&["prune", "--max-unused", "0%"]);
    assert_eq!(out["message_type"], "prune");
    let again = env.hoard_json(&["prune", "--max-unused", "0%"]);
    assert_eq!(again["packs_deleted"], 0, "{again}");
    assert_eq!(again["packs_unreferenced"], 0, "{again}");
    assert_eq!(again["packs_repacked"], 0, "{again}");
    assert!(data_bytes(&env) < target_before);
    assert!(lock_files(&env).is_empty());
    assert_check_clean(&env);
    restore_and_compare(&env, "latest", &src, "restored-final");
}

fn killed_backup_leaves_a_stale_lock_that_the_next_run_clears(env: Env) {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data.bin"), random_bytes(3 * MIB, 5)).unwrap();
    let (backup, _go) = hold_at(
        &env,
        "backup-before-snapshot",
        &["backup", "-q", src.to_str().unwrap()],
    );
    sigkill(backup);
    assert_eq!(lock_files(&env).len(), 1);
    // check takes an exclusive lock: it must see the holder is dead and go ahead.
    assert_check_clean(&env);
    assert!(lock_files(&env).is_empty(), "the stale lock was removed");
    assert_eq!(snapshot_count(&env), 0);
    let summary = env.hoard_json(&["backup", src.to_str().unwrap()]);
    // (Directory trees may differ: the test's own files changed a parent's mtime.)
    assert_eq!(
        summary["data_blobs"], 0,
        "the killed run's packs were indexed: {summary}"
    );
    assert_check_clean(&env);
    restore_and_compare(&env, "latest", &src, "restored");
}

fn flipped_byte_in_a_pack_is_named_down_to_the_file(env: Env) {
    let src = env.path("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("docs/victim.bin"), random_bytes(2 * MIB, 7)).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("empty/zero"), "").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let other = env.path("other");
    fs::create_dir_all(&other).unwrap();
    fs::copy(src.join("docs/victim.bin"), other.join("copy.bin")).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", other.to_str().unwrap()]));

    // The only data pack holds the file's blobs; flip one byte in the middle.
    let pack = largest_pack(&env);
    flip_middle_bit(&pack);

    // Structure is intact: the plain check passes.
    assert_ok(&env.hoard(&["check"]));
    let out = env.hoard(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    let victim = src.join("docs/victim.bin");
    let copy = other.join("copy.bin");
    assert!(e.contains(victim.to_str().unwrap()), "names the file: {e}");
    assert!(
        e.contains(copy.to_str().unwrap()),
        "and its other snapshot: {e}"
    );
    assert!(!e.contains("zero"), "and nothing else: {e}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(e.contains(&name[..8]), "names the pack: {e}");
    // A subset that covers everything finds it too.
    let out = env.hoard(&["check", "--read-data-subset", "100%"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn stale_lock_from_a_dead_pid_and_unlock() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    // A prune held at a point, then killed: its exclusive lock stays behind.
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let (prune, _go) = hold_at(&env, "prune-after-repack", &["prune"]);
    sigkill(prune);
    assert_eq!(lock_files(&env).len(), 1);
    // A backup (shared lock) is not blocked by it.
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    assert!(lock_files(&env).is_empty());

    // A live holder blocks exclusive users; `unlock` leaves it, `unlock --remove-all` does not.
    let (backup, go) = hold_at(
        &env,
        "backup-before-snapshot",
        &["backup", "-q", src.to_str().unwrap()],
    );
    let out = env.hoard(&["check"]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert_ok(&env.hoard(&["unlock"]));
    assert_eq!(lock_files(&env).len(), 1);
    assert_ok(&env.hoard(&["unlock", "--remove-all"]));
    assert!(lock_files(&env).is_empty());
    // The backup notices its lock is gone and does not commit.
    fs::write(&go, "").unwrap();
    let out = backup.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("lost the repository lock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot_count(&env), 2);
}

#[test]
fn forget_policies_from_the_cli() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let days = [
        "2025-01-01T10:00:00Z",
        "2025-01-15T10:00:00Z",
        "2025-02-01T10:00:00Z",
        "2025-02-02T09:00:00Z",
        "2025-02-02T18:00:00Z",
    ];
    for (i, t) in days.iter().enumerate() {
        fs::write(src.join("f"), format!("version {i}")).unwrap();
        let mut args = vec!["backup", "-q", "--time", t, src.to_str().unwrap()];
        if i == 0 {
            args.extend(["--tag", "release"]);
        }
        assert_ok(&env.hoard(&args));
    }
    let plan = env.hoard_json(&[
        "forget",
        "--dry-run",
        "--keep-daily",
        "2",
        "--keep-tag",
        "release",
    ]);
    let group = &plan[0];
    let times = |key: &str| -> Vec<String> {
        group[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["time"].as_str().unwrap()[..13].to_string())
            .collect()
    };
    // Days are local days; the test machine's zone is UTC in CI, and these times sit far
    // enough from midnight for any zone within ±8 h.
    assert_eq!(
        times("keep"),
        ["2025-02-02T18", "2025-02-01T10", "2025-01-01T10"]
    );
    assert_eq!(times("remove"), ["2025-02-02T09", "2025-01-15T10"]);
    assert_eq!(group["reasons"][2]["matches"][0], "has tags release");
    assert_eq!(snapshot_count(&env), 5, "dry run changes nothing");
    let plan = env.hoard_json(&["forget", "--dry-run", "--keep-within-daily", "2d"]);
    let kept: Vec<&str> = plan[0]["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["time"].as_str().unwrap()[..13])
        .collect();
    assert_eq!(kept, ["2025-02-02T18", "2025-02-01T10"]);
    assert_eq!(plan[0]["reasons"][0]["matches"][0], "daily within 2d");

    let out = env.hoard(&["forget", "--keep-daily", "2", "--keep-tag", "release"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("keep 3 snapshots") && text.contains("remove 2 snapshots"),
        "{text}"
    );
    assert!(text.contains("daily snapshot"), "{text}");
    assert_eq!(snapshot_count(&env), 3);
    // Forget by id.
    let first = env.hoard_json(&["snapshots"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ok(&env.hoard(&["forget", &first[..8]]));
    assert_eq!(snapshot_count(&env), 2);
    let out = env.hoard(&["forget", "--keep-daily", "-2"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn keys_add_list_remove_and_passwd() {
    let env = Env::new();
    let new_pw = env.path("new-pw");
    fs::write(&new_pw, "second password\n").unwrap();
    let mut add = vec![
        "key",
        "add",
        "--new-password-file",
        new_pw.to_str().unwrap(),
    ];
    add.extend_from_slice(&CHEAP_KDF);
    let added = env.hoard_json(&add);
    let added_id = added["id"].as_str().unwrap().to_string();
    let list = env.hoard_json(&["key", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    // The new password opens the repository.
    let with_new = |args: &[&str]| {
        env.cmd()
            .env("RESTIC_PASSWORD", "second password")
            .args(args)
            .output()
            .unwrap()
    };
    assert_ok(&with_new(&["snapshots"]));
    // The key in use cannot be removed; another one can.
    let out = with_new(&["key", "remove", &added_id[..8]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("opened with"), "{}", stderr(&out));
    let original = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ok(&with_new(&["key", "remove", &original]));
    assert_eq!(env.hoard(&["snapshots"]).status.code(), Some(12));
    // passwd replaces the key in use.
    let third = env.path("third-pw");
    fs::write(&third, "third").unwrap();
    let mut passwd = vec![
        "key",
        "passwd",
        "--new-password-file",
        third.to_str().unwrap(),
    ];
    passwd.extend_from_slice(&CHEAP_KDF);
    assert_ok(&with_new(&passwd));
    assert_eq!(with_new(&["snapshots"]).status.code(), Some(12));
    let out = env
        .cmd()
        .env("RESTIC_PASSWORD", "third")
        .args(["--json", "key", "list"])
        .output()
        .unwrap();
    assert_ok(&out);
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
}

#[test]
fn diff_and_dump() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("same.txt"), "same").unwrap();
    fs::write(src.join("changes.txt"), "v1").unwrap();
    fs::write(src.join("sub/goes.txt"), "bye").unwrap();
    let big = random_bytes(3 * MIB + 17, 8);
    fs::write(src.join("sub/big.bin"), &big).unwrap();
    let first = env.hoard_json(&["backup", src.to_str().unwrap()])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(src.join("changes.txt"), "v2, longer").unwrap();
    fs::remove_file(src.join("sub/goes.txt")).unwrap();
    fs::write(src.join("sub/new.txt"), "hi").unwrap();
    std::os::unix::fs::symlink("same.txt", src.join("link")).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));

    let out = env.hoard(&["diff", &first[..8], "latest"]);
    assert_ok(&out);
    let text = stdout(&out);
    let p = |rel: &str| src.join(rel).to_str().unwrap().to_string();
    for line in [
        format!("M    {}", p("changes.txt")),
        format!("-    {}", p("sub/goes.txt")),
        format!("+    {}", p("sub/new.txt")),
        format!("+    {}", p("link")),
    ] {
        assert!(text.contains(&line), "{line:?} in\n{text}");
    }
    assert!(!text.contains("same.txt\n"), "{text}");

    // A file comes out as is.
    let out = env.hoard(&["dump", "latest", &p("sub/big.bin")]);
    assert_ok(&out);
    assert!(out.stdout == big, "dumped file differs");
    // A directory comes out as a tar stream that tar unpacks.
    let out = env.hoard(&["dump", "latest", &p("sub")]);
    assert_ok(&out);
    let unpack = env.path("unpacked");
    fs::create_dir_all(&unpack).unwrap();
    let mut tar = std::process::Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&unpack)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    let sub = unpack.join(src.join("sub").strip_prefix("/").unwrap());
    assert_eq!(fs::read(sub.join("big.bin")).unwrap(), big);
    assert_eq!(fs::read(sub.join("new.txt")).unwrap(), b"hi");
    // As zip, for restic's `--archive zip`: the same files, read by another zip reader.
    let out = env.hoard(&["dump", "--archive", "zip", "latest", &p("sub")]);
    assert_ok(&out);
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(out.stdout)).unwrap();
    let name = |f: &str| format!("{}/{f}", p("sub").trim_start_matches('/'));
    let mut read = |f: &str| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name(&name(f)).unwrap(), &mut v).unwrap();
        v
    };
    assert_eq!(read("big.bin"), big);
    assert_eq!(read("new.txt"), b"hi");
    let out = env.hoard(&["dump", "latest", "/no/such/path"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn restore_and_dump_wait_for_prune_unless_no_lock() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "contents").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let (prune, go) = hold_at(&env, "prune-after-repack", &["prune"]);
    let target = env.path("restored");
    let out = env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let file = src.join("f");
    let out = env.hoard(&["dump", "latest", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    // Read-only credentials cannot lock: --no-lock reads anyway.
    let out = env.hoard(&["--no-lock", "dump", "latest", file.to_str().unwrap()]);
    assert_ok(&out);
    assert_eq!(out.stdout, b"contents");
    fs::write(&go, "").unwrap();
    assert_ok(&prune.wait_with_output().unwrap());
    restore_and_compare(&env, "latest", &src, "restored");
}
