//! The restic commands and flags an admin or a cron job types, run against hoard with the same
//! arguments: tag, list, and the backup and restore flags.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;

use common::*;

fn snapshot_tags(env: &Env) -> Vec<(String, Vec<String>)> {
    let snaps = env.hoard_json(&["snapshots"]);
    snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let tags = s["tags"]
                .as_array()
                .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (s["id"].as_str().unwrap().to_string(), tags)
        })
        .collect()
}

#[test]
fn tag_adds_removes_and_sets_and_the_old_snapshot_is_replaced() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", "--tag", "daily", src.to_str().unwrap()]));
    assert_ok(&env.hoard(&["backup", "-q", "--host", "other", src.to_str().unwrap()]));
    let before = snapshot_tags(&env);
    assert_eq!(before.len(), 2);

    // Filters: only the snapshot of host "other".
    let out = env.hoard(&["tag", "--host", "other", "--add", "keep,db"]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("modified tags on 1 snapshots"));
    let after = snapshot_tags(&env);
    assert!(after.iter().any(|(_, t)| t == &["daily"]));
    let (new_id, tags) = after
        .iter()
        .find(|(_, t)| t.contains(&"keep".into()))
        .unwrap();
    assert_eq!(tags, &["keep", "db"]);
    // The replaced snapshot is gone and the new one names it.
    let old_id = &before.iter().find(|(_, t)| t.is_empty()).unwrap().0;
    assert!(after.iter().all(|(id, _)| id != old_id));
    let cat = env.hoard_json(&["cat", "snapshot", new_id]);
    assert_eq!(cat["original"], old_id.as_str(), "{cat}");

    assert_ok(&env.hoard(&["tag", &new_id[..8], "--remove", "db"]));
    assert!(snapshot_tags(&env).iter().any(|(_, t)| t == &["keep"]));
    // An unchanged snapshot is not rewritten.
    let out = env.hoard(&["tag", "--tag", "keep", "--add", "keep"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("modified tags on 0 snapshots"));
    // --set '' clears; --set with --add is refused.
    assert_ok(&env.hoard(&["tag", "--set", ""]));
    assert!(snapshot_tags(&env).iter().all(|(_, t)| t.is_empty()));
    let out = env.hoard(&["tag", "--set", "a", "--add", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = env.hoard(&["tag", "latest"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a change is required: {}",
        stderr(&out)
    );
    assert_ok(&env.hoard(&["check"]));
}

#[test]
fn list_prints_the_ids_of_each_kind_of_file() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    for (kind, dir) in [
        ("snapshots", "snapshots"),
        ("index", "index"),
        ("packs", "data"),
        ("keys", "keys"),
        ("locks", "locks"),
    ] {
        let out = env.hoard(&["list", kind]);
        assert_ok(&out);
        let mut listed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        listed.sort();
        let mut on_disk: Vec<String> = files_below(&env.path(&format!("repo/{dir}")))
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        on_disk.sort();
        assert_eq!(listed, on_disk, "{kind}");
        if kind != "locks" {
            assert!(!listed.is_empty(), "{kind}");
        }
    }
    let out = env.hoard(&["list", "blobz"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn generate_writes_completions_that_bash_loads_and_a_man_page_per_command() {
    let env = Env::new();
    let out = bare()
        .args(["generate", "--bash-completion", "-"])
        .output()
        .unwrap();
    assert_ok(&out);
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("--stdin-from-command"),
        "flags are completed"
    );
    let file = env.path("hoard.bash");
    fs::write(&file, &script).unwrap();
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p hoard", file.display()))
        .output()
        .unwrap();
    assert_ok(&loaded);

    let man = env.path("man");
    assert_ok(
        &bare()
            .args([
                "generate",
                "--man",
                man.to_str().unwrap(),
                "--zsh-completion",
            ])
            .arg(env.path("_hoard"))
            .output()
            .unwrap(),
    );
    assert!(fs::read_to_string(env.path("_hoard"))
        .unwrap()
        .contains("#compdef hoard"));
    let backup = fs::read_to_string(man.join("hoard-backup.1")).unwrap();
    assert!(backup.contains("stdin\\-filename"), "{backup}");
    assert!(
        backup.contains("password\\-file"),
        "global options are on each page"
    );
    assert!(man.join("hoard.1").exists() && man.join("hoard-tag.1").exists());
    let out = bare().args(["generate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "nothing asked for");
}

/// The snapshot paths `ls latest` prints, below `root`, relative to it.
fn listed_below(env: &Env, root: &std::path::Path) -> Vec<String> {
    let out = env.hoard(&["ls", "latest"]);
    assert_ok(&out);
    let root = format!("{}/", root.display());
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&root).map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn files_from_lists_skip_comments_and_raw_lists_keep_any_name() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    for name in ["a", "b", "dir/c", "not-listed", "line\nbreak"] {
        fs::write(src.join(name), name).unwrap();
    }
    let list = env.path("list.txt");
    fs::write(
        &list,
        format!(
            "# what the cron job saves\n{}\n\n{}\r\n",
            src.join("a").display(),
            src.join("dir").display()
        ),
    )
    .unwrap();
    let mut raw = src.join("b").into_os_string().into_encoded_bytes();
    raw.push(0);
    raw.extend(
        src.join("line\nbreak")
            .into_os_string()
            .into_encoded_bytes(),
    );
    raw.push(0);
    let raw_list = env.path("list.raw");
    fs::write(&raw_list, raw).unwrap();
    assert_ok(&env.hoard(&[
        "backup",
        "-q",
        "--files-from",
        list.to_str().unwrap(),
        "--files-from-raw",
        raw_list.to_str().unwrap(),
    ]));
    // ls prints names raw, so the one with a newline spans two lines.
    assert_eq!(listed_below(&env, &src), ["a", "b", "dir", "dir/c", "line"]);
    let odd = env.hoard(&["dump", "latest", src.join("line\nbreak").to_str().unwrap()]);
    assert_ok(&odd);
    assert_eq!(odd.stdout, b"line\nbreak");
    let empty = env.path("empty.txt");
    fs::write(&empty, "# nothing\n").unwrap();
    let out = env.hoard(&["backup", "--files-from", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing to back up"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exclude_flags_leave_out_what_they_name_and_nothing_else() {
    let env = Env::new();
    let src = env.path("src");
    for d in [
        "cache",
        "fake-cache",
        "marked",
        "header-ok",
        "header-no",
        "keep",
    ] {
        fs::create_dir_all(src.join(d)).unwrap();
        fs::write(src.join(d).join("f"), d).unwrap();
    }
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    )
    .unwrap();
    fs::write(src.join("fake-cache/CACHEDIR.TAG"), "not the signature").unwrap();
    fs::write(src.join("marked/.nobackup"), "").unwrap();
    fs::write(src.join("header-ok/.skip"), "SKIP ME please").unwrap();
    fs::write(src.join("header-no/.skip"), "keep me").unwrap();
    fs::write(src.join("keep/Photo.JPG"), "jpg").unwrap();
    fs::write(src.join("keep/notes.tmp"), "tmp").unwrap();
    fs::write(src.join("keep/big.bin"), vec![1u8; 3 * 1024]).unwrap();
    fs::write(src.join("keep/small.bin"), vec![1u8; 2 * 1024]).unwrap();
    let patterns = env.path("excludes.txt");
    fs::write(&patterns, "# temporary files\n*.tmp\n\n").unwrap();
    assert_ok(&env.hoard(&[
        "backup",
        "-q",
        src.to_str().unwrap(),
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-if-present",
        ".skip:SKIP ME",
        "--exclude-file",
        patterns.to_str().unwrap(),
        "--iexclude",
        "*.jpg",
        "--exclude-larger-than",
        "2K",
    ]));
    assert_eq!(
        listed_below(&env, &src),
        [
            "fake-cache",
            "fake-cache/CACHEDIR.TAG",
            "fake-cache/f",
            "header-no",
            "header-no/.skip",
            "header-no/f",
            "keep",
            "keep/f",
            "keep/small.bin",
        ]
    );
    let out = env.hoard(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude-larger-than",
        "2Q",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn dry_run_reads_everything_and_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), random_bytes(3 << 20, 5)).unwrap();
    let before = env.repo_files();
    let s = env.hoard_json(&["backup", "--dry-run", src.to_str().unwrap()]);
    assert_eq!(s["dry_run"], true, "{s}");
    assert!(s["data_added"].as_u64().unwrap() >= 3 << 20, "{s}");
    assert!(s["snapshot_id"].is_null(), "{s}");
    assert_eq!(
        env.repo_files(),
        before,
        "a dry run wrote to the repository"
    );
    let out = env.hoard(&["backup", "-n", src.to_str().unwrap()]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Would add"));
}

#[test]
fn skip_if_unchanged_writes_no_second_snapshot_until_something_changes() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "one").unwrap();
    let p = src.to_str().unwrap();
    assert_ok(&env.hoard(&["backup", "-q", "--skip-if-unchanged", p]));
    // A change beside the backed-up path (its parent directory's mtime) is not a change.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(env.path("unrelated"), "x").unwrap();
    let again = env.hoard_json(&["backup", "--skip-if-unchanged", p]);
    assert_eq!(again["skipped"], true, "{again}");
    assert_eq!(env.hoard_json(&["snapshots"]).as_array().unwrap().len(), 1);
    fs::write(src.join("f"), "two").unwrap();
    let changed = env.hoard_json(&["backup", "--skip-if-unchanged", p]);
    assert_eq!(changed["skipped"], false, "{changed}");
    assert_eq!(env.hoard_json(&["snapshots"]).as_array().unwrap().len(), 2);
    // Without the flag an unchanged run still records a snapshot, as restic does.
    assert_ok(&env.hoard(&["backup", "-q", p]));
    assert_eq!(env.hoard_json(&["snapshots"]).as_array().unwrap().len(), 3);
}

#[test]
fn with_atime_records_access_times_and_restore_sets_them() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let file = src.join("f");
    fs::write(&file, "x").unwrap();
    let set = |atime: i64, mtime: i64| {
        use nix::sys::time::TimeSpec;
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &file,
            &TimeSpec::new(atime, 0),
            &TimeSpec::new(mtime, 0),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    };
    set(1_500_000_000, 1_600_000_000);
    let p = src.to_str().unwrap();
    assert_ok(&env.hoard(&["backup", "-q", p]));
    let plain = env.path("plain");
    assert_ok(&env.hoard(&["restore", "latest", "--target", plain.to_str().unwrap()]));
    let md = fs::metadata(plain.join(file.strip_prefix("/").unwrap())).unwrap();
    assert_eq!(
        md.atime(),
        1_600_000_000,
        "atime is recorded as mtime by default"
    );

    set(1_500_000_000, 1_600_000_000);
    assert_ok(&env.hoard(&["backup", "-q", "--with-atime", "--force", p]));
    let with = env.path("with");
    assert_ok(&env.hoard(&["restore", "latest", "--target", with.to_str().unwrap()]));
    let md = fs::metadata(with.join(file.strip_prefix("/").unwrap())).unwrap();
    assert_eq!((md.atime(), md.mtime()), (1_500_000_000, 1_600_000_000));
}

#[test]
fn read_concurrency_is_taken_and_zero_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    assert_ok(&env.hoard(&[
        "backup",
        "-q",
        "--read-concurrency",
        "1",
        src.to_str().unwrap(),
    ]));
    assert_eq!(listed_below(&env, &src).len(), 20);
    let out = env.hoard(&["backup", "--read-concurrency", "0", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

/// Mounts a tmpfs at `at`; false where this process may not (not root).
fn mount_tmpfs(at: &std::path::Path) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn one_file_system_records_a_mount_point_but_not_what_is_mounted() {
    let env = Env::new();
    let src = env.path("src");
    let mnt = src.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    fs::write(src.join("here"), "on the source file system").unwrap();
    if !mount_tmpfs(&mnt) {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    fs::write(mnt.join("elsewhere"), "on another file system").unwrap();
    let p = src.to_str().unwrap();
    assert_ok(&env.hoard(&["backup", "-q", p]));
    assert_eq!(listed_below(&env, &src), ["here", "mnt", "mnt/elsewhere"]);
    assert_ok(&env.hoard(&["backup", "-q", "--one-file-system", p]));
    assert_eq!(listed_below(&env, &src), ["here", "mnt"]);
}

fn set_mtime(path: &std::path::Path, secs: i64) {
    use nix::sys::time::TimeSpec;
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::new(secs, 0),
        &TimeSpec::new(secs, 0),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

#[test]
fn restore_overwrite_policies_decide_what_happens_to_existing_files() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let file = src.join("f");
    fs::write(&file, "from the snapshot").unwrap();
    set_mtime(&file, 1_600_000_000);
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let target = env.path("t");
    let restored = target.join(file.strip_prefix("/").unwrap());
    let restore = |policy: &str| {
        let out = env.hoard(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--overwrite",
            policy,
        ]);
        assert_ok(&out);
        fs::read_to_string(&restored).unwrap()
    };
    assert_eq!(
        restore("never"),
        "from the snapshot",
        "a new file is written"
    );
    // A local edit of the same size, at the snapshot's mtime: if-changed trusts metadata.
    let local = |mtime: i64| {
        fs::write(&restored, "edited locally!!!").unwrap();
        set_mtime(&restored, mtime);
    };
    local(1_600_000_000);
    assert_eq!(restore("if-changed"), "edited locally!!!");
    local(1_600_000_001);
    assert_eq!(restore("if-changed"), "from the snapshot");
    local(1_700_000_000);
    assert_eq!(
        restore("if-newer"),
        "edited locally!!!",
        "the local file is newer"
    );
    local(1_500_000_000);
    assert_eq!(restore("if-newer"), "from the snapshot");
    local(1_700_000_000);
    assert_eq!(restore("never"), "edited locally!!!");
    assert_eq!(restore("always"), "from the snapshot");
    let out = env.hoard(&[
        "restore",
        "latest",
        "--target",
        "x",
        "--overwrite",
        "sometimes",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn restore_delete_dry_run_verify_and_case_insensitive_patterns() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("docs/a.txt"), "a").unwrap();
    fs::write(src.join("docs/B.TXT"), "b").unwrap();
    fs::write(src.join("docs/skip.LOG"), "log").unwrap();
    fs::write(src.join("other"), "o").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let target = env.path("t");
    let t = target.to_str().unwrap();
    let docs = target.join(src.strip_prefix("/").unwrap()).join("docs");

    // A dry run reports and creates nothing, not even the target.
    let dry = env.hoard_json(&["restore", "latest", "--target", t, "--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["files_restored"], 4, "{dry}");
    assert!(!target.exists());

    // Case-insensitive include and exclude; verify reads the written files back.
    let out = env.hoard_json(&[
        "restore",
        "latest",
        "--target",
        t,
        "--iinclude",
        "*/DOCS",
        "--iexclude",
        "*.log",
        "--verify",
    ]);
    assert_eq!(out["files_verified"], 2, "{out}");
    let mut names: Vec<_> = fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["B.TXT", "a.txt"]);
    assert!(!target
        .join(src.strip_prefix("/").unwrap())
        .join("other")
        .exists());

    // --delete removes what the snapshot does not have in the restored directories, keeps
    // what an exclude left out, and a dry run only counts.
    fs::write(docs.join("stray.txt"), "not in the snapshot").unwrap();
    fs::create_dir_all(docs.join("stray-dir/deep")).unwrap();
    fs::write(docs.join("kept.log"), "excluded, so kept").unwrap();
    let args = |extra: &[&'static str]| {
        let mut v = vec![
            "restore",
            "latest",
            "--target",
            t,
            "--include",
            "*/docs",
            "--exclude",
            "*.log",
            "--delete",
        ];
        v.extend_from_slice(extra);
        v
    };
    let counted = env.hoard_json(&args(&["--dry-run"]));
    assert_eq!(counted["files_deleted"], 2, "{counted}");
    assert!(docs.join("stray.txt").exists());
    let done = env.hoard_json(&args(&[]));
    assert_eq!(done["files_deleted"], 2, "{done}");
    assert!(!docs.join("stray.txt").exists() && !docs.join("stray-dir").exists());
    assert!(docs.join("kept.log").exists() && docs.join("a.txt").exists());
}

#[test]
fn find_searches_every_snapshot_by_name_path_size_and_time() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("db")).unwrap();
    fs::write(src.join("db/dump.SQL"), vec![b'x'; 5000]).unwrap();
    fs::write(src.join("notes.txt"), "n").unwrap();
    set_mtime(&src.join("notes.txt"), 1_500_000_000);
    let p = src.to_str().unwrap();
    assert_ok(&env.hoard(&["backup", "-q", p]));
    fs::write(src.join("db/second.sql"), "s").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", p]));

    let hits = |args: &[&str]| -> Vec<Vec<String>> {
        let mut a = vec!["find"];
        a.extend_from_slice(args);
        let v = env.hoard_json(&a);
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["matches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        m["path"]
                            .as_str()
                            .unwrap()
                            .rsplit('/')
                            .next()
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(hits(&["*.sql"]), [vec![], vec!["second.sql".to_string()]]);
    assert_eq!(
        hits(&["-i", "*.sql"]),
        [
            vec!["dump.SQL".to_string()],
            vec!["dump.SQL".into(), "second.sql".into()]
        ]
    );
    assert_eq!(hits(&["db/*"])[1].len(), 2, "a path pattern at any depth");
    assert_eq!(
        hits(&["--larger-than", "4K"]),
        [vec!["dump.SQL".to_string()], vec!["dump.SQL".into()]]
    );
    assert_eq!(
        hits(&["--newest", "2018-01-01T00:00:00Z", "*"]),
        [vec!["notes.txt".to_string()], vec!["notes.txt".into()]]
    );
    let text = env.hoard(&["find", "second.sql"]);
    assert_ok(&text);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("Found matching entries in snapshot"),
        "{text}"
    );
    assert_eq!(text.matches("second.sql").count(), 1, "{text}");
    assert_eq!(
        env.hoard(&["find"]).status.code(),
        Some(2),
        "a criterion is required"
    );
}

#[test]
fn prune_takes_sizes_for_max_unused_and_max_repack_size() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        fs::write(src.join(format!("f{i}")), random_bytes(20_000, i)).unwrap();
    }
    let p = src.to_str().unwrap();
    assert_ok(&env.hoard(&["backup", "-q", p]));
    for i in 0..20 {
        fs::remove_file(src.join(format!("f{i}"))).unwrap();
    }
    assert_ok(&env.hoard(&["backup", "-q", p]));
    assert_ok(&env.hoard(&["forget", "-q", "--keep-last", "1"]));
    // The first pack is now half unused; a 1-byte repack budget leaves it, 0 bytes of
    // unused space with no budget repacks it.
    let held = env.hoard_json(&["prune", "--max-unused", "0", "--max-repack-size", "1"]);
    assert_eq!(held["packs_repacked"], 0, "{held}");
    let done = env.hoard_json(&["prune", "--max-unused", "0"]);
    assert!(done["packs_repacked"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(done["bytes_unused_after"], 0, "{done}");
    let out = env.hoard(&["prune", "--max-unused", "lots"]);
    assert_ne!(out.status.code(), Some(0));
    assert_ok(&env.hoard(&["check", "--read-data"]));
}

#[test]
fn rewrite_removes_a_file_that_should_never_have_been_backed_up() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("keys")).unwrap();
    fs::write(src.join("keys/id_ed25519"), "PRIVATE KEY").unwrap();
    fs::write(src.join("keys/id_ed25519.pub"), "public").unwrap();
    fs::write(src.join("app.conf"), "config").unwrap();
    let p = src.to_str().unwrap();
    assert_ok(&env.hoard(&["backup", "-q", p]));
    assert_ok(&env.hoard(&["backup", "-q", p]));
    let before: Vec<String> = snapshot_tags(&env).into_iter().map(|(id, _)| id).collect();

    let dry = env.hoard(&["rewrite", "--exclude", "id_ed25519", "--dry-run"]);
    assert_ok(&dry);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would modify 2 snapshots"));
    assert_eq!(snapshot_tags(&env).len(), 2, "a dry run writes nothing");

    let done = env.hoard(&[
        "rewrite",
        "--exclude",
        "id_ed25519",
        "--forget",
        &before[0][..8],
    ]);
    assert_ok(&done);
    let after = snapshot_tags(&env);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|(id, _)| id != &before[0]),
        "the original was forgotten"
    );
    let (new_id, tags) = after.iter().find(|(id, _)| id != &before[1]).unwrap();
    assert_eq!(tags, &["rewrite"]);
    let ls = env.hoard(&["ls", new_id]);
    let listing = String::from_utf8(ls.stdout).unwrap();
    assert!(!listing.contains("id_ed25519\n"), "{listing}");
    assert!(
        listing.contains("id_ed25519.pub") && listing.contains("app.conf"),
        "{listing}"
    );
    // After prune the secret's data is gone from the repository.
    assert_ok(&env.hoard(&["forget", "-q", &before[1][..8]]));
    assert_ok(&env.hoard(&["prune", "-q", "--max-unused", "0"]));
    let found = env.hoard_json(&["find", "id_ed25519"]);
    assert_eq!(found[0]["hits"], 0, "{found}");
    assert_ok(&env.hoard(&["check", "--read-data"]));
    // Removing everything a snapshot holds is refused; forget is for that.
    let all = env.hoard(&["rewrite", "--exclude", p]);
    assert_ne!(all.status.code(), Some(0));
    assert!(stderr(&all).contains("use forget"), "{}", stderr(&all));
    assert_eq!(snapshot_tags(&env).len(), 1, "nothing was written");
    assert_eq!(env.hoard(&["rewrite"]).status.code(), Some(2));
}

#[test]
fn json_output_has_restic_status_and_summary_lines_for_backup_and_restore() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), random_bytes(100_000, 3)).unwrap();
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = env.hoard(&a);
        assert_ok(&out);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for run in [
        lines(&["backup", src.to_str().unwrap()]),
        lines(&[
            "restore",
            "latest",
            "--target",
            env.path("t").to_str().unwrap(),
        ]),
    ] {
        let status = run.iter().find(|l| l["message_type"] == "status").unwrap();
        for field in [
            "percent_done",
            "total_files",
            "files_done",
            "total_bytes",
            "bytes_done",
            "seconds_elapsed",
        ] {
            assert!(status.get(field).is_some(), "{field} missing: {status}");
        }
        let last = run.last().unwrap();
        assert_eq!(last["message_type"], "summary", "{last}");
    }
}

/// Restore plans and writes in batches of a few thousand files: a tree several batches
/// large comes back whole, hard links whose first name was in an earlier batch are linked,
/// directories known to be needed only in a later batch (through an include pattern) are
/// created, and `--delete` and `--verify` see every batch.
#[test]
fn a_restore_many_batches_large_is_whole() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let src = env.path("src");
    // Directory mtimes are set last, deepest first: give some a past mtime to see it kept.
    let first = src.join("a-first");
    fs::create_dir_all(&first).unwrap();
    fs::write(first.join("linked"), "linked from the last batch").unwrap();
    let mut files = 1;
    for d in 0..25 {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(dir.join("empty")).unwrap();
        for f in 0..1000 {
            fs::write(dir.join(format!("f{f:04}")), format!("{d} {f}")).unwrap();
            files += 1;
        }
    }
    let last = src.join("z-last/deep");
    fs::create_dir_all(&last).unwrap();
    fs::write(last.join("picked.txt"), "picked").unwrap();
    std::os::unix::fs::symlink("../../a-first/linked", last.join("symlink")).unwrap();
    fs::hard_link(first.join("linked"), last.join("hardlink")).unwrap();
    files += 1;
    let old = nix::sys::time::TimeSpec::new(1_500_000_000, 0);
    for dir in [
        src.join("d03"),
        src.join("z-last/deep"),
        src.join("d24/empty"),
    ] {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &dir,
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));

    let target = env.path("all");
    let t = target.to_str().unwrap();
    let out = env.hoard_json(&["restore", "latest", "--target", t, "--verify"]);
    assert_eq!(out["files_restored"], files + 1, "{out}");
    assert_eq!(out["files_verified"], files, "{out}");
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);
    for dir in ["d03", "z-last/deep", "d24/empty"] {
        let md = fs::metadata(restored.join(dir)).unwrap();
        assert_eq!(md.mtime(), 1_500_000_000, "{dir}");
    }

    // Strays in the first and the last directory go with --delete, whatever batch they are
    // in; a second restore over the first finds every file identical.
    fs::write(restored.join("a-first/stray"), "x").unwrap();
    fs::write(restored.join("z-last/deep/stray"), "x").unwrap();
    let again = env.hoard_json(&["restore", "latest", "--target", t, "--delete"]);
    assert_eq!(again["files_deleted"], 2, "{again}");
    assert_eq!(again["files_skipped"], files, "{again}");
    assert_same_tree(&src, &restored);

    // Only the last directory, picked by a pattern: its parents are created, nothing else.
    let picked = env.path("picked");
    let p = picked.to_str().unwrap();
    let out = env.hoard_json(&["restore", "latest", "--target", p, "--include", "*/z-last"]);
    assert_eq!(out["files_restored"], 2, "{out}");
    let root = picked.join(src.strip_prefix("/").unwrap());
    let deep = root.join("z-last/deep");
    assert_eq!(fs::read(deep.join("picked.txt")).unwrap(), b"picked");
    // Its first name was left out, so the hard link is restored as a file of its own.
    assert_eq!(
        fs::read(deep.join("hardlink")).unwrap(),
        b"linked from the last batch"
    );
    assert!(fs::symlink_metadata(deep.join("symlink"))
        .unwrap()
        .is_symlink());
    assert_eq!(fs::metadata(&deep).unwrap().mtime(), 1_500_000_000);
    let mut top: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["z-last"]);
}
