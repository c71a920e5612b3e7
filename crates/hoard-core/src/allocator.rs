//! The one allocator setting a backup needs under glibc, for every program that runs one.

/// Keeps glibc from holding on to freed chunk buffers; the `hoard` binary calls it first
/// thing, and a program that embeds hoard should too (once, at the start of `main`). It
/// changes the allocator of the whole process, which is the program's to decide, so the
/// library never calls it itself. Elsewhere than Linux with glibc it does nothing.
///
/// Why: glibc raises its mmap threshold whenever a large block is freed (and its trim
/// threshold to twice that), after which blocks below it are carved from the per-thread
/// arenas, up to 16 of them on two cores, and each arena keeps megabytes it never hands back.
/// Backup's own large buffers no longer churn (chunks go round a [`crate::buffers`] pool, and
/// the zstd contexts never resize), but the rest still does: tree and directory-listing
/// buffers, `check`'s packs. Without this setting a backup of a 1.2 GB copy of the Rust
/// toolchain peaked at 85 to 105 MiB, against 77 to 84 with it (`init`, which pays the 64 MiB
/// of the key derivation every command pays, peaks at 76); a `malloc_trim` after every pack
/// brought it to 77 to 82, so it is freed memory the arenas keep. `check --read-data` peaked
/// at 107 MiB against 78.
///
/// Tried in its place and measured worse on the same backup: glibc's arena count capped at
/// two (79 MiB, but an unchanged re-backup ran 12% slower, its walkers queueing for the
/// allocator's locks); a 4 MiB mmap threshold with a 16 MiB trim threshold (fewer page faults,
/// 154 MiB); mimalloc as the global allocator (555 to 672 MiB).
pub fn limit_allocator_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the allocator's own locks and only changes its tuning; no memory
    // is touched that Rust owns.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}
