//! Content-defined chunking (FORMAT.md "Chunking"): bytes in, chunk lengths out, no I/O.
//!
//! Backup streams files through FastCDC's `StreamCDC`; this in-memory form cuts at exactly the
//! same places (tested below) and serves benchmarks, tests and tools that hold data in memory.

use fastcdc::v2020::{FastCDC, Normalization, StreamCDC};

use super::config::ChunkerParams;

/// Lengths of the chunks `data` is cut into.
pub fn chunk_lengths(params: &ChunkerParams, data: &[u8]) -> Vec<usize> {
    FastCDC::with_level_and_seed(
        data,
        params.min_size as usize,
        params.avg_size as usize,
        params.max_size as usize,
        Normalization::Level1,
        params.gear_seed,
    )
    .map(|c| c.length)
    .collect()
}

/// A chunker over a reader, yielding owned chunks: what backup uses for large files.
pub(crate) fn stream<R: std::io::Read>(params: &ChunkerParams, reader: R) -> StreamCDC<R> {
    StreamCDC::with_level_and_seed(
        reader,
        params.min_size as usize,
        params.avg_size as usize,
        params.max_size as usize,
        Normalization::Level1,
        params.gear_seed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seed: u64) -> ChunkerParams {
        ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
            gear_seed: seed,
        }
    }

    fn data(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        crate::random::fill_random(&mut v);
        v
    }

    #[test]
    fn stream_and_memory_cut_alike_and_cover_everything() {
        let d = data(1_000_000);
        let p = params(42);
        let mem = chunk_lengths(&p, &d);
        let streamed: Vec<usize> = stream(&p, &d[..]).map(|c| c.unwrap().length).collect();
        assert_eq!(mem, streamed);
        assert_eq!(mem.iter().sum::<usize>(), d.len());
        assert!(mem.iter().all(|&l| l <= 65536));
    }

    #[test]
    fn insertion_only_changes_nearby_chunks_and_seed_moves_boundaries() {
        let d = data(2_000_000);
        let p = params(7);
        let a = chunk_lengths(&p, &d);
        let mut shifted = b"inserted".to_vec();
        shifted.extend_from_slice(&d);
        let b = chunk_lengths(&p, &shifted);
        let common = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        assert!(
            common + 3 >= a.len(),
            "only {common} of {} chunks survived an insert",
            a.len()
        );
        assert_ne!(chunk_lengths(&params(8), &d), a);
    }
}
