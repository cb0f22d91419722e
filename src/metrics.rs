//! Counters about the worker itself, kept in atomics so any thread can count without locks;
//! they are logged and, later, exported.

use std::sync::atomic::{AtomicU64, Ordering};

static JOBS_COMPLETED: AtomicU64 = AtomicU64::new(0);
static JOBS_FAILED: AtomicU64 = AtomicU64::new(0);
static JOBS_UNPARSEABLE: AtomicU64 = AtomicU64::new(0);

pub fn count_completed() {
    JOBS_COMPLETED.fetch_add(1, Ordering::Relaxed);
}
pub fn count_failed() {
    JOBS_FAILED.fetch_add(1, Ordering::Relaxed);
}
pub fn count_unparseable() {
    JOBS_UNPARSEABLE.fetch_add(1, Ordering::Relaxed);
}

/// (completed, failed, unparseable) since start.
pub fn jobs() -> (u64, u64, u64) {
    (
        JOBS_COMPLETED.load(Ordering::Relaxed),
        JOBS_FAILED.load(Ordering::Relaxed),
        JOBS_UNPARSEABLE.load(Ordering::Relaxed),
    )
}
