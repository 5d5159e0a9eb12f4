//! CPU readings by polling cgroupfs and /proc/stat, the way polling agents work. Kept as
//! `daemon.sampler = "cgroupfs"` so the eBPF path can be measured against it side by side
//! (`cargo xtask bench -- latency`), and as a fallback on kernels the programs cannot load on.

use std::{collections::HashMap, path::PathBuf, time::Instant};

use super::cpu::CpuReading;
use crate::clock::monotonic_ns;

/// Where per-cgroup CPU time is read.
#[derive(Debug, Clone)]
pub enum UsageFiles {
    /// v1: `cpuacct.usage` (ns, hierarchical) under the cpuacct mount.
    Cpuacct(PathBuf),
    /// cgroup2: `usage_usec` of `cpu.stat` (hierarchical).
    CpuStat(PathBuf),
}

pub struct CgroupfsPoller {
    files: UsageFiles,
    /// USER_HZ, the unit of /proc/stat.
    ticks_per_second: u64,
}

/// Busy (non-idle, non-iowait) CPU time of the node from /proc/stat, in nanoseconds.
fn node_busy_ns(ticks_per_second: u64) -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    // already inside user and nice.
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum();
    busy * 1_000_000_000 / ticks_per_second.max(1)
}

impl CgroupfsPoller {
    pub fn new(files: UsageFiles) -> CgroupfsPoller {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        CgroupfsPoller {
            files,
            ticks_per_second: if hz > 0 { hz as u64 } else { 100 },
        }
    }

    fn usage_ns(&self, rel: &str) -> Option<u64> {
        match &self.files {
            UsageFiles::Cpuacct(root) => {
                std::fs::read_to_string(root.join(rel).join("cpuacct.usage"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            }
            UsageFiles::CpuStat(root) => crate::host::keyed(
                &std::fs::read_to_string(root.join(rel).join("cpu.stat")).ok()?,
                "usage_usec",
            )
            .map(|us| us * 1000),
        }
    }

    /// Reads every cgroup of `cgroups` (id, relative path). cgroupfs figures are
    /// hierarchical; each cgroup's own time is its figure minus its children's, which is what
    /// the eBPF sampler reports.
    pub fn read(&self, cgroups: &[(u64, String)]) -> CpuReading {
        let started = Instant::now();
        let mut total: HashMap<&str, u64> = HashMap::with_capacity(cgroups.len());
        for (_, rel) in cgroups {
            if let Some(ns) = self.usage_ns(rel) {
                total.insert(rel.as_str(), ns);
            }
        }
        let mut children: HashMap<&str, u64> = HashMap::new();
        for (rel, ns) in &total {
            if !rel.is_empty() {
                let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
                *children.entry(parent).or_default() += ns;
            }
        }
        let mut per_cgroup = HashMap::with_capacity(total.len());
        for (id, rel) in cgroups {
            if let Some(ns) = total.get(rel.as_str()) {
                let own = ns.saturating_sub(children.get(rel.as_str()).copied().unwrap_or(0));
                per_cgroup.insert(*id, own);
            }
        }
        CpuReading {
            at_ns: monotonic_ns(),
            per_cgroup,
            busy_ns: node_busy_ns(self.ticks_per_second),
            read_duration: started.elapsed(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_time_is_the_hierarchical_figure_minus_the_childrens() {
        let dir = tempfile::tempdir().unwrap();
        for (rel, ns) in [("", 100u64), ("a", 60), ("a/b", 25), ("c", 30)] {
            std::fs::create_dir_all(dir.path().join(rel)).unwrap();
            std::fs::write(
                dir.path().join(rel).join("cpuacct.usage"),
                format!("{ns}\n"),
            )
            .unwrap();
        }
        let poller = CgroupfsPoller::new(UsageFiles::Cpuacct(dir.path().to_path_buf()));
        let cgroups: Vec<(u64, String)> = [(1, ""), (2, "a"), (3, "a/b"), (4, "c")]
            .into_iter()
            .map(|(i, p)| (i, p.to_string()))
            .collect();
        let r = poller.read(&cgroups);
        assert_eq!(r.per_cgroup[&1], 10);
        assert_eq!(r.per_cgroup[&2], 35);
        assert_eq!(r.per_cgroup[&3], 25);
        assert_eq!(r.per_cgroup[&4], 30);
        assert!(r.busy_ns > 0, "node busy time from /proc/stat");
    }
}
