//! Moves the process's densely used heap memory onto huge pages.
//!
//! Customers' rows live in millions of small allocations, so a scan over
//! customers touches a new 4 KiB page (a TLB miss and a page walk) for
//! nearly every customer: at 10 million events that was a third of a
//! plain event-name scan. The allocator's heaps are ordinary anonymous
//! mappings that the kernel backs with 4 KiB pages unless asked otherwise,
//! and asking up front (`MADV_HUGEPAGE`) does little for heaps that grow a
//! page at a time. Once writes go quiet, [`collapse_heap`] asks the kernel
//! to rebuild each 2 MiB block that is almost entirely in use as one huge
//! page (`MADV_COLLAPSE`, Linux 6.1): the same bytes at the same addresses,
//! with a TLB entry covering 512 times as much. Blocks with more than a few
//! pages not in memory are left alone, so resident memory grows by at most
//! a few percent. Where the kernel cannot do it, nothing changes. See ADR 0006.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What one [`collapse_heap`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collapse {
    /// 2 MiB blocks now on huge pages.
    pub collapsed: usize,
    /// Dense blocks the kernel declined (no huge page free, or unsupported).
    pub refused: usize,
}

/// A 2 MiB block is collapsed only with at least this many of its 512
/// pages already in memory: the rest become resident with the huge page.
const MIN_RESIDENT_PAGES: usize = 496;

#[cfg(target_os = "linux")]
/// Collapses every dense 2 MiB block of the process's private writable
/// anonymous mappings into a huge page (see the module doc).
pub fn collapse_heap() -> Collapse {
    const HUGE: usize = 2 << 20;
    const MADV_COLLAPSE: libc::c_int = 25;
    let mut out = Collapse::default();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return out;
    };
    let page = 4096usize;
    let mut resident = vec![0u8; HUGE / page];
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        // Anonymous (no file name) or the main heap; private and writable.
        let name = f.nth(3).unwrap_or("");
        if perms != "rw-p" || !(name.is_empty() || name == "[heap]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        let mut block = start.next_multiple_of(HUGE);
        while block + HUGE <= end {
            // SAFETY: mincore only reports which pages of a mapped range are
            // resident; the range lies inside a mapping just listed.
            let ok =
                unsafe { libc::mincore(block as *mut libc::c_void, HUGE, resident.as_mut_ptr()) }
                    == 0;
            if ok && resident.iter().filter(|&&r| r & 1 == 1).count() >= MIN_RESIDENT_PAGES {
                // SAFETY: MADV_COLLAPSE keeps the contents and addresses of
                // the range; only how it is backed changes.
                let r = unsafe { libc::madvise(block as *mut libc::c_void, HUGE, MADV_COLLAPSE) };
                if r == 0 {
                    out.collapsed += 1;
                } else {
                    out.refused += 1;
                }
            }
            block += HUGE;
        }
    }
    out
}

/// A thread that runs [`collapse_heap`] when asked, so neither writes nor
/// startup wait for it (a pass over 350 MiB takes over a second, and the
/// kernel lets the rest of the process run meanwhile).
pub struct Collapser {
    tx: std::sync::mpsc::SyncSender<()>,
    /// Passes asked for, and passes whose start saw that many asked for
    /// (then finished): busy while they differ. Counts rather than a flag,
    /// so a request made during a pass keeps it busy until the next one.
    requested: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

impl Collapser {
    /// Starts the thread (`None` if the system refuses a thread).
    pub fn start() -> Option<Collapser> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let requested = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicU64::new(0));
        let (asked, done) = (requested.clone(), finished.clone());
        std::thread::Builder::new()
            .name("hugepages".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let covers = asked.load(Ordering::Acquire);
                    let t0 = std::time::Instant::now();
                    let c = collapse_heap();
                    done.store(covers, Ordering::Release);
                    tracing::debug!(
                        collapsed = c.collapsed,
                        refused = c.refused,
                        ms = t0.elapsed().as_millis() as u64,
                        "heap onto huge pages"
                    );
                }
            })
            .ok()?;
        Some(Collapser {
            tx,
            requested,
            finished,
        })
    }

    /// Asks for a pass; one already asked for and not yet started covers it.
    pub fn request(&self) {
        self.requested.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.try_send(());
    }

    /// True while a pass is asked for or running. Memory being moved is
    /// briefly unavailable to other threads, so queries meanwhile can take
    /// several times longer (a 10M-event heap takes about 2 s; later passes
    /// only move what is new).
    pub fn busy(&self) -> bool {
        self.finished.load(Ordering::Acquire) != self.requested.load(Ordering::Acquire)
    }
}

#[cfg(not(target_os = "linux"))]
/// Huge pages are only asked for on Linux.
pub fn collapse_heap() -> Collapse {
    Collapse::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dense_block_is_found_and_keeps_its_contents() {
        // 8 MiB written through: at least three whole 2 MiB blocks, dense.
        let data: Vec<u64> = (0..1u64 << 20)
            .map(|i| i.wrapping_mul(0x9E37_79B9))
            .collect();
        let c = collapse_heap();
        // Collapsed where the kernel allows; refused where THP is off. Either
        // way the block was seen as dense.
        if cfg!(target_os = "linux") {
            assert!(c.collapsed + c.refused >= 3, "{c:?}");
        }
        assert!(data
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (i as u64).wrapping_mul(0x9E37_79B9)));
    }
}
