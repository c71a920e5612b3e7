//! The one allocator setting a backup needs under glibc, for every program that runs one.

/// Keeps glibc from holding on to freed chunk buffers; the `hoard` binary calls it first
/// thing, and a program that embeds hoard should too (once, at the start of `main`). It
/// changes the allocator of the whole process, which is the program's to decide, so the
/// library never calls it itself. Elsewhere than Linux with glibc it does nothing.
///
/// Why: glibc raises its mmap threshold whenever a large block is freed (and its trim
/// threshold to twice that), so once a multi-MiB chunk buffer is freed, later ones are carved
/// from the per-thread arenas, up to 16 of them on two cores, which then keep megabytes each
/// they never hand back. A backup of a 1.2 GB copy of the Rust toolchain peaked at 178 MiB
/// without this and at 77 with it; `init`, which pays the 64 MiB of the key derivation that
/// every command pays, peaks at 73 to 76.
///
/// Tried in its place and measured worse on the same backup: glibc's arena count capped at
/// two (79 MiB, but an unchanged re-backup ran 12% slower, its walkers queueing for the
/// allocator's locks); pooled read and chunk buffers (141 to 164 MiB; a pooled buffer keeps
/// the pages of the largest chunk it ever held); a 4 MiB mmap threshold with a 16 MiB trim
/// threshold (fewer page faults, 154 MiB); one zstd context per input size (85 to 102 MiB
/// with this setting).
pub fn limit_allocator_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the allocator's own locks and only changes its tuning; no memory
    // is touched that Rust owns.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}
