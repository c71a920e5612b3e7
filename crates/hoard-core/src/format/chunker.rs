//! Content-defined chunking (FORMAT.md "Chunking"): FastCDC's cut points over a byte stream.
//!
//! Backup streams files through [`Chunks`]; the in-memory [`chunk_lengths`] cuts at exactly the
//! same places (tested below) and serves benchmarks, tests and tools that hold data in memory.

use std::io::Read;
use std::sync::Arc;

use fastcdc::v2020::{cut_gear, get_gear_with_seed, select_masks, FastCDC, Normalization};

use super::config::ChunkerParams;
use crate::buffers::{Buffer, BufferPool};

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

/// The chunks of a reader, each a buffer from `pool` (so a chunk costs no allocation): what
/// backup reads every file and stream with.
///
/// FastCDC's own `StreamCDC` keeps its buffer filled to the largest chunk size and moves the
/// rest of it to the front after every chunk: about 7 MiB moved per 1 MiB chunk, the largest
/// single cost of backing up random data (14% of its profile). This one reads two average
/// chunks' worth, cuts every chunk whose cut point lies inside what was read, and only then
/// moves the short tail that had none. Most cuts lie that close; a chunk that needs more (a run
/// of zeros, say) reads on, up to the largest. Reading the largest chunk's worth each time
/// kept 8 MiB in memory per reader of a large file. A cut found before the end of the data at hand is final: FastCDC scans
/// forward from the chunk's start and stops at the first match, so more data cannot change it.
pub struct Chunks<R> {
    reader: R,
    /// `buf[start..]` is read but not yet cut; `buf` never grows past the largest chunk.
    buf: Buffer,
    pool: Arc<BufferPool>,
    start: usize,
    eof: bool,
    min_size: usize,
    avg_size: usize,
    max_size: usize,
    /// How much to read at a time.
    step: usize,
    masks: (u64, u64),
    gear: (
        std::borrow::Cow<'static, [u64]>,
        std::borrow::Cow<'static, [u64]>,
    ),
}

impl<R: Read> Chunks<R> {
    /// `pool`'s buffers should hold the largest chunk (they grow if not).
    pub fn new(params: &ChunkerParams, reader: R, pool: &Arc<BufferPool>) -> Self {
        let max_size = params.max_size as usize;
        Chunks {
            reader,
            buf: pool.take(),
            pool: pool.clone(),
            start: 0,
            eof: false,
            min_size: params.min_size as usize,
            avg_size: params.avg_size as usize,
            max_size,
            step: 2 * params.avg_size as usize,
            masks: select_masks(params.avg_size as usize, Normalization::Level1),
            gear: get_gear_with_seed(params.gear_seed),
        }
    }

    /// Where the next chunk ends in `buf[start..]`, if that is already certain.
    fn cut(&self) -> Option<usize> {
        let pending = &self.buf[self.start..];
        let (s, l) = self.masks;
        let (_, n) = cut_gear(
            pending,
            self.min_size,
            self.avg_size,
            self.max_size,
            s,
            l,
            s << 1,
            l << 1,
            &self.gear.0,
            &self.gear.1,
        );
        // A cut at the very end of the data at hand may be one only for lack of more.
        (n < pending.len() || self.eof || pending.len() >= self.max_size).then_some(n)
    }

    /// Moves the uncut tail to the front and reads a step more (up to the largest chunk), or
    /// to the reader's end.
    fn fill(&mut self) -> std::io::Result<()> {
        let buf = self.buf.vec_mut();
        buf.drain(..self.start);
        self.start = 0;
        let room = self.step.min(self.max_size - buf.len());
        // read_to_end retries reads a signal interrupted.
        let read = (&mut self.reader).take(room as u64).read_to_end(buf)?;
        self.eof = read < room;
        Ok(())
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = std::io::Result<Buffer>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.start == self.buf.len() {
                if self.eof {
                    return None;
                }
            } else if let Some(n) = self.cut() {
                if self.start == 0 && n == self.buf.len() && self.eof {
                    // The whole rest of a file that fit in one read: hand over the buffer.
                    return Some(Ok(std::mem::replace(&mut self.buf, Vec::new().into())));
                }
                let mut chunk = self.pool.take();
                chunk
                    .vec_mut()
                    .extend_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                return Some(Ok(chunk));
            }
            if let Err(e) = self.fill() {
                self.eof = true;
                self.start = self.buf.len();
                return Some(Err(e));
            }
        }
    }
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
        let streamed: Vec<usize> = Chunks::new(&p, &d[..], &BufferPool::new(65536))
            .map(|c| c.unwrap().len())
            .collect();
        assert_eq!(mem, streamed);
        assert_eq!(mem.iter().sum::<usize>(), d.len());
        assert!(mem.iter().all(|&l| l <= 65536));
    }

    /// Hands out at most `steps[i]` bytes on its i-th read, as pipes and network file
    /// systems do, and fails once at `fail_at` with EINTR (which must be retried).
    struct Trickle<'a> {
        data: &'a [u8],
        steps: Vec<usize>,
        reads: usize,
        fail_at: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            if self.reads == self.fail_at {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let step = self.steps[self.reads % self.steps.len()].max(1);
            let n = step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    proptest::proptest! {
        /// Short reads, pool buffers too small for the largest chunk, runs of zeros (no cut until the largest chunk)
        /// and lengths around the chunk sizes: the cuts are always FastCDC's in memory.
        #[test]
        fn streamed_chunks_are_the_in_memory_cuts_whatever_the_reads(
            len in 0usize..300_000,
            zeros in 0usize..70_000,
            steps in proptest::collection::vec(1usize..80_000, 1..8),
            pool_capacity in 0usize..100_000,
            fail_at in 1usize..6,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut d = data(len);
            let at = len / 3;
            d.splice(at..at, std::iter::repeat_n(0u8, zeros));
            let p = params(seed);
            let reader = Trickle { data: &d, steps, reads: 0, fail_at };
            let chunks: Vec<Buffer> = Chunks::new(&p, reader, &BufferPool::new(pool_capacity))
                .collect::<std::io::Result<_>>()
                .unwrap();
            let lengths: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            proptest::prop_assert_eq!(lengths, chunk_lengths(&p, &d));
            proptest::prop_assert_eq!(chunks.concat(), d);
        }
    }

    #[test]
    fn chunk_buffers_go_round_the_pool() {
        let d = data(1_000_000);
        let p = params(3);
        let pool = BufferPool::new(65536);
        let n = Chunks::new(&p, &d[..], &pool)
            .map(|c| c.unwrap().len())
            .filter(|&l| l > 0)
            .count();
        // Each chunk was dropped before the next was cut: the buffer being read into and one
        // for the chunk served them all, and serve the next file too.
        assert!(n > 20);
        assert_eq!(pool.created(), 2);
        // Chunks held are each their own buffer (the last may be the one read into).
        let held: Vec<Buffer> = Chunks::new(&p, &d[..], &pool).map(|c| c.unwrap()).collect();
        let mut at: Vec<*const u8> = held.iter().map(|c| c.as_ptr()).collect();
        at.sort();
        at.dedup();
        assert_eq!(at.len(), n);
        let created = pool.created();
        assert!(
            (n..=n + 1).contains(&created),
            "{created} buffers for {n} chunks"
        );
        drop(held);
        let small = Chunks::new(&p, &d[..1000], &pool)
            .map(|c| c.unwrap().len())
            .filter(|&l| l > 0)
            .count();
        assert_eq!((small, pool.created()), (1, created));
    }

    #[test]
    fn a_read_error_ends_the_chunks_with_it() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let mut chunks = Chunks::new(&params(1), Broken, &BufferPool::new(100));
        let e = chunks.next().unwrap().unwrap_err();
        assert_eq!(e.to_string(), "disk gone");
        assert!(chunks.next().is_none());
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
