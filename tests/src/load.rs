//! Bounded loads shared by tests and benchmarks.

use std::process::Command;

use crate::{
    cgroup::{TestCgroup, spawn_in},
    process::ChildGuard,
};

const MIB: u64 = 1 << 20;

/// Caps a v1 memory cgroup at `limit_mib` and starts a bounded allocator asking for
/// `alloc_mib` of anonymous memory in it for `seconds`: the kernel reclaims (and OOM-kills
/// the worker, which stress-ng restarts) over and over. The cgroup must be a child of the
/// caller's own memory cgroup.
pub fn memcg_squeeze(
    memory: &TestCgroup,
    limit_mib: u64,
    alloc_mib: u64,
    seconds: u32,
) -> ChildGuard {
    std::fs::write(
        memory.dir().join("memory.limit_in_bytes"),
        (limit_mib * MIB).to_string(),
    )
    .expect("set memory.limit_in_bytes");
    let mut stress = Command::new("stress-ng");
    stress.args([
        "--vm",
        "1",
        "--vm-bytes",
        &format!("{alloc_mib}M"),
        "--timeout",
        &format!("{seconds}s"),
        "--quiet",
    ]);
    spawn_in(&[memory], stress)
}
