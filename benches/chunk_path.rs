//! The per-chunk path of backup, one stage at a time and all together: FastCDC, keyed BLAKE3,
//! zstd (or the cheap incompressibility probe), XChaCha20-Poly1305. Throughput is per core;
//! backup runs these on every core at once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hoard::format::blob::encode_blob;
use hoard::format::chunker::chunk_lengths;
use hoard::format::config::ChunkerParams;
use hoard::format::crypto::MasterKey;

const LEN: usize = 16 * 1024 * 1024;

fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
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

/// Source-code-like text: compressible, but not trivially.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "fn ",
        "let ",
        "impl ",
        "struct ",
        "self",
        ".await",
        "Result<",
        "Vec<u8>",
        "{\n",
        "}\n",
        "    ",
        "// why, not what\n",
        "match ",
        " => ",
        "Some(",
        "None",
        "0x",
        "42",
        "\n",
    ];
    let mut x: u64 = 7;
    let mut v = Vec::with_capacity(len + 32);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    v.truncate(len);
    v
}

fn bench(c: &mut Criterion) {
    let params = ChunkerParams {
        min_size: 512 * 1024,
        avg_size: 1024 * 1024,
        max_size: 8 * 1024 * 1024,
        gear_seed: 0x1234_5678,
    };
    let key = MasterKey::random();
    let mut g = c.benchmark_group("chunk_path");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    for (name, data) in [("random", random(LEN)), ("text", text(LEN))] {
        g.bench_with_input(BenchmarkId::new("fastcdc", name), &data, |b, d| {
            b.iter(|| chunk_lengths(&params, d))
        });
        g.bench_with_input(BenchmarkId::new("blake3_keyed", name), &data, |b, d| {
            b.iter(|| key.blob_id(d))
        });
        g.bench_with_input(BenchmarkId::new("seal", name), &data, |b, d| {
            b.iter(|| key.seal(d))
        });
        g.bench_with_input(BenchmarkId::new("encode_zstd3", name), &data, |b, d| {
            b.iter(|| {
                let mut off = 0;
                for len in chunk_lengths(&params, d) {
                    let _ = encode_blob(&key, &d[off..off + len], 3);
                    off += len;
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("whole_path", name), &data, |b, d| {
            b.iter(|| {
                let mut off = 0;
                for len in chunk_lengths(&params, d) {
                    let chunk = &d[off..off + len];
                    let _id = key.blob_id(chunk);
                    let _ = encode_blob(&key, chunk, 3);
                    off += len;
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
