//! Helpers shared by the privileged integration tests and the benchmarks: RAII guards for
//! cgroups, child processes, network namespaces and a running daemon, so that everything a
//! test creates is removed even when it panics.
//!
//! Rules these helpers enforce (see ../shared/notes): cgroups are created only as children
//! of the cgroup this process runs in, memory cgroups especially; processes are never moved
//! out of their memory cgroup; no hierarchy is ever mounted or unmounted.

pub mod actuate;
pub mod alerting;
pub mod cgroup;
pub mod cgroup_root;
pub mod containerd;
pub mod cri;
pub mod daemon;
pub mod image;
pub mod kubelet;
pub mod layout;
pub mod load;
pub mod net;
pub mod netns;
pub mod pods;
pub mod process;
pub mod servers;
pub mod workload;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// A name no other test (or concurrent run) uses: `prefix-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails loudly when not root: a privileged test that silently skips is a failure.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the privileged integration tests must run as root (cargo xtask test)"
    );
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}
