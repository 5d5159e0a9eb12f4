//! A unit of work as kubelet lays it out on whatever cgroup layout this node has: pure
//! cgroup2 (every controller in the unified hierarchy), pure v1 or a hybrid. The same
//! relative path is made in every hierarchy that has a job (cpu, cpuacct, memory, the v1
//! freezer, cgroup2), below this process's own memory cgroup, so the tests that use it run
//! unchanged on the host and in the VM matrix's guests.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    cgroup::{TestCgroup, mount_point, own_cgroup_dir, spawn_in},
    process::ChildGuard,
    unique_name,
};

/// The controllers cgroup2 has at its root (empty on a hybrid host, none without cgroup2).
pub fn v2_controllers() -> Vec<String> {
    mount_point("unified")
        .and_then(|m| std::fs::read_to_string(m.join("cgroup.controllers")).ok())
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Where one controller is: its hierarchy's mount and whether that is cgroup2.
#[derive(Debug, Clone)]
struct Place {
    mount: PathBuf,
    v2: bool,
}

fn place(controller: &str) -> Option<Place> {
    if v2_controllers().iter().any(|c| c == controller) {
        return mount_point("unified").map(|mount| Place { mount, v2: true });
    }
    mount_point(controller).map(|mount| Place { mount, v2: false })
}

/// A test cgroup at one relative path in every hierarchy.
pub struct Unit {
    /// The cgroup directory in each hierarchy, as the process is placed (dropped first).
    leaves: Vec<TestCgroup>,
    /// The first directory created on the way to each leaf: removes everything on drop.
    _tops: Vec<TestCgroup>,
    /// The path relative to each hierarchy's root, without a leading `/`.
    pub rel: String,
    pub name: String,
    cpu: Place,
    cpuacct: Option<Place>,
    memory: Option<Place>,
}

impl Unit {
    pub fn create(prefix: &str) -> Unit {
        Unit::named(&unique_name(prefix))
    }

    /// A unit named exactly `name` (unique already: a test's rules match it by name).
    pub fn named(name: &str) -> Unit {
        let name = name.to_string();
        let cpu = place("cpu").expect("no cpu controller on any hierarchy");
        let memory = place("memory");
        // Below the own memory cgroup (the rule for memory), else the own cpu cgroup.
        let anchor = memory.as_ref().unwrap_or(&cpu);
        let own = own_cgroup_dir(if anchor.v2 {
            "unified"
        } else if memory.is_some() {
            "memory"
        } else {
            "cpu"
        });
        let base = own
            .strip_prefix(&anchor.mount)
            .expect("own cgroup under its mount");
        let rel = base
            .join(&name)
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        let cpuacct = (!cpu.v2).then(|| place("cpuacct")).flatten();
        let mut mounts: Vec<PathBuf> = vec![cpu.mount.clone()];
        mounts.extend(cpuacct.iter().map(|p| p.mount.clone()));
        mounts.extend(memory.iter().map(|p| p.mount.clone()));
        mounts.extend(mount_point("freezer"));
        mounts.extend(mount_point("unified"));
        mounts.sort();
        mounts.dedup();
        let mut tops = Vec::new();
        let mut leaves = Vec::new();
        for m in &mounts {
            tops.push(TestCgroup::create_path(m, &rel));
            leaves.push(TestCgroup::create_at(m, &rel));
        }
        Unit {
            leaves,
            _tops: tops,
            rel,
            name,
            cpu,
            cpuacct,
            memory,
        }
    }

    /// A unit at `name` below this one, in every hierarchy. This unit's
    /// `cgroup.subtree_control` is left as it is: on cgroup2 nothing is delegated to the
    /// child (no `cpu.max`, no `memory.max` there) unless the test enables it.
    pub fn child(&self, name: &str) -> Unit {
        let leaves = self
            .leaves
            .iter()
            .map(|l| TestCgroup::create_at(l.dir(), name))
            .collect();
        Unit {
            leaves,
            _tops: Vec::new(),
            rel: format!("{}/{name}", self.rel),
            name: format!("{}/{name}", self.name),
            cpu: self.cpu.clone(),
            cpuacct: self.cpuacct.clone(),
            memory: self.memory.clone(),
        }
    }

    /// The unit's own directory in the hierarchy of `controller` and whether that is
    /// cgroup2 (`None`: no such controller on this node).
    pub fn controller_dir(&self, controller: &str) -> Option<(PathBuf, bool)> {
        let p = match controller {
            "cpu" => Some(&self.cpu),
            "memory" => self.memory.as_ref(),
            _ => None,
        }?;
        Some((self.dir_in(p), p.v2))
    }

    fn dir_in(&self, p: &Place) -> PathBuf {
        p.mount.join(&self.rel)
    }

    fn read(&self, dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("reading {}/{file}: {e}", dir.display()))
    }

    fn read_u64(&self, dir: &Path, file: &str) -> u64 {
        self.read(dir, file)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}/{file}: not a number: {e}", dir.display()))
    }

    /// The unit's path as the daemon names it (the CPU hierarchy's, with a leading `/`).
    pub fn path(&self) -> String {
        format!("/{}", self.rel)
    }

    /// Starts `command` with its process in every hierarchy's cgroup before it execs.
    pub fn spawn(&self, command: Command) -> ChildGuard {
        let leaves: Vec<&TestCgroup> = self.leaves.iter().collect();
        spawn_in(&leaves, command)
    }

    /// The kernel's CPU time of the unit: `cpu.stat` on cgroup2, `cpuacct.usage` on v1.
    pub fn cpu_usage_ns(&self) -> u64 {
        if self.cpu.v2 {
            let stat = self.read(&self.dir_in(&self.cpu), "cpu.stat");
            stat.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .expect("usage_usec in cpu.stat")
                * 1000
        } else {
            let acct = self.cpuacct.as_ref().expect("a v1 cpuacct hierarchy");
            self.read_u64(&self.dir_in(acct), "cpuacct.usage")
        }
    }

    /// A counter of the unit's `cpu.stat` (`nr_throttled`, ...), in its CPU hierarchy.
    pub fn cpu_stat(&self, field: &str) -> u64 {
        let stat = self.read(&self.dir_in(&self.cpu), "cpu.stat");
        stat.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in cpu.stat: {stat}"))
    }

    /// The CPU quota in force, in cores (None: unlimited): `cpu.max` on cgroup2,
    /// `cpu.cfs_quota_us` / `cpu.cfs_period_us` on v1.
    pub fn cpu_quota_cores(&self) -> Option<f64> {
        let dir = self.dir_in(&self.cpu);
        if self.cpu.v2 {
            let text = self.read(&dir, "cpu.max");
            let mut parts = text.split_whitespace();
            let quota: f64 = parts.next()?.parse().ok()?;
            let period: f64 = parts.next()?.parse().ok()?;
            Some(quota / period)
        } else {
            let quota: i64 = self.read(&dir, "cpu.cfs_quota_us").trim().parse().ok()?;
            let period = self.read_u64(&dir, "cpu.cfs_period_us") as f64;
            (quota > 0).then(|| quota as f64 / period)
        }
    }

    /// The files that hold the unit's CPU quota and memory limit (cgroup2 or v1), with
    /// their directories: what a test presets as an operator's own limits and compares.
    pub fn limit_files(&self) -> Vec<(PathBuf, &'static str)> {
        let mut files = vec![(
            self.dir_in(&self.cpu),
            if self.cpu.v2 {
                "cpu.max"
            } else {
                "cpu.cfs_quota_us"
            },
        )];
        if let Some(m) = &self.memory {
            let dir = self.dir_in(m);
            if m.v2 {
                files.push((dir.clone(), "memory.high"));
                files.push((dir, "memory.max"));
            } else {
                files.push((dir, "memory.limit_in_bytes"));
            }
        }
        files
    }

    /// Sets the unit's own CPU quota and, with a memory controller, its memory limit (the
    /// hard one; cgroup2's `memory.high` left at max), as an operator or kubelet would.
    pub fn set_own_limits(&self, cores: f64, memory_bytes: u64) {
        let dir = self.dir_in(&self.cpu);
        let quota = (cores * 100_000.0) as u64;
        let (file, value) = if self.cpu.v2 {
            ("cpu.max", format!("{quota} 100000"))
        } else {
            assert_eq!(self.read_u64(&dir, "cpu.cfs_period_us"), 100_000);
            ("cpu.cfs_quota_us", quota.to_string())
        };
        std::fs::write(dir.join(file), value).expect("presetting the CPU quota");
        if let Some(m) = &self.memory {
            let file = if m.v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            std::fs::write(self.dir_in(m).join(file), memory_bytes.to_string())
                .expect("presetting the memory limit");
        }
    }

    /// The node has a memory controller (pure v1 from kernel 6.12 on has none).
    pub fn has_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Memory is limited on cgroup2 (`memory.high` + `memory.max`).
    pub fn memory_v2(&self) -> bool {
        self.memory.as_ref().expect("a memory controller").v2
    }

    fn memory_dir(&self) -> PathBuf {
        self.dir_in(self.memory.as_ref().expect("a memory controller"))
    }

    pub fn memory_usage(&self) -> u64 {
        let file = if self.memory_v2() {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        self.read_u64(&self.memory_dir(), file)
    }

    /// (`memory.high`, hard limit): cgroup2's high (None: `max`) and `memory.max`, or
    /// (None, `memory.limit_in_bytes`) on v1. A hard limit of `max` is `u64::MAX`.
    pub fn memory_limits(&self) -> (Option<u64>, u64) {
        let dir = self.memory_dir();
        let value = |f: &str| self.read(&dir, f).trim().parse::<u64>().ok();
        if self.memory_v2() {
            (
                value("memory.high"),
                value("memory.max").unwrap_or(u64::MAX),
            )
        } else {
            // v1 says "no limit" with a huge page-aligned number.
            let limit = value("memory.limit_in_bytes").unwrap_or(u64::MAX);
            (None, if limit >= 1 << 62 { u64::MAX } else { limit })
        }
    }

    /// The kernel's OOM kills in the unit: `memory.events` on cgroup2, `memory.oom_control`
    /// on v1 (kernels since 4.13).
    pub fn oom_kills(&self) -> u64 {
        let (file, dir) = if self.memory_v2() {
            ("memory.events", self.memory_dir())
        } else {
            ("memory.oom_control", self.memory_dir())
        };
        self.read(&dir, file)
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .unwrap_or_else(|| panic!("no oom_kill line in {}/{file}", dir.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// Frozen as the daemon freezes it: cgroup2's `cgroup.freeze` where the unified
    /// hierarchy has one (pure v2, and hybrid), else v1's `freezer.state` is `FROZEN`.
    pub fn frozen(&self) -> bool {
        if let Some(unified) = mount_point("unified") {
            let dir = unified.join(&self.rel);
            if dir.join("cgroup.freeze").exists() {
                return self.read(&dir, "cgroup.freeze").trim() == "1";
            }
        }
        let freezer = mount_point("freezer").expect("a freezer (cgroup2 or v1)");
        self.read(&freezer.join(&self.rel), "freezer.state").trim() == "FROZEN"
    }

    /// The unit's directory in every hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.leaves.iter().map(|l| l.dir().to_path_buf()).collect()
    }

    /// A file of the unit's CPU hierarchy, as text.
    pub fn read_cpu(&self, file: &str) -> String {
        self.read(&self.dir_in(&self.cpu), file)
    }

    /// The CPU hierarchy is cgroup2.
    pub fn cpu_v2(&self) -> bool {
        self.cpu.v2
    }

    /// The processes in the unit (its CPU cgroup).
    pub fn pids(&self) -> Vec<i32> {
        self.read(&self.dir_in(&self.cpu), "cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}
