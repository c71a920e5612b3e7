//! Helpers shared by the end-to-end tests: a scratch repository, the `hoard` binary, and
//! trees with every kind of node.
#![allow(dead_code)]

/// One `#[test]` per backend for each scenario function.
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name(super::Env::new()) } )*
        }
        mod s3 {
            $( #[test] fn $name() { super::$name(super::Env::s3()) } )*
        }
    };
}

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "correct horse battery staple";

pub const CHEAP_KDF: [&str; 6] = [
    "--kdf-memory",
    "64",
    "--kdf-iterations",
    "1",
    "--kdf-parallelism",
    "1",
];
pub const BUCKET: &str = "hoard-test";

/// A scratch directory and a repository, local or on the S3 test server.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: String,
    /// Extra environment for every hoard run (S3 keys, CA).
    pub vars: Vec<(String, String)>,
    pub server: Option<hoard_testkit::S3Server>,
    /// Where the repository's files are on disk (for the S3 server: its object files).
    pub storage: PathBuf,
}

impl Env {
    /// A scratch directory with an initialised local repository (cheap KDF).
    pub fn new() -> Env {
        Env::empty().initialised()
    }

    /// An initialised repository on an S3 test server over TLS, trusted through CA_CERT_DATA.
    pub fn s3() -> Env {
        Env::s3_empty(hoard_testkit::S3Server::https().unwrap(), "team/repo").initialised()
    }

    pub fn initialised(self) -> Env {
        let mut args = vec!["init"];
        args.extend_from_slice(&CHEAP_KDF);
        assert_ok(&self.hoard(&args));
        self
    }

    pub fn empty() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("repo");
        Env {
            repo: storage.to_string_lossy().into_owned(),
            dir,
            vars: Vec::new(),
            server: None,
            storage,
        }
    }

    /// A repository URL on `server` under `prefix`, not initialised.
    pub fn s3_empty(server: hoard_testkit::S3Server, prefix: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = vec![
            (
                "AWS_ACCESS_KEY_ID".to_string(),
                hoard_testkit::ACCESS_KEY.to_string(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                hoard_testkit::SECRET_KEY.to_string(),
            ),
        ];
        if let Some(pem) = &server.ca_pem {
            vars.push(("CA_CERT_DATA".to_string(), pem.clone()));
        }
        Env {
            repo: format!("s3:{}/{BUCKET}/{prefix}", server.endpoint),
            storage: server.root.join(BUCKET).join(prefix),
            dir,
            vars,
            server: Some(server),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self) -> Command {
        self.cmd_for(&self.repo)
    }

    /// The binary with the test password and this env's variables, pointed at `repo`.
    pub fn cmd_for(&self, repo: &str) -> Command {
        self.cmd_with(Path::new(env!("CARGO_BIN_EXE_hoard")), repo)
    }

    /// As [`Env::cmd_for`], with another copy of the binary.
    pub fn cmd_with(&self, program: &Path, repo: &str) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_")
                || k.starts_with("RESTIC_")
                || k.starts_with("MINIO_")
                || k == "CA_CERT_DATA"
                || k == "HOARD_LOG"
            {
                c.env_remove(k);
            }
        }
        // Nothing may leave 127.0.0.1: no instance-metadata look-ups.
        c.env("AWS_EC2_METADATA_DISABLED", "true");
        // Each scratch repository has its own metadata cache, never the user's.
        c.env("RESTIC_CACHE_DIR", self.dir.path().join("cache"));
        c.envs(self.vars.iter().map(|(k, v)| (k, v)));
        c.env("RESTIC_PASSWORD", PASSWORD).arg("-r").arg(repo);
        c
    }

    pub fn hoard(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs hoard and returns the last line of stdout parsed as JSON.
    pub fn hoard_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.hoard(&a);
        assert_ok(&out);
        let text = String::from_utf8(out.stdout).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    }

    /// Every file the repository consists of.
    pub fn repo_files(&self) -> Vec<PathBuf> {
        files_below(&self.storage)
    }

    /// Total bytes of every file in the repository.
    pub fn repo_size(&self) -> u64 {
        self.repo_files()
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum()
    }
}

/// The binary with a clean environment: no password, keys or repository, nothing that could
/// reach beyond 127.0.0.1.
pub fn bare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hoard"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", "/nonexistent")
        // One metadata cache shared by every bare run: the cache is safe for that.
        .env(
            "RESTIC_CACHE_DIR",
            std::env::temp_dir().join("hoard-test-cache"),
        );
    c
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "hoard failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    // SplitMix64 of the seed as the start state (`seed | 1` gave seeds 2 and 3 one stream).
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x = (x ^ (x >> 31)) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";

/// A tree with random, text, empty, symlinked (also dangling), hard-linked, non-UTF-8-named,
/// executable files, a fifo and nested directories.
pub fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("docs/deep/deeper")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(
        root.join("random.bin"),
        random_bytes(3 * 1024 * 1024 + 17, 1),
    )
    .unwrap();
    let text: String = (0..40_000)
        .map(|i| format!("{MARKER} line {i}\n"))
        .collect();
    fs::write(root.join("docs/text.txt"), &text).unwrap();
    fs::write(
        root.join("docs/deep/deeper/small.txt"),
        format!("{MARKER} small"),
    )
    .unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("private"), b"secret-ish").unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("docs/text.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    fs::hard_link(root.join("docs/text.txt"), root.join("hardlink.txt")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"name-\xff\xfe-not-utf8");
    fs::write(root.join(odd), b"odd name").unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    // A fixed mtime in the past, to see it restored exactly.
    let old = nix::sys::time::TimeSpec::new(1_500_000_000, 123_456_789);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &root.join("docs/deep/deeper/small.txt"),
        &old,
        &old,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    mtime: (i64, i64),
    size: u64,
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
}

fn describe(root: &Path) -> (HashMap<PathBuf, Entry>, Vec<Vec<PathBuf>>) {
    let mut out = HashMap::new();
    let mut inodes: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "other"
            };
            if ft.is_file() && md.nlink() > 1 {
                inodes.entry(md.ino()).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: md.mode(),
                    mtime: if ft.is_dir() {
                        (0, 0)
                    } else {
                        (md.mtime(), md.mtime_nsec())
                    },
                    size: if ft.is_file() { md.len() } else { 0 },
                    content: ft.is_file().then(|| fs::read(&p).unwrap()),
                    target: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                },
            );
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    groups.sort();
    (out, groups)
}

/// Asserts that two trees have the same entries, contents, modes, mtimes, link targets and
/// hard-link groups. Directory mtimes are compared separately by the caller where relevant.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ea, ga) = describe(a);
    let (eb, gb) = describe(b);
    let mut names: Vec<_> = ea.keys().chain(eb.keys()).collect();
    names.sort();
    names.dedup();
    for n in names {
        assert_eq!(ea.get(n), eb.get(n), "entry {n:?} differs");
    }
    assert_eq!(ga, gb, "hard-link groups differ");
}

/// What a run wrote to stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Packs are stored read-only; a test that damages one must be allowed to.
pub fn writable(path: &Path) {
    let mut perm = fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(path, perm).unwrap();
}

/// Writes `bytes` under their hash in `dir` of the repository (packs under their fan-out
/// directory), as anyone who can write to the bucket could; returns the file.
pub fn plant(env: &Env, dir: &str, bytes: &[u8]) -> PathBuf {
    let id = hoard::Id::of_file(bytes);
    let sub = if dir == "data" {
        format!("data/{}", &id.to_hex()[..2])
    } else {
        dir.to_string()
    };
    let path = env.storage.join(sub).join(id.to_hex());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    path
}

/// Starts hoard with a test hook that holds it at `point` and waits until it gets there.
/// Returns the child and the file that releases it.
pub fn hold_at(env: &Env, point: &str, args: &[&str]) -> (std::process::Child, PathBuf) {
    let go = env.path(&format!("go-{point}"));
    let mut child = env
        .cmd()
        .args(args)
        .env(
            "HOARD_TEST_HOOK",
            format!("{point}:wait:{}", go.to_str().unwrap()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = PathBuf::from(format!("{}.reached", go.to_str().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !reached.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "hoard {args:?} ended ({status}) before {point}: {}",
                stderr(&out)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{point} not reached in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, go)
}

/// Sends SIGTERM to `child` and waits for it to exit, failing after 20 s; returns its status
/// and how long it took.
pub fn sigterm_and_wait(
    child: &mut std::process::Child,
) -> (std::process::ExitStatus, std::time::Duration) {
    let signalled = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (s, signalled.elapsed());
        }
        assert!(
            signalled.elapsed() < std::time::Duration::from_secs(20),
            "still running {:?} after SIGTERM",
            signalled.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A plain HTTP/1.0 GET, as a browser or curl would send for a shared link: no credentials,
/// no client library. Returns the status and the body.
pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    let r = http("GET", url, &[], b"");
    (r.status, r.body)
}

/// What [`http`] got back.
pub struct HttpReply {
    pub status: u16,
    /// Header lines, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.0 request over a plain socket (the connection closes after the reply, so the
/// body is whatever follows the headers).
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// The repository's largest pack (file data, in the trees these tests make).
pub fn largest_pack(env: &Env) -> PathBuf {
    files_below(&env.storage.join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
}

/// Flips one bit in the middle of a file; a second call puts it back.
pub fn flip_middle_bit(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    writable(path);
    fs::write(path, &bytes).unwrap();
}

/// A running `hoard serve`, stopped with SIGTERM when dropped; everything it logs is kept.
pub struct Served {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// A plain GET of `path` on the console, without credentials.
    pub fn get(&self, path: &str) -> HttpReply {
        http("GET", &format!("{}{path}", self.url), &[], b"")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = sigterm_and_wait(&mut self.child);
    }
}

/// Starts `cmd` (a `hoard … serve …` command) and waits for the address it announces.
pub fn start_console(mut cmd: Command) -> Served {
    use std::io::BufRead;
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let url = loop {
        let line = lines.next().expect("hoard serve stopped").unwrap();
        log.lock().unwrap().push_str(&line);
        if let Some(rest) = line.strip_prefix("hoard console on ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
        }
    };
    let rest = log.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            rest.lock().unwrap().push_str(&l);
        }
    });
    Served { child, url, log }
}

/// Restores the latest snapshot to `target`, which must end with exit code 1 (restored, with
/// errors); returns the JSON summary.
pub fn restore_with_errors(env: &Env, target: &Path) -> serde_json::Value {
    let out = env.hoard(&[
        "--json",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}
