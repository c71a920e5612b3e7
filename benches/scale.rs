//! A synthetic repository of many blobs, to see how the index scales: open time and peak
//! memory per blob, the time and memory of check's structure pass and of prune's plan.
//!
//!   cargo bench --bench scale                 # 10 million blobs
//!   cargo bench --bench scale -- 1000000      # another count
//!   cargo bench --bench scale -- 10000000 DIR # kept in DIR/10000000, reused next time
//!
//! The repository is real as far as these operations look: index files as hoard writes them
//! (sealed, 50,000 blobs each), and pack files of the length their entries add up to, sparse
//! (nothing reads their contents here). No snapshot exists, so prune's plan finds every pack
//! unused, which is its largest plan. Each operation runs in a child process of its own so its
//! peak RSS (VmHWM) is its own; the baseline is the same child opening nothing. "Kept" is what
//! stays resident once the operation is done (with the repository still open): what a
//! long-running process (the web console, a mount) holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark fails loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use hoard::format::index::{IndexFile, IndexPack};
use hoard::format::pack::{pack_file_len, BlobType, PackedBlob};
use hoard::{FileKind, Id, InitOptions, KdfParams, Repository};

const PASSWORD: &[u8] = b"scale";
const BLOBS_PER_PACK: usize = 1000;
const BLOBS_PER_INDEX_FILE: usize = 50_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if args.first().map(String::as_str) == Some("measure") {
        let (what, dir) = (&args[1], PathBuf::from(&args[2]));
        rt.block_on(measure(what, &dir));
        return;
    }
    let blobs: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    // Generating 10 million blobs takes minutes; a kept repository skips that next time.
    let temp;
    let dir = match args.get(1) {
        Some(kept) => Path::new(kept).join(blobs.to_string()),
        None => {
            temp = tempfile::tempdir().expect("tempdir");
            temp.path().to_path_buf()
        }
    };
    if dir.join("config").exists() {
        println!("reusing the repository in {}", dir.display());
    } else {
        let started = Instant::now();
        let index_files = rt.block_on(generate(&dir, blobs));
        println!(
            "generated {blobs} blobs in {} packs and {index_files} index files in {:.1} s",
            blobs.div_ceil(BLOBS_PER_PACK),
            started.elapsed().as_secs_f64()
        );
    }
    let base = child("baseline", &dir);
    println!(
        "{:<22} {:>9} {:>12} {:>12} {:>12}",
        "operation", "seconds", "peak MiB", "bytes/blob", "kept/blob"
    );
    for what in ["open", "check (structure)", "prune plan"] {
        let (secs, hwm, kept) = child(what, &dir);
        let per_blob = |bytes: u64| bytes.saturating_sub(base.1) as f64 / blobs as f64;
        println!(
            "{what:<22} {secs:>9.2} {:>12.1} {:>12.1} {:>12.1}",
            hwm as f64 / 1048576.0,
            per_blob(hwm),
            per_blob(kept)
        );
    }
    println!(
        "(baseline: a child that opens nothing peaks at {:.1} MiB)",
        base.1 as f64 / 1048576.0
    );
}

/// Runs one measurement in a fresh process; returns its seconds, and its peak and final RSS in
/// bytes.
fn child(what: &str, dir: &Path) -> (f64, u64, u64) {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["measure", what])
        .arg(dir)
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let secs = it.next().and_then(|s| s.parse().ok()).expect("seconds");
    let hwm = it.next().and_then(|s| s.parse().ok()).expect("hwm");
    let kept = it.next().and_then(|s| s.parse().ok()).expect("rss");
    (secs, hwm, kept)
}

async fn measure(what: &str, dir: &Path) {
    let started = Instant::now();
    let op = || hoard::repository::storage::local_operator(dir, false).expect("operator");
    // Kept open until measured, for the "kept" column.
    let _repo = match what {
        "baseline" => None,
        "open" => Some(Repository::open(op(), PASSWORD).await.expect("open")),
        "check (structure)" => {
            let repo = Repository::open(op(), PASSWORD).await.expect("open");
            let opts = hoard::CheckOptions {
                read_data: hoard::ReadData::None,
            };
            let report = hoard::check(&repo, &opts, &hoard::NoProgress)
                .await
                .expect("check");
            assert!(report.is_clean(), "{:?}", report.errors.first());
            Some(repo)
        }
        "prune plan" => {
            let repo = Repository::open(op(), PASSWORD).await.expect("open");
            let opts = hoard::PruneOptions {
                dry_run: true,
                ..Default::default()
            };
            hoard::prune(&repo, &opts, &hoard::NoProgress)
                .await
                .expect("prune");
            Some(repo)
        }
        other => panic!("unknown measurement {other}"),
    };
    println!(
        "{} {} {}",
        started.elapsed().as_secs_f64(),
        rss("VmHWM:"),
        rss("VmRSS:")
    );
}

/// A size from this process's status (VmHWM: its peak RSS; VmRSS: now), in bytes.
fn rss(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Writes the repository: index files through the library (sealed as hoard seals them),
/// packs as sparse files of the right length. Returns how many index files it wrote.
async fn generate(dir: &Path, blobs: usize) -> usize {
    let op = hoard::repository::storage::local_operator(dir, true).expect("operator");
    let opts = InitOptions {
        kdf: KdfParams::insecure_fast(),
        ..InitOptions::default()
    };
    let repo = Arc::new(Repository::init(op, PASSWORD, opts).await.expect("init"));
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut random_id = || {
        let mut id = [0u8; 32];
        for c in id.chunks_mut(8) {
            c.copy_from_slice(&next().to_le_bytes());
        }
        Id(id)
    };
    let mut file = IndexFile::default();
    let mut writes = Vec::new();
    let mut written = 0;
    let mut left = blobs;
    while left > 0 {
        let n = left.min(BLOBS_PER_PACK);
        left -= n;
        let blobs: Vec<PackedBlob> = (0..n)
            .map(|i| PackedBlob {
                id: random_id(),
                blob_type: if i % 50 == 0 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                },
                offset: (i * 1040) as u32,
                length: 1040,
                raw_length: 1000,
                compressed: false,
            })
            .collect();
        let pack = random_id();
        let path = dir.join(FileKind::Pack.path(&pack));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(pack_file_len(&blobs)))
            .expect("pack");
        file.packs.push(IndexPack { id: pack, blobs });
        if file.blob_count() >= BLOBS_PER_INDEX_FILE || left == 0 {
            let doc = std::mem::take(&mut file);
            let repo = repo.clone();
            writes.push(tokio::spawn(async move {
                repo.save_doc(FileKind::Index, &doc).await.expect("index")
            }));
            written += 1;
            if writes.len() >= 4 {
                writes.remove(0).await.expect("task");
            }
        }
    }
    for w in writes {
        w.await.expect("task");
    }
    written
}
