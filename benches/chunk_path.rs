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

/// Which SIMD paths this CPU offers. BLAKE3 and ChaCha20 pick theirs at run time (BLAKE3:
/// AVX-512 with avx512f+avx512vl, else AVX2, else SSE4.1; ChaCha20: AVX2, else SSE2), so the
/// throughputs below tell which they took: keyed BLAKE3 runs at roughly 1 GB/s portable,
/// 2 GB/s on SSE4.1, 4 on AVX2 and 6-8 on AVX-512 per core; seal (ChaCha20 plus Poly1305)
/// at about 0.5 GB/s on SSE2 and 1.2-1.5 on AVX2.
fn report_cpu() {
    #[cfg(target_arch = "x86_64")]
    {
        let f = [
            ("sse4.1", std::is_x86_feature_detected!("sse4.1")),
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
            ("avx512vl", std::is_x86_feature_detected!("avx512vl")),
        ];
        let list: Vec<String> = f
            .iter()
            .map(|(n, on)| format!("{n}={}", if *on { "yes" } else { "no" }))
            .collect();
        eprintln!("cpu: {}", list.join(" "));
    }
}

fn bench(c: &mut Criterion) {
    report_cpu();
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
