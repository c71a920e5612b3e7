//! `hoard share` end to end against the S3 test server: the link is fetched with a plain
//! HTTP GET and nothing else (no keys, no client library), gives the snapshot's bytes, stops
//! working when it expires or is revoked, and prune removes expired shares and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use common::*;
use hoard_testkit::S3Server;

/// Runs `hoard share …` and returns its stdout: the URL alone.
fn share(env: &Env, args: &[&str]) -> String {
    let mut a = vec!["share"];
    a.extend_from_slice(args);
    let out = env.hoard(&a);
    assert_ok(&out);
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.contains('\n'),
        "{url}"
    );
    url
}

fn list(env: &Env) -> Vec<serde_json::Value> {
    let v = env.hoard_json(&["share", "--list"]);
    v.as_array().unwrap().clone()
}

fn tar_files(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(bytes);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert(name, data);
        }
    }
    out
}

fn zip_files(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        if f.is_file() {
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            out.insert(f.name().unwrap().to_string(), data);
        }
    }
    out
}

fn rel(p: &Path) -> String {
    p.to_str().unwrap().trim_start_matches('/').to_string()
}

#[test]
fn a_link_hands_out_the_snapshots_bytes_until_it_expires_or_is_revoked() {
    let env = Env::s3_empty(S3Server::http().unwrap(), "team/repo").initialised();
    let src = env.path("src");
    fs::create_dir_all(src.join("exports/deep")).unwrap();
    // Larger than one upload part (16 MiB): a multipart upload.
    let big = random_bytes(40 << 20, 7);
    fs::write(src.join("exports/big.bin"), &big).unwrap();
    fs::write(src.join("exports/deep/report.csv"), b"a,b\n1,2\n").unwrap();
    fs::write(src.join("exports/empty"), b"").unwrap();
    std::os::unix::fs::symlink("deep/report.csv", src.join("exports/link")).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let exports = src.join("exports");

    // A file, as is.
    let url = share(&env, &["latest", exports.join("big.bin").to_str().unwrap()]);
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=86400"));
    assert!(url.contains("/big.bin?"), "named after the file: {url}");
    let (status, body) = http_get(&url);
    assert_eq!(status, 200);
    assert!(body == big, "{} bytes back of {}", body.len(), big.len());

    // A directory, as tar and as zip: every file, byte for byte.
    let expect: BTreeMap<String, Vec<u8>> = [
        ("big.bin", big.clone()),
        ("deep/report.csv", b"a,b\n1,2\n".to_vec()),
        ("empty", Vec::new()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{}/{k}", rel(&exports)), v))
    .collect();
    let url = share(&env, &["latest", exports.to_str().unwrap()]);
    assert!(url.contains("/exports.tar?"), "{url}");
    let (status, body) = http_get(&url);
    assert_eq!(status, 200);
    assert_eq!(tar_files(&body), expect);
    let url = share(
        &env,
        &[
            "latest",
            exports.to_str().unwrap(),
            "--zip",
            "--name",
            "for you.zip",
        ],
    );
    assert!(url.contains("/for%20you.zip?"), "{url}");
    let (status, body) = http_get(&url);
    assert_eq!(status, 200);
    assert_eq!(zip_files(&body), expect);

    // A link that expires in a second stops working.
    let short = share(
        &env,
        &[
            "latest",
            exports.join("deep/report.csv").to_str().unwrap(),
            "--expires",
            "1s",
        ],
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (status, body) = http_get(&short);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("expired"));

    // The list: four shares, one expired, with names and sizes.
    let shares = list(&env);
    assert_eq!(shares.len(), 4, "{shares:?}");
    let by_name = |n: &str| {
        shares
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {shares:?}"))
            .clone()
    };
    assert_eq!(by_name("big.bin")["size"], big.len() as u64);
    assert_eq!(by_name("big.bin")["state"], "active");
    assert_eq!(by_name("report.csv")["state"], "expired");
    assert_eq!(by_name("report.csv")["size"], 8);

    // Revoke: the object is gone at once, the link with it.
    let zip_id = by_name("for you.zip")["id"].as_str().unwrap().to_string();
    let out = env.hoard(&["share", "--revoke", &zip_id[..6]]);
    assert_ok(&out);
    assert_ne!(http_get(&url).0, 200);
    assert_eq!(list(&env).len(), 3);
    let out = env.hoard(&["share", "--revoke", &zip_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no share"), "{}", stderr(&out));

    // Prune removes the expired share and nothing else: the live links still work and the
    // repository is whole.
    let keys_before = env.server.as_ref().unwrap().object_keys(BUCKET);
    let out = env.hoard(&["prune"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("delete 1 expired shares"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left = list(&env);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|s| s["state"] == "active"));
    let keys_after = env.server.as_ref().unwrap().object_keys(BUCKET);
    let gone: Vec<_> = keys_before
        .iter()
        .filter(|k| !keys_after.contains(k))
        .collect();
    assert!(
        !gone.is_empty() && gone.iter().all(|k| k.starts_with("team/repo/shares/")),
        "prune deleted {gone:?}"
    );
    let (status, body) = http_get(&share(
        &env,
        &["latest", exports.join("empty").to_str().unwrap()],
    ));
    assert_eq!((status, body.len()), (200, 0));
    // check does not complain about the shares area.
    let out = env.hoard(&["check"]);
    assert_ok(&out);
    assert!(!stderr(&out).contains("shares"), "{}", stderr(&out));
    // --expire after the fact: nothing more is due.
    let v = env.hoard_json(&["share", "--expire"]);
    assert_eq!(v["shares"].as_array().unwrap().len(), 0);
}

#[test]
fn a_local_repository_and_bad_arguments_get_one_clear_line() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    let f = src.join("f");
    let out = env.hoard(&["share", "latest", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("cannot sign URLs") && e.contains("S3 repository"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!env.storage.join("shares").exists());

    let env = Env::s3_empty(S3Server::http().unwrap(), "p").initialised();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    for (args, says) in [
        (vec!["--expires", "8d"], "7 days"),
        (vec!["--name", "a/b"], "slashes"),
    ] {
        let mut a = vec!["share", "latest", f.to_str().unwrap()];
        a.extend(args);
        let out = env.hoard(&a);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    let out = env.hoard(&["share", "latest", "/no/such/file"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    assert!(env
        .server
        .as_ref()
        .unwrap()
        .object_keys(BUCKET)
        .iter()
        .all(|k| !k.contains("/shares/")));
}

#[test]
fn a_share_of_damaged_data_fails_and_leaves_nothing_behind() {
    let env = Env::s3_empty(S3Server::http().unwrap(), "p").initialised();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/data.bin"), random_bytes(20 << 20, 5)).unwrap();
    assert_ok(&env.hoard(&["backup", "-q", src.to_str().unwrap()]));
    // The largest pack holds file data: damage it in the middle (the server stores it as is).
    flip_middle_bit(&largest_pack(&env));
    for args in [vec![], vec!["--zip"]] {
        let mut a = vec!["share", "latest", src.to_str().unwrap()];
        a.extend(args);
        let out = env.hoard(&a);
        assert_eq!(out.status.code(), Some(1));
        let e = stderr(&out);
        assert!(e.contains("failed authentication"), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(out.stdout.is_empty(), "no URL for a failed share");
    }
    // Neither manifest nor payload (nor a finished multipart upload) is left.
    let keys = env.server.as_ref().unwrap().object_keys(BUCKET);
    assert!(keys.iter().all(|k| !k.contains("/shares/")), "{keys:?}");
    assert!(list(&env).is_empty());
    // dump fails the same way, rather than writing a short file.
    let out = env.hoard(&["dump", "latest", src.join("d/data.bin").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("failed authentication"),
        "{}",
        stderr(&out)
    );
}
