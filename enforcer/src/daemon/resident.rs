//! The daemon stays resident: its pages are locked in memory (`mlockall`), so that the
//! memory pressure it exists to act on cannot page its own code out and stall its tick.
//!
//! Found by the VM matrix (`tests/tests/pressure.rs`): under direct reclaim in a 2 GiB
//! guest the daemon's text pages were reclaimed with the rest of the page cache, every
//! tick refaulted them, and the daemon saw the stall only after the kernel's OOM killer
//! had acted. What is mapped at start-up is locked and populated now (the whole binary: a
//! rarely run path, the kill, must not need a page read in the worst minute of the node);
//! what is mapped later (heap, thread stacks) is locked as it is touched, so that address
//! space reserved and never used costs nothing.

/// Locks the daemon's memory. On failure (no `CAP_IPC_LOCK`, a `RLIMIT_MEMLOCK` too low)
/// the daemon runs unlocked, and says so in one line with what to do.
pub fn lock_in_memory() {
    // SAFETY: mlockall takes flags only and changes no memory the program sees.
    let current = unsafe { libc::mlockall(libc::MCL_CURRENT) };
    if current != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(
            "daemon.lock_memory: mlockall(MCL_CURRENT) failed: {e}; the daemon runs unlocked and memory pressure can page its code out (give it CAP_IPC_LOCK and an unlimited RLIMIT_MEMLOCK, or set daemon.lock_memory = false to silence this)"
        );
        return;
    }
    // SAFETY: as above. Without MCL_CURRENT the mappings locked above stay as they are.
    let future = unsafe { libc::mlockall(libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if future != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(
            "daemon.lock_memory: mlockall(MCL_FUTURE | MCL_ONFAULT) failed: {e}; what is mapped from now on is not locked"
        );
        return;
    }
    tracing::info!("daemon memory locked (mlockall: the binary now, the rest as it is touched)");
}
