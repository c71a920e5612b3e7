//! Buffers that go round instead of back to the allocator, and room for large short-lived
//! ones that the allocator does not keep.
//!
//! A backup reads every byte into a buffer that lives for a moment: read, hashed, compressed,
//! then dropped on a compression worker. Allocated and freed per chunk, those buffers cost a
//! toolchain backup 240,000 page faults (glibc hands each freed block's pages back). Here the
//! same few buffers go round ([`BufferPool`]): each is allocated once at the largest chunk
//! size (pages never written cost nothing), and a buffer handed back gives the pages beyond
//! its first 1 MiB to the kernel, so a free buffer holds at most that much whatever it once
//! held. The same backup now takes 130,000 faults. S3 upload parts and restore's and check's
//! local pack reads go round pools the same way.
//!
//! Why no block of MiBs may simply be freed: glibc raises its mmap threshold to the size of
//! any mapped block freed (up to 32 MiB), and its trim threshold to twice that; blocks below
//! it then come from per-thread arenas (up to 16 on two cores), which keep what is freed into
//! them. One index file's JSON or one tree pack grown by doubling was enough. Until this
//! module covered every such buffer, `hoard` set a fixed 4 MiB mmap threshold at start-up
//! (`mallopt`); without it, and before these changes, a backup of the toolchain copy peaked
//! 8 to 17 MiB higher (S3: 115 to 160), a restore 15 to 25, a `check --read-data` 30. Large
//! buffers that are not reused (documents, a large directory's listing) get room above that
//! 32 MiB ([`transient_capacity`]): mapped on their own, they go back to the kernel when
//! freed and leave the thresholds alone; room never written costs address space only.

use std::sync::{Arc, Mutex};

/// Resident bytes a free buffer keeps: the average chunk, so most chunks and small files reuse
/// pages that are already there, and a buffer that held a large chunk or file gives the rest
/// back. A run has a dozen or so buffers; at 2 MiB a toolchain backup took 75,000 page faults
/// instead of 130,000 but peaked up to 11 MiB higher (16 MiB above the KDF floor on S3, the
/// bar).
const KEEP: usize = 1 << 20;

/// Free buffers kept: more than a run has in flight (its readers, the queue to the workers and
/// the workers' own), so every buffer comes back; one beyond is freed.
const MAX_FREE: usize = 32;

/// A pool of buffers with room for `capacity` bytes each.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    capacity: usize,
    /// Resident bytes a free buffer keeps.
    keep: usize,
    created: std::sync::atomic::AtomicUsize,
}

impl BufferPool {
    /// A pool whose buffers hold `capacity` bytes without growing (a repository's largest
    /// chunk).
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::keeping(capacity, KEEP)
    }

    /// A pool whose free buffers keep up to `keep` bytes resident rather than 1 MiB: for
    /// buffers that are filled whole every time and of which few are in flight, where giving
    /// pages back only means taking them again (restore's 2 MiB pack reads refaulted 47,000
    /// pages per toolchain restore).
    pub fn keeping(capacity: usize, keep: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            capacity,
            keep,
            created: Default::default(),
        })
    }

    /// The bytes each buffer holds without growing.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many buffers the pool has allocated: as many as were ever in use at once.
    pub fn created(&self) -> usize {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An empty buffer with room for the pool's capacity, which comes back when dropped.
    pub fn take(self: &Arc<Self>) -> Buffer {
        let bytes = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| {
                self.created
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Vec::with_capacity(self.capacity)
            });
        Buffer {
            bytes,
            touched: 0,
            pool: Some(self.clone()),
        }
    }

    fn give(&self, mut bytes: Vec<u8>, touched: usize) {
        if bytes.capacity() < self.capacity {
            return; // not one of ours (shrunk); freed
        }
        release_beyond(&mut bytes, self.keep, touched);
        bytes.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < MAX_FREE {
            free.push(bytes);
        }
    }
}

/// The largest block whose free makes glibc raise its mmap threshold to the block's size (and
/// its trim threshold to twice that): `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit targets. After
/// one such free, blocks up to that size come from the per-thread arenas, which keep what is
/// freed into them: restoring the toolchain copy, whose index file decodes to 19 MiB of JSON,
/// peaked 15 to 25 MiB higher for it.
const GLIBC_DYNAMIC_THRESHOLD_MAX: usize = 32 << 20;

/// Blocks smaller than this come from the arenas in any case (glibc's initial mmap threshold),
/// so they never move it.
const GLIBC_MMAP_THRESHOLD: usize = 128 << 10;

/// The capacity to give a buffer of `len` bytes that is freed soon after (a document being
/// decoded, a file read whole): when it is larger than the arenas serve, it gets room above
/// `GLIBC_DYNAMIC_THRESHOLD_MAX` (32 MiB), so it is mapped on its own and freeing it leaves glibc's
/// thresholds where they are. Room never written costs address space, not memory. Buffers
/// that come back again and again go round a [`BufferPool`] instead.
pub fn transient_capacity(len: usize) -> usize {
    if len < GLIBC_MMAP_THRESHOLD {
        len
    } else {
        len.max(GLIBC_DYNAMIC_THRESHOLD_MAX + 4096)
    }
}

/// A vector with room for `n` elements, sized as [`transient_capacity`] sizes bytes: a large
/// directory's listing and nodes are MiBs, freed once its tree is stored.
pub fn transient_vec<T>(n: usize) -> Vec<T> {
    let size = std::mem::size_of::<T>().max(1);
    Vec::with_capacity(transient_capacity(n.saturating_mul(size)) / size)
}

/// Pushes onto a vector of unknown final length, which grows as usual until it would be
/// larger than the arenas serve, and then to room as [`transient_vec`] gives it.
pub fn push_transient<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() {
        let size = std::mem::size_of::<T>().max(1);
        let next = v.len().saturating_mul(2).max(4);
        if next.saturating_mul(size) >= GLIBC_MMAP_THRESHOLD {
            let room = transient_capacity(next.saturating_mul(size)) / size;
            v.reserve_exact(room.saturating_sub(v.len()));
        }
    }
    v.push(item);
}

/// Shortens a buffer kept from job to job to its first `keep` bytes and gives the kernel the
/// pages beyond them, keeping the allocation: freeing it would move glibc's thresholds (see
/// [`transient_capacity`]), and keeping its pages would hold the largest job's memory for
/// good.
pub fn trim_resident(bytes: &mut Vec<u8>, keep: usize) {
    if bytes.len() > keep {
        let touched = bytes.len();
        release_beyond(bytes, keep, touched);
        bytes.truncate(keep);
    }
}

/// Gives the kernel the pages of `bytes`' allocation from `keep` up to `touched`, the most it
/// has held; the allocation stays whole, and those pages read as zeros if used again.
fn release_beyond(bytes: &mut Vec<u8>, keep: usize, touched: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096; // the smallest page size Linux uses; larger ones divide by it
        let base = bytes.as_mut_ptr() as usize;
        let from = (base + keep).next_multiple_of(PAGE);
        let end = (base + bytes.capacity()) & !(PAGE - 1);
        let to = (base + touched).next_multiple_of(PAGE).min(end);
        if to > from {
            // SAFETY: [from, to) lies inside this Vec's own allocation, which nothing else
            // references, and the caller clears the Vec right after; MADV_DONTNEED on private
            // anonymous memory only drops its pages (refilled with zeros on the next touch).
            unsafe {
                nix::libc::madvise(
                    from as *mut nix::libc::c_void,
                    to - from,
                    nix::libc::MADV_DONTNEED,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (bytes, keep, touched);
}

/// Bytes from a [`BufferPool`] (or, from [`From<Vec<u8>>`], from anywhere), handed back to the
/// pool when dropped, wherever that happens: stored, deduplicated or abandoned on an error.
#[derive(Debug)]
pub struct Buffer {
    bytes: Vec<u8>,
    /// The longest `bytes` has been, as last seen by [`Buffer::vec_mut`].
    touched: usize,
    pool: Option<Arc<BufferPool>>,
}

impl Buffer {
    /// The bytes to fill or shorten. Growing past the pool's capacity reallocates, which is
    /// correct but leaves the pool (the buffer is freed when dropped).
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        self.touched = self.touched.max(self.bytes.len());
        &mut self.bytes
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(bytes: Vec<u8>) -> Self {
        Buffer {
            bytes,
            touched: 0,
            pool: None,
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let touched = self.touched.max(self.bytes.len());
            pool.give(std::mem::take(&mut self.bytes), touched);
        }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// So that a buffer can be handed on as `bytes::Bytes` without a copy: a range of a local
/// pack that restore or check reads, or an upload's part where its file cannot be mapped.
impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::borrow::Borrow<[u8]> for Buffer {
    fn borrow(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_emptied_and_keep_their_room() {
        let pool = BufferPool::new(8 << 20);
        let mut a = pool.take();
        let ptr = a.vec_mut().as_ptr();
        a.vec_mut().resize(6 << 20, 0xab);
        drop(a);
        let mut b = pool.take();
        assert_eq!(b.vec_mut().as_ptr(), ptr, "the same allocation went round");
        assert!(b.is_empty());
        // Pages given back read as zeros, those kept as they were; both are writable.
        let v = b.vec_mut();
        // SAFETY (test): within the capacity, all of it written above.
        unsafe { v.set_len(6 << 20) };
        assert_eq!(v[KEEP - 1], 0xab);
        assert_eq!(v[(6 << 20) - 1], 0);
        v.fill(1);
        assert!(v.iter().all(|&x| x == 1));
    }

    #[test]
    fn a_pool_keeping_more_keeps_those_pages_as_they_were() {
        let pool = BufferPool::keeping(4 << 20, 3 << 20);
        let mut a = pool.take();
        a.vec_mut().resize(4 << 20, 0xcd);
        drop(a);
        let mut b = pool.take();
        let v = b.vec_mut();
        // SAFETY (test): within the capacity, all of it written above.
        unsafe { v.set_len(4 << 20) };
        assert_eq!(v[(3 << 20) - 1], 0xcd, "kept");
        assert_eq!(v[(3 << 20) + 4096], 0, "given back");
    }

    #[test]
    fn large_short_lived_buffers_get_room_above_the_dynamic_threshold() {
        assert_eq!(
            transient_capacity(100),
            100,
            "small ones are left to the arenas"
        );
        assert!(transient_capacity(1 << 20) > GLIBC_DYNAMIC_THRESHOLD_MAX);
        assert_eq!(transient_capacity(64 << 20), 64 << 20);
        let v: Vec<u64> = transient_vec(200_000);
        assert!(v.capacity() * 8 > GLIBC_DYNAMIC_THRESHOLD_MAX);
        assert_eq!(transient_vec::<u64>(10).capacity(), 10);

        let mut grown = Vec::new();
        for i in 0..100_000u64 {
            push_transient(&mut grown, i);
            if grown.len() == 1_000 {
                assert!(
                    grown.capacity() * 8 < GLIBC_MMAP_THRESHOLD,
                    "grows as usual first"
                );
            }
        }
        assert!(grown.capacity() * 8 > GLIBC_DYNAMIC_THRESHOLD_MAX);
        assert!(grown.iter().copied().eq(0..100_000));
    }

    #[test]
    fn a_trimmed_buffer_keeps_its_allocation_and_its_first_bytes() {
        let mut v = vec![7u8; 5 << 20];
        let (ptr, capacity) = (v.as_ptr(), v.capacity());
        trim_resident(&mut v, KEEP);
        assert_eq!((v.as_ptr(), v.capacity(), v.len()), (ptr, capacity, KEEP));
        assert!(v.iter().all(|&b| b == 7));
        // The pages given back are written again.
        v.resize(5 << 20, 1);
        assert!(v[KEEP..].iter().all(|&b| b == 1));
        trim_resident(&mut v, 10 << 20);
        assert_eq!(
            v.len(),
            5 << 20,
            "a buffer shorter than the limit is left alone"
        );
    }

    #[test]
    fn a_buffer_from_elsewhere_or_shrunk_is_not_pooled() {
        let pool = BufferPool::new(1 << 20);
        drop(Buffer::from(vec![1u8; 10]));
        let mut a = pool.take();
        a.vec_mut().shrink_to_fit();
        drop(a);
        assert!(pool.free.lock().unwrap().is_empty());
        drop(pool.take());
        assert_eq!(pool.free.lock().unwrap().len(), 1);
    }
}
