//! Keeping resident memory close to what the data needs.
//!
//! glibc's malloc keeps freed memory in its arenas. Insert bodies and log
//! reads are large and short-lived: at 1M events they left ~55 MiB resident
//! on top of ~65 MiB of data (`VmRSS` after a replay). Trimming once a second
//! hands that back to the OS. (A low mmap threshold did too, but its fresh
//! zeroed pages on every large allocation slowed inserts.)
//!
//! Trimming does not reach the top of a thread's arena, though, and glibc's
//! default thresholds grow with the largest block freed: after a 10M-event
//! load, threads that had handled insert bodies kept up to ~26 MiB of free
//! arena top resident each (~40 MiB of 385 in all). [`configure`] fixes the
//! thresholds.

/// Fixes glibc malloc's thresholds (glibc only); call once at start, before
/// other threads allocate.
///
/// Blocks up to 32 MiB (insert bodies) come from the heap, as the dynamic
/// threshold had them after the first large free, not from fresh mmaps;
/// and a free top over 4 MiB goes back to the OS on free, where the dynamic
/// trim threshold (twice the largest mmapped block freed) let it stay.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other
    // threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

/// Returns free heap memory of every arena to the OS (glibc only).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
