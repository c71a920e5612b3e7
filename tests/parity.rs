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
