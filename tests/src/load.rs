//! Bounded loads shared by tests and benchmarks.

use std::process::Command;

use crate::{
    cgroup::{TestCgroup, cpu_hog, spawn_in},
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

/// One workload laid out as kubelet and Yarn do: the same relative path in the cpu, cpuacct
/// and cgroup2 hierarchies (children of this process's own cgroups), so that the daemon
/// charges, classifies, throttles, freezes and kills it whatever the host's layout.
pub struct Workload {
    pub cpu: TestCgroup,
    pub cpuacct: TestCgroup,
    pub unified: TestCgroup,
}

impl Workload {
    pub fn new(name: &str) -> Workload {
        Workload {
            cpu: TestCgroup::create("cpu", name),
            cpuacct: TestCgroup::create("cpuacct", name),
            unified: TestCgroup::create("unified", name),
        }
    }

    /// A CPU hog in every hierarchy of the workload, exiting by itself after `seconds`.
    pub fn hog(&self, seconds: f64) -> ChildGuard {
        spawn_in(&[&self.cpu, &self.cpuacct, &self.unified], cpu_hog(seconds))
    }

    /// `n` hogs (e.g. one per CPU, to fill the node).
    pub fn hogs(&self, n: usize, seconds: f64) -> Vec<ChildGuard> {
        (0..n).map(|_| self.hog(seconds)).collect()
    }
}
