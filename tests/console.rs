//! `hoard serve` over HTTP, as a client without a browser sees it: the token guards every
//! page but the login page (bearer header or the login cookie), a non-loopback address
//! needs a token, paths are looked up in the snapshot only, actions are off unless allowed,
//! and downloads are the snapshot's bytes. The browser walk-through is in `console_browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

mod common;

use std::fs;

use common::*;

pub const TOKEN: &str = "console-token-4f9a2c";

fn serve(env: &Env, args: &[&str]) -> Served {
    let mut c = env.cmd();
    c.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    start_console(c)
}

/// Two snapshots of a small tree; the second changes one file and adds one.
fn two_snapshots(env: &Env) -> (std::path::PathBuf, String, String) {
    let src = env.path("src");
    fs::create_dir_all(src.join("etc/app")).unwrap();
    fs::write(src.join("etc/app/config.yaml"), b"replicas: 3\n").unwrap();
    fs::write(src.join("etc/app/blob.bin"), random_bytes(3 << 20, 9)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("etc/app/escape")).unwrap();
    let a = env.hoard_json(&["backup", src.to_str().unwrap()]);
    fs::write(src.join("etc/app/config.yaml"), b"replicas: 5\n").unwrap();
    fs::write(src.join("etc/app/new.txt"), b"new").unwrap();
    let b = env.hoard_json(&["backup", src.to_str().unwrap()]);
    (
        src,
        a["snapshot_id"].as_str().unwrap().to_string(),
        b["snapshot_id"].as_str().unwrap().to_string(),
    )
}

#[test]
fn the_token_guards_everything_but_the_login_page() {
    let env = Env::new();
    let (src, a, _) = two_snapshots(&env);
    let token_file = env.path("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let s = serve(&env, &["--token-file", token_file.to_str().unwrap()]);
    let file = format!("{}/etc/app/config.yaml", src.display());
    let pages = [
        "/".to_string(),
        format!("/s/{a}/tree"),
        format!("/s/{a}/file?path={file}"),
        format!("/s/{a}/download?path={file}"),
        format!("/diff?a={a}&b=latest"),
        "/health".to_string(),
        "/jobs/0".to_string(),
    ];
    for p in &pages {
        let r = http("GET", &format!("{}{p}", s.url), &[], b"");
        assert_eq!(r.status, 401, "{p} without a token");
        assert!(!r.text().contains("replicas"), "{p}");
        let r = http(
            "GET",
            &format!("{}{p}", s.url),
            &[("Accept", "text/html")],
            b"",
        );
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login")),
            "{p}"
        );
        let r = http(
            "GET",
            &format!("{}{p}", s.url),
            &[("Authorization", "Bearer wrong")],
            b"",
        );
        assert_eq!(r.status, 401, "{p} with a wrong token");
    }
    for p in [
        "/s/x/restore",
        "/s/x/share",
        "/health/check",
        "/login/../health",
    ] {
        assert_eq!(
            http("POST", &format!("{}{p}", s.url), &[], b"").status,
            401,
            "{p}"
        );
    }
    // The login page is served; a wrong token is refused; the right one sets a cookie that
    // is not the token and opens every page.
    assert_eq!(s.get("/login").status, 200);
    let r = http("POST", &format!("{}/login", s.url), &[], b"token=nope");
    assert_eq!(r.status, 401);
    let r = http(
        "POST",
        &format!("{}/login", s.url),
        &[],
        format!("token={TOKEN}").as_bytes(),
    );
    assert_eq!(r.status, 303);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(!cookie.contains(TOKEN), "{cookie}");
    assert!(r.header("set-cookie").unwrap().contains("HttpOnly"));
    let bearer = format!("Bearer {TOKEN}");
    for p in &pages[..6] {
        let r = http("GET", &format!("{}{p}", s.url), &[("Cookie", &cookie)], b"");
        assert_eq!(r.status, 200, "{p} with the cookie: {}", r.text());
        let r = http(
            "GET",
            &format!("{}{p}", s.url),
            &[("Authorization", &bearer)],
            b"",
        );
        assert_eq!(r.status, 200, "{p} with the bearer token");
        assert!(
            !r.text().contains(TOKEN) && !r.text().contains(PASSWORD),
            "{p} shows a secret"
        );
    }
    let r = http(
        "GET",
        &format!("{}/s/{a}/download?path={file}", s.url),
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.body, b"replicas: 3\n");
    let log = s.log.lock().unwrap().clone();
    assert!(!log.contains(TOKEN) && !log.contains(PASSWORD), "{log}");
}

#[test]
fn only_the_snapshot_can_be_read_and_actions_are_off_by_default() {
    let env = Env::new();
    let (src, a, b) = two_snapshots(&env);
    let s = serve(&env, &[]);
    let dir = src.display().to_string();
    // Paths are names in the snapshot's trees: nothing of the server's file system.
    for p in [
        format!("/s/{a}/download?path=/etc/passwd"),
        format!("/s/{a}/download?path={dir}/../../../../etc/passwd"),
        format!("/s/{a}/download?path={dir}/etc/app/%2E%2E/%2E%2E/%2E%2E/etc/passwd"),
        format!("/s/{a}/file?path=/proc/self/environ"),
        format!("/s/{a}/tree?path=/etc"),
        "/s/..%2F..%2Fetc/tree".to_string(),
        "/s/0000000000000000/tree".to_string(),
    ] {
        let r = s.get(&p);
        assert_eq!(r.status, 404, "{p}: {}", r.text());
        assert!(!r.text().contains("root:"), "{p}");
    }
    // A symlink to /etc/passwd is shown as a link, never followed.
    let r = s.get(&format!("/s/{a}/download?path={dir}/etc/app/escape"));
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("root:"));
    assert!(s
        .get(&format!("/s/{a}/tree?path={dir}/etc/app"))
        .text()
        .contains("symlink → /etc/passwd"));

    // The calendar links the day of the snapshots; a day filters the list.
    let snaps = env.hoard_json(&["snapshots"]);
    let today = snaps[0]["time"].as_str().unwrap()[..10].to_string();
    let list = s.get("/").text();
    assert!(
        list.contains("id=calendar") && list.contains(&format!("/?day={today}")),
        "{list}"
    );
    assert!(s
        .get(&format!("/?day={today}"))
        .text()
        .contains("2 of 2 snapshots"));
    assert!(s
        .get("/?day=1999-01-01")
        .text()
        .contains("0 of 2 snapshots"));

    // Browse, preview, download (file, tar, zip) and diff.
    let tree = s.get(&format!("/s/{a}/tree?path={dir}/etc/app"));
    assert!(tree.text().contains("config.yaml") && tree.text().contains("3.0 MiB"));
    let file = s.get(&format!("/s/{a}/file?path={dir}/etc/app/config.yaml"));
    assert!(
        file.text().contains("<pre id=preview>replicas: 3\n</pre>"),
        "{}",
        file.text()
    );
    let big = s.get(&format!("/s/{a}/download?path={dir}/etc/app/blob.bin"));
    assert_eq!(big.header("content-length"), Some("3145728"));
    assert!(big.body == random_bytes(3 << 20, 9));
    let tar = s.get(&format!("/s/{b}/download?path={dir}/etc&format=tar"));
    assert_eq!(tar.header("content-type"), Some("application/x-tar"));
    let mut names: Vec<String> = tar::Archive::new(&tar.body[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.iter().any(|n| n.ends_with("etc/app/new.txt")),
        "{names:?}"
    );
    let zip = s.get(&format!("/s/{b}/download?path={dir}/etc&format=zip"));
    assert!(zip
        .header("content-disposition")
        .unwrap()
        .contains("etc.zip"));
    let z = zip::ZipArchive::new(std::io::Cursor::new(zip.body)).unwrap();
    assert!(z
        .file_names()
        .any(|n| n.is_ok_and(|n| n.ends_with("etc/app/config.yaml"))));
    let diff = s.get(&format!("/diff?a={a}&b={b}")).text();
    assert!(
        diff.contains("1 files added, 0 removed, 1 changed"),
        "{diff}"
    );
    assert!(diff.contains("etc/app/new.txt") && diff.contains("etc/app/config.yaml"));

    // Read-only: restores, shares and checks are refused and do nothing.
    let target = env.path("restored");
    let form = format!("path={dir}&target={}", target.display());
    for p in [
        format!("/s/{a}/restore"),
        format!("/s/{a}/share"),
        "/health/check".to_string(),
    ] {
        let r = http("POST", &format!("{}{p}", s.url), &[], form.as_bytes());
        assert_eq!(r.status, 403, "{p}");
    }
    assert!(!target.exists());
}

/// The job page once the job is over (it says "running…" until then).
fn finished(job: &str) -> String {
    for _ in 0..600 {
        let page = http("GET", job, &[], b"").text();
        if !page.contains("running…") {
            return page;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{job} still running after a minute");
}

#[test]
fn restore_from_the_console_when_allowed() {
    let env = Env::new();
    let (src, a, _) = two_snapshots(&env);
    let s = serve(&env, &["--allow-restore"]);
    let target = env.path("restored");
    let form = format!("path={}/etc&target={}", src.display(), target.display());
    let r = http(
        "POST",
        &format!("{}/s/{a}/restore", s.url),
        &[],
        form.as_bytes(),
    );
    assert_eq!(r.status, 303);
    let page = finished(&format!("{}{}", s.url, r.header("location").unwrap()));
    assert!(page.contains("done: restored 2 files"), "{page}");
    assert!(fs::symlink_metadata(target.join("app/escape"))
        .unwrap()
        .is_symlink());
    assert_eq!(
        fs::read(target.join("app/config.yaml")).unwrap(),
        b"replicas: 3\n"
    );
    // Another site's page cannot make a browser start a restore (cross-site request
    // forgery), whether it says so by Origin or by Sec-Fetch-Site.
    let elsewhere = env.path("forged");
    let forged = format!("path={}/etc&target={}", src.display(), elsewhere.display());
    for h in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = http(
            "POST",
            &format!("{}/s/{a}/restore", s.url),
            &[h],
            forged.as_bytes(),
        );
        assert_eq!(r.status, 403, "{h:?}");
    }
    assert!(!elsewhere.exists());
    // Without a token, a page on another host name (DNS rebinding) is refused even on
    // loopback; loopback names are fine.
    let port = s.url.rsplit(':').next().unwrap();
    for (name, status) in [("evil.example", 403), ("localhost", 200)] {
        let host = format!("{name}:{port}");
        let r = http("GET", &format!("{}/", s.url), &[("Host", &host)], b"");
        assert_eq!(r.status, status, "Host: {host}");
    }
    // A relative target is refused.
    let r = http(
        "POST",
        &format!("{}/s/{a}/restore", s.url),
        &[],
        b"path=/&target=rel",
    );
    assert_eq!(r.status, 400);
    // A check from the health page.
    let r = http("POST", &format!("{}/health/check", s.url), &[], b"");
    assert_eq!(r.status, 303);
    let page = finished(&format!("{}{}", s.url, r.header("location").unwrap()));
    assert!(page.contains("done: no errors"), "{page}");
    let health = s.get("/health").text();
    assert!(
        health.contains("of the structure, finished") && health.contains("no errors"),
        "{health}"
    );
    // A check from the command line (same metadata cache) is the last one shown.
    assert_ok(&env.hoard(&["check", "--read-data"]));
    let health = s.get("/health").text();
    assert!(health.contains("packs read, finished"), "{health}");
}

#[test]
fn a_share_link_from_the_console_on_s3() {
    let env = Env::s3_empty(hoard_testkit::S3Server::http().unwrap(), "team/repo").initialised();
    let (src, a, _) = two_snapshots(&env);
    let s = serve(&env, &["--allow-restore"]);
    let file = format!("{}/etc/app/blob.bin", src.display());
    let page = s.get(&format!("/s/{a}/file?path={file}")).text();
    assert!(page.contains("Create link"), "{page}");
    let r = http(
        "POST",
        &format!("{}/s/{a}/share", s.url),
        &[],
        format!("path={file}&hours=2").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let start = text.find("value='").unwrap() + 7;
    let url = text[start..]
        .split('\'')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(url.contains("X-Amz-Expires=7200"), "{url}");
    let (status, body) = http_get(&url);
    assert_eq!(status, 200);
    assert!(body == random_bytes(3 << 20, 9));
    // Read-only consoles offer no link.
    drop(s);
    let s = serve(&env, &[]);
    let page = s.get(&format!("/s/{a}/file?path={file}")).text();
    assert!(!page.contains("Create link"));
}

#[test]
fn a_network_address_needs_a_token() {
    let env = Env::new();
    let out = env.hoard(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("not a loopback address") && e.contains("token"),
        "{e}"
    );
    let empty = env.path("empty-token");
    fs::write(&empty, "\n").unwrap();
    let out = env.hoard(&["serve", "--token-file", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    // From the environment (or the Secret), a token lets it listen on every address.
    let mut c = env.cmd();
    c.env("HOARD_SERVE_TOKEN", TOKEN)
        .args(["serve", "--listen", "0.0.0.0:0"]);
    let s = start_console(c);
    assert!(s.url.starts_with("http://0.0.0.0:"), "{}", s.url);
    drop(s);
    // ...and so does one from a Secret manifest (--secret), as a Kubernetes Secret holds it.
    let secret = env.path("secret.yaml");
    fs::write(
        &secret,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: console\nstringData:\n  HOARD_SERVE_TOKEN: {TOKEN}\n"),
    )
    .unwrap();
    let s = serve(&env, &["--secret", secret.to_str().unwrap()]);
    let r = s.get("/health");
    assert_eq!(r.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let r = http(
        "GET",
        &format!("{}/health", s.url),
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn names_that_are_not_utf8_browse_and_download() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9 & <b>.txt");
    fs::write(src.join(name), b"latin-1 name").unwrap();
    let a = env.hoard_json(&["backup", src.to_str().unwrap()]);
    let a = a["snapshot_id"].as_str().unwrap();
    let s = serve(&env, &[]);
    let dir = src.display();
    let page = s.get(&format!("/s/{a}/tree?path={dir}")).text();
    // Shown escaped and with U+FFFD; linked by its bytes.
    assert!(page.contains("caf\u{FFFD} &amp; &lt;b&gt;.txt"), "{page}");
    assert!(!page.contains("<b>.txt"));
    let link = format!("{dir}/caf%E9%20%26%20%3Cb%3E.txt");
    assert!(page.contains(&link), "{page}");
    let r = s.get(&format!("/s/{a}/download?path={link}"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"latin-1 name".as_slice())
    );
}
