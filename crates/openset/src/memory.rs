//! Keeping resident memory close to what the data needs.
//!
//! glibc's malloc keeps freed memory in its arenas. Insert bodies and log
//! reads are large and short-lived: at 1M events they left ~55 MiB resident
//! on top of ~65 MiB of data (`VmRSS` after a replay). Trimming once a second
//! while inserts pause ([`Release`]) hands that back to the OS. (A low mmap
//! threshold did too, but its fresh zeroed pages on every large allocation
//! slowed inserts; so did trimming every second during a load, see
//! [`Release`].)
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

/// When to hand freed memory back: on a once-a-second tick, only if the
/// number of stored events has not moved since the previous tick. During a
/// load the next insert bodies reuse what the last ones freed; handed back,
/// it returns as fresh pages, each a page fault (and on a VM often a fault
/// of the host too). A 10M-event load took 530,000 page faults instead of
/// 690,000-720,000 and ran 10% faster, with the same resident memory 2.5 s
/// after it (bench/README.md).
#[derive(Debug, Default)]
pub struct Release {
    last_events: Option<u64>,
}

impl Release {
    /// Whether to release now, given the events stored now (`None` while
    /// the node holds no data): true when that has not changed since the
    /// last call.
    pub fn due(&mut self, events: Option<u64>) -> bool {
        let quiet = events == self.last_events;
        self.last_events = events;
        quiet
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

#[cfg(test)]
mod tests {
    use super::Release;

    #[test]
    fn memory_goes_back_only_once_inserts_pause() {
        let mut r = Release::default();
        // Before any data, and on an idle node, every tick releases.
        assert!(r.due(None));
        assert!(r.due(None));
        // A load: the count moves on every tick, so nothing is released.
        assert!(!r.due(Some(50_000)));
        assert!(!r.due(Some(120_000)));
        // The first tick after it stops releases, and so does every later one.
        assert!(r.due(Some(120_000)));
        assert!(r.due(Some(120_000)));
        assert!(!r.due(Some(120_001)));
    }
}
