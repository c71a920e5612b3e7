//! Backups of a stream, as a Stash database add-on makes them: `pg_dump … | hoard backup
//! --stdin` and `hoard dump latest dump.sql | psql`, or `--stdin-from-command` so that a
//! failing dump never becomes a snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A pg_dump-like stream: SQL text lines with varied values, generated as fast as a pipe takes
/// them and the same for the same seed, so the dump can be compared as it streams back.
struct SqlDump {
    state: u64,
    left: u64,
    line: Vec<u8>,
    at: usize,
}

impl SqlDump {
    fn new(len: u64, seed: u64) -> Self {
        SqlDump {
            state: seed | 1,
            left: len,
            line: Vec::new(),
            at: 0,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl Read for SqlDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            if self.at == self.line.len() {
                let (a, b, c) = (self.next(), self.next(), self.next());
                self.line.clear();
                writeln!(
                    self.line,
                    "INSERT INTO orders VALUES ({}, 'customer-{}', {}.{:02}, '2026-{:02}-{:02}');",
                    a >> 20,
                    b % 100_000,
                    c % 10_000,
                    c % 100,
                    1 + a % 12,
                    1 + b % 28
                )
                .unwrap();
                self.at = 0;
            }
            let take = (self.line.len() - self.at)
                .min(buf.len() - n)
                .min(self.left as usize);
            buf[n..n + take].copy_from_slice(&self.line[self.at..self.at + take]);
            self.at += take;
            n += take;
            self.left -= take as u64;
        }
        Ok(n)
    }
}

/// Waits for `child` and returns its exit code and peak resident memory in MiB.
fn wait_measured(child: Child) -> (Option<i32>, u64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain wait4 on our own child with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss as u64 / 1024)
}

#[test]
fn a_two_gib_dump_goes_through_stdin_with_flat_memory_and_comes_back_identical() {
    const LEN: u64 = 2 << 30;
    let env = Env::new();
    let floor = wait_measured(
        env.cmd()
            .args(["snapshots", "-q"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
    .1;

    let started = Instant::now();
    let mut backup = env
        .cmd()
        .args(["backup", "-q", "--stdin", "--stdin-filename", "db/dump.sql"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = backup.stdin.take().unwrap();
    let copied = std::io::copy(&mut SqlDump::new(LEN, 42), &mut stdin).unwrap();
    drop(stdin);
    let (code, backup_rss) = wait_measured(backup);
    assert_eq!(code, Some(0));
    assert_eq!(copied, LEN);
    eprintln!(
        "backup of {LEN} bytes from stdin: {:?}, peak RSS {backup_rss} MiB ({floor} MiB for `snapshots`)",
        started.elapsed()
    );

    let snaps = env.hoard_json(&["snapshots"]);
    assert_eq!(snaps[0]["paths"][0], "/db/dump.sql", "{snaps}");
    let started = Instant::now();
    let mut dump = env
        .cmd()
        .args(["dump", "latest", "db/dump.sql"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = dump.stdout.take().unwrap();
    let mut expected = SqlDump::new(LEN, 42);
    let (mut got, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut compared = 0u64;
    loop {
        let n = out.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        expected.read_exact(&mut want[..n]).unwrap();
        assert!(got[..n] == want[..n], "differs after byte {compared}");
        compared += n as u64;
    }
    let (code, dump_rss) = wait_measured(dump);
    assert_eq!(code, Some(0));
    assert_eq!(compared, LEN);
    eprintln!("dump: {:?}, peak RSS {dump_rss} MiB", started.elapsed());
    // Flat: a stream held in memory would need gigabytes; the chunker's buffer and the
    // saver's queue need tens of MiB.
    for (what, rss) in [("backup", backup_rss), ("dump", dump_rss)] {
        assert!(
            rss < floor + 96,
            "{what} peaked at {rss} MiB for a 2 GiB stream ({floor} MiB without work)"
        );
    }
}

#[test]
fn a_failing_dump_command_leaves_no_snapshot_and_a_good_one_does() {
    let env = Env::new();
    let out = env.hoard(&[
        "backup",
        "--stdin-from-command",
        "--",
        "sh",
        "-c",
        "echo 'CREATE TABLE half'; echo 'pg_dump: connection lost' >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("pg_dump: connection lost"), "{err}");
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("no snapshot was written"), "{err}");
    assert_eq!(env.hoard_json(&["snapshots"]).as_array().unwrap().len(), 0);

    let out = env.hoard(&["backup", "--stdin-from-command", "--", "/no/such/pg_dump"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/no/such/pg_dump"),
        "{}",
        stderr(&out)
    );

    let done = env.hoard_json(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "mydb.sql",
        "--tag",
        "db",
        "--",
        "sh",
        "-c",
        "printf 'CREATE TABLE t;\\n'",
    ]);
    assert_eq!(done["files_new"], 1, "{done}");
    let snaps = env.hoard_json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["paths"][0], "/mydb.sql");
    assert_eq!(snaps[0]["tags"][0], "db");
    let dump = env.hoard(&["dump", "latest", "/mydb.sql"]);
    assert_ok(&dump);
    assert_eq!(dump.stdout, b"CREATE TABLE t;\n");
    assert_ok(&env.hoard(&["check", "--read-data"]));
}

#[test]
fn sigterm_stops_a_stream_backup_whose_producer_hangs() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args([
            "backup",
            "--stdin-from-command",
            "--",
            "sh",
            "-c",
            "echo started; sleep 613 | cat",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the repository is locked, i.e. the backup is reading.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(env.path("repo/locks")).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "the backup never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = sigterm_and_wait(&mut child);
    assert_eq!(status.code(), Some(130));
    // The hung producer was stopped too.
    let producer_alive = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00613\x00")
        })
    };
    assert!(!producer_alive(), "the dump command outlived the backup");
    assert_eq!(env.hoard_json(&["snapshots"]).as_array().unwrap().len(), 0);
    assert_ok(&env.hoard(&["check"]));
}
