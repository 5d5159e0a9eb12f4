//! The publisher's counters: written by its worker, read by the daemon for the surfaces.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

/// The publisher's counters, shared with the daemon (which shows them); written by the
/// worker only.
#[derive(Debug)]
pub struct PublisherStats {
    pub(super) node: String,
    pub(super) taint_patches: AtomicU64,
    pub(super) condition_patches: AtomicU64,
    pub(super) capacity_patches: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) conflicts: AtomicU64,
    pub(super) requests: AtomicU64,
    pub(super) passes: AtomicU64,
    pub(super) up: AtomicBool,
    pub(super) last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherStatus {
    pub node: String,
    /// The last request succeeded (or met a 409 Conflict, which is retried).
    pub up: bool,
    pub taint_patches: u64,
    pub condition_patches: u64,
    pub capacity_patches: u64,
    /// Passes that failed (each retried after a backoff).
    pub failures: u64,
    /// 409 Conflicts answered to a taint patch (each re-read and tried again).
    pub conflicts: u64,
    /// Every request sent (reads and patches).
    pub requests: u64,
    /// Passes over the desired state (done or failed): how far the worker has got.
    pub passes: u64,
    /// Why the last pass failed, until one succeeds.
    pub last_error: Option<String>,
}

impl PublisherStats {
    pub(super) fn new(node: &str) -> PublisherStats {
        PublisherStats {
            node: node.to_string(),
            taint_patches: AtomicU64::new(0),
            condition_patches: AtomicU64::new(0),
            capacity_patches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            up: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    pub fn status(&self) -> PublisherStatus {
        // Acquire, paired with `count`'s Release: a failure counted is seen with the error
        // the worker wrote before counting it.
        let n = |c: &AtomicU64| c.load(Ordering::Acquire);
        PublisherStatus {
            node: self.node.clone(),
            up: self.up.load(Ordering::Relaxed),
            taint_patches: n(&self.taint_patches),
            condition_patches: n(&self.condition_patches),
            capacity_patches: n(&self.capacity_patches),
            failures: n(&self.failures),
            conflicts: n(&self.conflicts),
            requests: n(&self.requests),
            passes: n(&self.passes),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }

    pub(super) fn count(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Release);
    }
}
