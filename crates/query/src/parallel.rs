//! The one place that runs work over a table's partitions in parallel.

use crate::QueryError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use store::partition::TablePartition;
use store::Engine;

/// Runs `work` for every partition that holds table `uid`, on up to one
/// worker per core; workers take partitions one at a time under the
/// partition's read lock and fold into their own accumulator (from `init`).
/// The first error stops every worker and is returned; otherwise the
/// accumulators come back, one per worker, to be merged by the caller.
pub fn for_each_partition<A: Send>(
    engine: &Engine,
    uid: u64,
    init: impl Fn() -> A + Sync,
    work: impl Fn(&mut A, u32, &TablePartition) -> Result<(), QueryError> + Sync,
) -> Result<Vec<A>, QueryError> {
    let partitions = engine.partition_count() as usize;
    // The caller's stop flag, handed to every worker (see `control`).
    let control = crate::control::current();
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<QueryError>> = Mutex::new(None);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(partitions)
        .max(1);
    let results: Vec<A> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    crate::control::with_control(control.clone(), || {
                        let mut acc = init();
                        loop {
                            let p = next.fetch_add(1, Ordering::Relaxed);
                            if p >= partitions || failed.lock().map(|f| f.is_some()).unwrap_or(true)
                            {
                                break;
                            }
                            if let Err(e) = crate::control::check() {
                                if let Ok(mut f) = failed.lock() {
                                    f.get_or_insert(e);
                                }
                                break;
                            }
                            let part = engine.read(p as u32);
                            let Some(tp) = part.tables.get(&uid) else {
                                continue;
                            };
                            if let Err(e) = work(&mut acc, p as u32, tp) {
                                if let Ok(mut f) = failed.lock() {
                                    f.get_or_insert(e);
                                }
                                break;
                            }
                        }
                        acc
                    })
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    // Workers skip customers once stopped, so a stopped run is incomplete.
    crate::control::check()?;
    if results.len() != workers {
        return Err(QueryError::Store(store::StoreError::Unavailable(
            "a query worker failed".into(),
        )));
    }
    Ok(results)
}
