//! The node's files as the daemon's logic reads them: `/proc` and cgroupfs behind one small
//! trait, so that the controllers and their interplay run in unit tests on a fake node
//! ([`fake::FakeHost`]) while the real files are covered by the integration tests (aya's
//! `sys/` with its test fake is the model).
//!
//! Architecture invariant: the daemon's decision path reads the node only through [`Host`];
//! writes to the kernel are never made here, only by `actuators` through the choke point.

use std::{
    io,
    path::{Path, PathBuf},
};

#[cfg(test)]
pub mod fake;

/// File primitives of the node.
pub trait Host: Send {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The directories directly below `path`.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    fn exists(&self, path: &Path) -> bool;
}

/// The real node.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

impl Host for RealHost {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(path)?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// `/proc/meminfo`'s two figures the daemon uses, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl MemInfo {
    /// Node memory in use: 1 − MemAvailable / MemTotal (0 when unknown).
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        (1.0 - self.available_bytes as f64 / self.total_bytes as f64).clamp(0.0, 1.0)
    }
}

/// Parses `/proc/meminfo`.
pub fn meminfo(host: &dyn Host) -> MemInfo {
    let Ok(text) = host.read(Path::new("/proc/meminfo")) else {
        return MemInfo::default();
    };
    let kib = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    MemInfo {
        total_bytes: kib("MemTotal:"),
        available_bytes: kib("MemAvailable:"),
    }
}

/// The processes of one cgroup directory (not its descendants).
pub fn procs(host: &dyn Host, dir: &Path) -> Vec<i32> {
    host.read(&dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether the cgroup or any of its descendants has a process.
pub fn populated(host: &dyn Host, dir: &Path) -> bool {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        if !procs(host, &d).is_empty() {
            return true;
        }
        pending.extend(host.subdirs(&d).unwrap_or_default());
    }
    false
}

/// Hierarchical memory use of a memory cgroup directory (`memory.current` on cgroup2,
/// `memory.usage_in_bytes` on v1).
pub fn memory_usage(host: &dyn Host, dir: &Path, v2: bool) -> Option<u64> {
    let file = if v2 {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    host.read(&dir.join(file)).ok()?.trim().parse().ok()
}

/// The value of `key` in the text of a flat keyed file (`key value` lines, such as
/// `memory.events`, `memory.stat`, `cpu.stat`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of `key` in a flat keyed file.
pub fn keyed_value(host: &dyn Host, file: &Path, key: &str) -> Option<u64> {
    keyed(&host.read(file).ok()?, key)
}

/// Whether a process still exists.
pub fn alive(host: &dyn Host, pid: i32) -> bool {
    host.exists(Path::new(&format!("/proc/{pid}")))
}

#[cfg(test)]
mod tests {
    use super::{fake::FakeHost, *};

    #[test]
    fn meminfo_used_ratio() {
        let host = FakeHost::default();
        host.set(
            "/proc/meminfo",
            "MemTotal:       1000 kB\nMemFree:   10 kB\nMemAvailable:    250 kB\n",
        );
        let m = meminfo(&host);
        assert_eq!(m.total_bytes, 1_024_000);
        assert!((m.used_ratio() - 0.75).abs() < 1e-9);
        assert_eq!(meminfo(&FakeHost::default()).used_ratio(), 0.0);
    }

    #[test]
    fn populated_looks_into_descendants() {
        let host = FakeHost::default();
        host.set("/cg/pod/cgroup.procs", "");
        host.set("/cg/pod/c1/cgroup.procs", "");
        host.set("/cg/pod/c2/cgroup.procs", "42\n");
        assert!(populated(&host, Path::new("/cg/pod")));
        host.set("/cg/pod/c2/cgroup.procs", "");
        assert!(!populated(&host, Path::new("/cg/pod")));
        assert_eq!(procs(&host, Path::new("/cg/none")), Vec::<i32>::new());
    }
}
