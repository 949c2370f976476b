//! Stopping a running query: a cancel flag shared between the server (which
//! sets it on `DELETE /queries/{id}` or when the deadline passes) and the
//! query's workers (which look at it before each partition and each
//! customer). The flag travels in a thread-local, set by whoever runs the
//! query ([`with_control`]) and handed on to the workers of
//! [`crate::parallel::for_each_partition`], so no query signature changes.

use crate::QueryError;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// The stop flag of one query.
#[derive(Debug, Default)]
pub struct QueryControl {
    state: AtomicU8,
    read_only: AtomicBool,
}

impl QueryControl {
    /// A running query's flag.
    pub fn new() -> Arc<QueryControl> {
        Arc::new(QueryControl::default())
    }

    /// Forbids the query to write customer properties (a reader's query).
    pub fn set_read_only(&self) {
        self.read_only.store(true, Ordering::Relaxed);
    }

    /// Asks the query to stop because a client cancelled it.
    pub fn cancel(&self) {
        let _ =
            self.state
                .compare_exchange(RUNNING, CANCELLED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Asks the query to stop because its deadline passed.
    pub fn time_out(&self) {
        let _ =
            self.state
                .compare_exchange(RUNNING, TIMED_OUT, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether the query was asked to stop.
    pub fn stopped(&self) -> bool {
        self.state.load(Ordering::Relaxed) != RUNNING
    }

    /// `Err` once the query was asked to stop.
    pub fn check(&self) -> Result<(), QueryError> {
        match self.state.load(Ordering::Relaxed) {
            RUNNING => Ok(()),
            CANCELLED => Err(QueryError::Cancelled),
            _ => Err(QueryError::TimedOut),
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<QueryControl>>> = const { RefCell::new(None) };
}

/// Runs `f` with `control` as this thread's query control.
pub fn with_control<T>(control: Option<Arc<QueryControl>>, f: impl FnOnce() -> T) -> T {
    let before = CURRENT.with(|c| c.replace(control));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = before);
    out
}

/// This thread's query control, if any.
pub fn current() -> Option<Arc<QueryControl>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether this thread's query was asked to stop (cheap: one atomic load).
pub fn stopped() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|q| q.stopped()))
}

/// `Err` once this thread's query was asked to stop.
pub fn check() -> Result<(), QueryError> {
    CURRENT.with(|c| c.borrow().as_ref().map_or(Ok(()), |q| q.check()))
}

/// `Err(ReadOnly)` when this thread's query may not write and has writes.
pub fn may_write(has_writes: bool) -> Result<(), QueryError> {
    let read_only = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|q| q.read_only.load(Ordering::Relaxed))
    });
    if has_writes && read_only {
        Err(QueryError::ReadOnly)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_travels_and_first_reason_wins() {
        let q = QueryControl::new();
        assert!(with_control(Some(q.clone()), check).is_ok());
        q.time_out();
        q.cancel();
        assert!(matches!(
            with_control(Some(q.clone()), check),
            Err(QueryError::TimedOut)
        ));
        assert!(check().is_ok(), "restored after with_control");
    }
}
