//! The CLI end to end, as a user runs it: init, backup, restore, and the promises about
//! deduplication, encryption and exit codes. Each scenario runs on a local repository and on
//! the S3 test server over TLS (CA_CERT_DATA).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;

on_every_backend!(
    backup_and_restore_every_node_type,
    unchanged_rebackup_reads_nothing_and_adds_under_one_percent,
    inserting_at_the_start_of_a_large_file_stores_few_chunks,
    repository_holds_no_plaintext,
    exit_codes_for_wrong_password_missing_repository_and_double_init,
    excludes_tags_include_ls_cat_and_stats,
    corrupt_pack_is_detected_on_restore,
);

fn backup_and_restore_every_node_type(env: Env) {
    let src = env.path("src");
    make_tree(&src);
    let summary = env.hoard_json(&["backup", src.to_str().unwrap(), "--tag", "first"]);
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(summary["errors"], 0);

    let target = env.path("restored");
    let out = env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_ok(&out);
    // Restoring /abs/path goes to TARGET/abs/path.
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);
    let small = fs::metadata(restored.join("docs/deep/deeper/small.txt")).unwrap();
    assert_eq!(
        (small.mtime(), small.mtime_nsec()),
        (1_500_000_000, 123_456_789)
    );
    let d1 = fs::metadata(src.join("docs/deep")).unwrap();
    let d2 = fs::metadata(restored.join("docs/deep")).unwrap();
    assert_eq!(
        (d1.mtime(), d1.mtime_nsec(), d1.mode()),
        (d2.mtime(), d2.mtime_nsec(), d2.mode())
    );
    assert!(fs::symlink_metadata(restored.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo_like());

    // A second restore onto the same tree finds every file already in place.
    let again = env.hoard_json(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        again["files_restored"].as_u64().unwrap(),
        1,
        "only the hard link is re-made: {again}"
    );
    assert!(again["files_skipped"].as_u64().unwrap() >= 7, "{again}");
    assert_eq!(again["bytes_written"], 0);
    assert_same_tree(&src, &restored);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

fn unchanged_rebackup_reads_nothing_and_adds_under_one_percent(env: Env) {
    let src = env.path("src");
    make_tree(&src);
    fs::write(src.join("more.bin"), random_bytes(8 * 1024 * 1024, 9)).unwrap();
    assert_ok(&env.hoard(&["backup", src.to_str().unwrap()]));
    let before = env.repo_size();

    // rchar of the shell includes its reaped child: every byte hoard read() in the process.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#""$@" >/dev/null; rc=$?; grep '^rchar' /proc/$$/io; exit $rc"#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_hoard"))
        .args(["-r", &env.repo, "--json", "backup", src.to_str().unwrap()])
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_ok(&out);
    let rchar: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("rchar:")
        .trim()
        .parse()
        .unwrap();
    let source_bytes: u64 = files_below(&src)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        rchar < source_bytes / 10,
        "second backup read {rchar} bytes of a {source_bytes}-byte tree"
    );

    let after = env.repo_size();
    assert!(
        (after - before) * 100 < before,
        "re-backup grew the repository from {before} to {after}"
    );
    let snaps = env.hoard_json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    assert!(
        snaps[1]["parent"].is_string(),
        "second snapshot records its parent"
    );
}

fn inserting_at_the_start_of_a_large_file_stores_few_chunks(env: Env) {
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let data = random_bytes(24 * 1024 * 1024, 5);
    fs::write(src.join("big"), &data).unwrap();
    let first = env.hoard_json(&["backup", src.to_str().unwrap()]);
    let first_blobs = first["data_blobs"].as_u64().unwrap();
    assert!(
        first_blobs >= 8,
        "24 MiB should make many chunks, got {first_blobs}"
    );

    let mut shifted = b"a few new bytes at the very start".to_vec();
    shifted.extend_from_slice(&data);
    fs::write(src.join("big"), &shifted).unwrap();
    let second = env.hoard_json(&["backup", src.to_str().unwrap()]);
    assert_eq!(second["files_changed"], 1);
    let new_blobs = second["data_blobs"].as_u64().unwrap();
    let added = second["data_added"].as_u64().unwrap();
    assert!(
        new_blobs <= 2,
        "{new_blobs} of {first_blobs} chunks stored again"
    );
    assert!(
        added < 9 * 1024 * 1024,
        "{added} bytes added for a 33-byte insert"
    );
}

fn repository_holds_no_plaintext(env: Env) {
    let src = env.path("src");
    make_tree(&src);
    assert_ok(&env.hoard(&["backup", src.to_str().unwrap()]));
    let needles: Vec<&[u8]> = vec![
        MARKER.as_bytes(),
        b"text.txt",
        b"deeper",
        b"random.bin",
        b"secret-ish",
        b"name-",
    ];
    let random_sample = &random_bytes(3 * 1024 * 1024 + 17, 1)[1000..1064];
    assert!(!env.repo_files().is_empty());
    for f in env.repo_files() {
        let bytes = fs::read(&f).unwrap();
        for n in needles.iter().chain([&random_sample]) {
            assert!(
                !bytes.windows(n.len()).any(|w| w == *n),
                "{} contains {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
}

fn exit_codes_for_wrong_password_missing_repository_and_double_init(env: Env) {
    let out = env
        .cmd()
        .env("RESTIC_PASSWORD", "not the password")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrong password") && err.lines().count() == 1,
        "{err}"
    );

    let missing = env.path("nothing-here");
    let out = env
        .cmd_for(missing.to_str().unwrap())
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(!missing.exists(), "opening must not create the directory");

    let mut args = vec!["init"];
    args.extend_from_slice(&CHEAP_KDF);
    let out = env.hoard(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = env
        .cmd()
        .env_remove("RESTIC_PASSWORD")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RESTIC_PASSWORD"));

    // The password file works like the variable.
    let pwfile = env.path("pw");
    fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let out = env
        .cmd()
        .env_remove("RESTIC_PASSWORD")
        .args(["--password-file", pwfile.to_str().unwrap(), "snapshots"])
        .output()
        .unwrap();
    assert_ok(&out);
}

#[test]
fn unreadable_file_is_skipped_with_exit_code_3() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let env = Env::empty();
    // Root reads everything, so run hoard as an unprivileged user when we are root.
    let as_root = nix::unistd::geteuid().is_root();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("ok.txt"), b"fine").unwrap();
    fs::write(src.join("locked.txt"), b"nope").unwrap();
    fs::set_permissions(src.join("locked.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    // The build directory may sit below one that only root can enter (a mktemp -d clone):
    // run a copy of the binary from the test's own world-readable directory.
    let program = env.path("hoard");
    fs::copy(env!("CARGO_BIN_EXE_hoard"), &program).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        let mut c = env.cmd_with(&program, &env.repo);
        if as_root {
            c.uid(65534).gid(65534);
        }
        c.args(args).output().unwrap()
    };
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    assert_ok(&run(&init));
    let out = run(&["backup", src.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked.txt"));
    let out = run(&["ls", "latest"]);
    assert_ok(&out);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("ok.txt") && !listing.contains("locked.txt"),
        "{listing}"
    );
}

fn excludes_tags_include_ls_cat_and_stats(env: Env) {
    let src = env.path("src");
    make_tree(&src);
    fs::write(src.join("scratch.tmp"), b"temporary").unwrap();
    let s = src.to_str().unwrap();
    assert_ok(&env.hoard(&[
        "backup",
        s,
        "--exclude",
        "*.tmp",
        "--tag",
        "daily,web",
        "--host",
        "pod-1",
    ]));

    let snaps = env.hoard_json(&["snapshots"]);
    assert_eq!(snaps[0]["hostname"], "pod-1");
    assert_eq!(snaps[0]["tags"], serde_json::json!(["daily", "web"]));
    let id = snaps[0]["id"].as_str().unwrap().to_string();

    let out = env.hoard(&["ls", &id[..8], "--long"]);
    assert_ok(&out);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("docs/text.txt") && !listing.contains("scratch.tmp"),
        "{listing}"
    );
    assert!(listing.contains("-rwxr-xr-x"), "{listing}");

    let target = env.path("partial");
    let include = format!("{s}/docs/deep");
    assert_ok(&env.hoard(&[
        "restore",
        &id,
        "--target",
        target.to_str().unwrap(),
        "--include",
        &include,
    ]));
    let base = target.join(src.strip_prefix("/").unwrap());
    assert!(base.join("docs/deep/deeper/small.txt").exists());
    assert!(!base.join("random.bin").exists() && !base.join("docs/text.txt").exists());

    let config = env.hoard_json(&["cat", "config"]);
    assert_eq!(config["version"], 1);
    assert!(config["chunker"]["gear_seed"].is_u64());
    let snap = env.hoard_json(&["cat", "snapshot", &id[..10]]);
    assert_eq!(snap["id"].as_str(), Some(id.as_str()));
    let packs = common::files_below(&env.storage.join("data"));
    let pack_id = packs[0].file_name().unwrap().to_str().unwrap().to_string();
    let pack = env.hoard_json(&["cat", "pack", &pack_id]);
    assert!(!pack["blobs"].as_array().unwrap().is_empty());
    let index_files = common::files_below(&env.storage.join("index"));
    let index_id = index_files[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let index = env.hoard_json(&["cat", "index", &index_id]);
    assert!(index["packs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == pack_id.as_str()));

    let stats = env.hoard_json(&["stats"]);
    assert_eq!(stats["snapshots"], 1);
    // text.txt and hardlink.txt share content: dedup shows in the ratio.
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 1.0, "{stats}");
}

fn corrupt_pack_is_detected_on_restore(env: Env) {
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), random_bytes(100_000, 3)).unwrap();
    assert_ok(&env.hoard(&["backup", src.to_str().unwrap()]));
    for p in files_below(&env.storage.join("data")) {
        let mut b = fs::read(&p).unwrap();
        b[100] ^= 1;
        let mut perm = fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&p, perm).unwrap();
        fs::write(&p, b).unwrap();
    }
    let out = env.hoard(&[
        "restore",
        "latest",
        "--target",
        env.path("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed authentication") || err.contains("corrupt"),
        "{err}"
    );
}

#[test]
fn restore_of_one_snapshot_path_lands_straight_in_the_target() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));

    // A directory: its contents go into the target, as restic 0.17's `latest:/path`.
    let dir = env.path("dir-out");
    let spec = format!("latest:{}/docs", src.display());
    assert_ok(&env.hoard(&["restore", &spec, "--target", dir.to_str().unwrap()]));
    for f in ["text.txt", "deep/deeper/small.txt"] {
        assert_eq!(
            fs::read(dir.join(f)).unwrap(),
            fs::read(src.join("docs").join(f)).unwrap(),
            "{f}"
        );
    }
    let mut top: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(top, ["deep", "text.txt"], "nothing above docs/ came along");

    // A file: it lands as TARGET/<name>.
    let one = env.path("file-out");
    let spec = format!("latest:{}/docs/deep/deeper/small.txt", src.display());
    assert_ok(&env.hoard(&["restore", &spec, "--target", one.to_str().unwrap()]));
    assert_eq!(
        fs::read(one.join("small.txt")).unwrap(),
        fs::read(src.join("docs/deep/deeper/small.txt")).unwrap()
    );
    assert_eq!(fs::read_dir(&one).unwrap().count(), 1);

    // A path the snapshot does not have: one clear line, non-zero exit.
    let out = env.hoard(&["restore", "latest:/no/such/path", "--target", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/no/such/path") && err.contains("not found"),
        "{err}"
    );
}

/// Small files are read a few dozen at a time (and a megabyte's worth at most). Whatever mix
/// of new, changed and unchanged files, large files and subdirectories a directory holds,
/// its tree keeps name order and every file comes back.
#[test]
fn a_directory_of_mixed_small_files_keeps_name_order_and_content() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let write = |i: usize, seed: u64| {
        let len = match i {
            100 => 700 * 1024, // cut by the chunker: read on its own
            _ if i % 7 == 0 => 300 * 1024,
            _ => i * 13,
        };
        fs::write(
            src.join(format!("f{i:03}")),
            random_bytes(len, seed + i as u64),
        )
        .unwrap();
    };
    for i in 0..200 {
        write(i, 0);
    }
    fs::create_dir(src.join("f150.d")).unwrap();
    fs::write(src.join("f150.d/inner"), b"inner").unwrap();
    let first = env.hoard_json(&["backup", src.to_str().unwrap()]);
    assert_eq!(first["files_new"], 201, "{first}");

    // Every third file changes size and content; the rest are taken over unread.
    let changed = (0..200).filter(|i| i % 3 == 0).count();
    for i in (0..200).filter(|i| i % 3 == 0) {
        write(i, 1000);
    }
    let second = env.hoard_json(&["backup", src.to_str().unwrap()]);
    assert_eq!(second["files_changed"], changed, "{second}");
    assert_eq!(second["files_unmodified"], 201 - changed, "{second}");

    let out = env.hoard(&["ls", "latest"]);
    assert_ok(&out);
    let root = format!("{}/", src.display());
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&root).map(str::to_string))
        .filter(|l| !l.contains('/'))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "the tree is in name order");
    assert_eq!(listed.len(), 201);

    let target = env.path("restored");
    assert_ok(&env.hoard(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert_ok(&env.hoard(&["check", "--read-data"]));
}
