//! Waiting on a kernel ring buffer: the programs write records, the reader sleeps in
//! `poll(2)` until one is there (the kernel wakes it on submit) or its own deadline comes.

use std::{
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

/// Sleeps until `ring` has a record or `timeout` passes; true when it has one. An
/// interrupted or failed poll returns false: the caller's deadline logic goes on as if the
/// time had passed, never spins.
pub fn wait_readable(ring: &impl AsFd, timeout: Duration) -> bool {
    let mut fds = [libc::pollfd {
        fd: ring.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // Rounded up: a deadline 0.4 ms away must not become a busy poll with timeout 0.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    n > 0 && fds[0].revents & libc::POLLIN != 0
}
