//! CPU quota and memory limit, on v1 or cgroup2, whichever has the controller; and what
//! was there before enforcer (read before its first write, written back when it gives the
//! limit back), so that lifting a limit never clobbers one the operator or kubelet set.

use std::{collections::BTreeMap, path::PathBuf};

use super::{
    dirs::CgroupDirs,
    error::CgroupfsError,
    file::{Target, read, write, write_to},
};
use crate::model::controllers::Controller;

/// Limits CPU to `cores` (None: unlimited). Quotas below 1 ms per period are raised to the
/// kernel's minimum.
pub fn set_cpu_limit(dirs: &CgroupDirs, cores: Option<f64>) -> Result<(), CgroupfsError> {
    let dir = dirs
        .cpu
        .clone()
        .ok_or_else(|| CgroupfsError::Unsupported(dirs.rel.clone(), "limit CPU"))?;
    if dirs.cpu_is_v2 {
        let value = match cores {
            Some(c) => format!("{} 100000", ((c * 100_000.0) as u64).max(1000)),
            None => "max 100000".to_string(),
        };
        let v2 = Some((Controller::Cpu, dirs.rel.as_str()));
        write_to(
            Target {
                dir: &dir,
                file: "cpu.max",
                v2,
            },
            &value,
        )
    } else {
        let period: u64 = read(dir.join("cpu.cfs_period_us"))?
            .trim()
            .parse()
            .unwrap_or(100_000);
        let value = match cores {
            Some(c) => ((c * period as f64) as u64).max(1000).to_string(),
            None => "-1".to_string(),
        };
        write(&dir, "cpu.cfs_quota_us", &value)
    }
}

/// One of a cgroup's two limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Cpu,
    Memory,
}

impl LimitKind {
    /// Where this limit is in `dirs`, whether that is cgroup2, and its files in the order a
    /// restore writes them (cgroup2 `memory.high` before the `memory.max` backstop, as
    /// [`set_memory_limit`] does).
    fn files(self, dirs: &CgroupDirs) -> Option<(PathBuf, bool, &'static [&'static str])> {
        match self {
            LimitKind::Cpu => {
                let files: &[&str] = if dirs.cpu_is_v2 {
                    &["cpu.max"]
                } else {
                    &["cpu.cfs_quota_us"]
                };
                Some((dirs.cpu.clone()?, dirs.cpu_is_v2, files))
            }
            LimitKind::Memory => {
                let files: &[&str] = if dirs.memory_is_v2 {
                    &["memory.high", "memory.max"]
                } else {
                    &["memory.limit_in_bytes"]
                };
                Some((dirs.memory.clone()?, dirs.memory_is_v2, files))
            }
        }
    }

    /// Whether `file` (a key of what [`read_limit`] returns) holds this limit.
    pub fn holds(self, file: &str) -> bool {
        match self {
            LimitKind::Cpu => file.starts_with("cpu."),
            LimitKind::Memory => file.starts_with("memory."),
        }
    }
}

/// What the files of `kind` hold now (file name → its text, trimmed): the value enforcer
/// replaces with its first write, kept in the effects record. Empty when the cgroup has no
/// hierarchy for that limit.
pub fn read_limit(
    dirs: &CgroupDirs,
    kind: LimitKind,
) -> Result<BTreeMap<String, String>, CgroupfsError> {
    let Some((dir, _, files)) = kind.files(dirs) else {
        return Ok(BTreeMap::new());
    };
    files
        .iter()
        .map(|f| Ok((f.to_string(), read(dir.join(f))?.trim().to_string())))
        .collect()
}

/// Writes back what [`read_limit`] read; returns what was written, for the journal. On
/// cgroup2 a `memory.max` from before that is below what the cgroup uses now (enforcer's own
/// limit let it grow past it) is not written: the kernel would OOM-kill for it, and a kill is
/// never the side effect of a limit. That is [`CgroupfsError::MemoryBelowUsage`], to retry
/// once the use has come down.
pub fn restore_limit(
    dirs: &CgroupDirs,
    kind: LimitKind,
    before: &BTreeMap<String, String>,
) -> Result<String, CgroupfsError> {
    let (dir, v2, files) = kind
        .files(dirs)
        .ok_or_else(|| CgroupfsError::Unsupported(dirs.rel.clone(), "restore a limit"))?;
    let controller = match kind {
        LimitKind::Cpu => Controller::Cpu,
        LimitKind::Memory => Controller::Memory,
    };
    let mut written = Vec::new();
    for &file in files {
        let Some(value) = before.get(file) else {
            continue;
        };
        if v2
            && file == "memory.max"
            && let Ok(max) = value.parse::<u64>()
        {
            let used: u64 = read(dir.join("memory.current"))?
                .trim()
                .parse()
                .unwrap_or(0);
            if used > max {
                return Err(CgroupfsError::MemoryBelowUsage {
                    path: dir.join(file),
                    bytes: max,
                });
            }
        }
        let target = Target {
            dir: &dir,
            file,
            v2: v2.then_some((controller, dirs.rel.as_str())),
        };
        write_to(target, value)?;
        written.push(format!("{file} = {value:?}"));
    }
    Ok(format!(
        "restored what was there before enforcer: {}",
        written.join(", ")
    ))
}

/// The `memory.max` kept above a cgroup2 `memory.high` of `high` bytes: an eighth of it,
/// at least 256 MiB. `memory.high` is the squeeze (the kernel reclaims and throttles the
/// allocating tasks, never OOM-kills for it); `memory.max` stays only as the backstop
/// against a runaway that outgrows the throttling, far enough above that ordinary
/// allocation bursts under pressure do not reach it.
pub fn memory_max_above(high: u64) -> u64 {
    high.saturating_add((high / 8).max(256 << 20))
}

/// Limits memory to `bytes` (None: unlimited).
///
/// On cgroup2 that is `memory.high = bytes` with `memory.max` a margin above it
/// ([`memory_max_above`]), so that a limit below the usage means reclaim and throttling,
/// not the OOM killer. On v1 it is `memory.limit_in_bytes`, which the kernel refuses with
/// EBUSY ([`CgroupfsError::MemoryBelowUsage`]) when it cannot reclaim down to it.
pub fn set_memory_limit(dirs: &CgroupDirs, bytes: Option<u64>) -> Result<(), CgroupfsError> {
    let dir = dirs
        .memory
        .clone()
        .ok_or_else(|| CgroupfsError::Unsupported(dirs.rel.clone(), "limit memory"))?;
    if dirs.memory_is_v2 {
        let v2 = Some((Controller::Memory, dirs.rel.as_str()));
        let to = |file, value: String| {
            write_to(
                Target {
                    dir: &dir,
                    file,
                    v2,
                },
                &value,
            )
        };
        // high first: lowering, the throttling starts before the backstop moves; raising,
        // a high above the old max for an instant is harmless (max still caps).
        to("memory.high", bytes.map_or("max".into(), |b| b.to_string()))?;
        to(
            "memory.max",
            bytes.map_or("max".into(), |b| memory_max_above(b).to_string()),
        )
    } else {
        write(
            &dir,
            "memory.limit_in_bytes",
            &bytes.map_or("-1".into(), |b| b.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_dirs(dir: &std::path::Path, rel: &str) -> CgroupDirs {
        CgroupDirs {
            rel: rel.into(),
            cpu: Some(dir.to_path_buf()),
            cpu_is_v2: true,
            memory: Some(dir.to_path_buf()),
            memory_is_v2: true,
            freezer: None,
            unified: Some(dir.to_path_buf()),
        }
    }

    #[test]
    fn the_backstop_is_an_eighth_above_and_at_least_256_mib() {
        assert_eq!(memory_max_above(1 << 30), (1 << 30) + (256 << 20));
        assert_eq!(memory_max_above(64 << 30), (64 << 30) + (8 << 30));
        assert_eq!(memory_max_above(u64::MAX), u64::MAX);
    }

    /// A cgroup2 squeeze writes memory.high and keeps memory.max above it; lifting it
    /// writes "max" to both.
    #[test]
    fn a_v2_memory_limit_is_memory_high_with_a_backstop() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("offline");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("memory.high"), "max\n").unwrap();
        std::fs::write(cg.join("memory.max"), "max\n").unwrap();
        let dirs = v2_dirs(&cg, "offline");
        set_memory_limit(&dirs, Some(2 << 30)).unwrap();
        let read = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap();
        assert_eq!(read("memory.high"), (2u64 << 30).to_string());
        assert_eq!(read("memory.max"), ((2u64 << 30) + (256 << 20)).to_string());
        set_memory_limit(&dirs, None).unwrap();
        assert_eq!(
            (read("memory.high"), read("memory.max")),
            ("max".into(), "max".into())
        );
    }

    /// A cgroup2 tree in a temp dir whose `kubepods.slice` does not delegate memory: the
    /// write of `memory.high` fails (no such file) and says why.
    #[test]
    fn a_failed_write_is_explained_from_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let besteffort = root.join("kubepods.slice/kubepods-besteffort.slice");
        std::fs::create_dir_all(&besteffort).unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        std::fs::write(
            root.join("kubepods.slice/cgroup.subtree_control"),
            "cpu pids\n",
        )
        .unwrap();
        std::fs::write(besteffort.join("cpu.max"), "max 100000\n").unwrap();
        let dirs = CgroupDirs {
            rel: "kubepods.slice/kubepods-besteffort.slice".into(),
            cpu: Some(besteffort.clone()),
            cpu_is_v2: true,
            memory: Some(besteffort.clone()),
            memory_is_v2: true,
            freezer: None,
            unified: Some(besteffort.clone()),
        };
        let err = set_memory_limit(&dirs, Some(1 << 30)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: memory controller not enabled in {}/kubepods.slice/cgroup.subtree_control (enable it with \"+memory\")",
                besteffort.join("memory.high").display(),
                root.display()
            )
        );
        // cpu is delegated: the write goes through, and nothing is ever created.
        set_cpu_limit(&dirs, Some(2.0)).unwrap();
        assert_eq!(
            std::fs::read_to_string(besteffort.join("cpu.max")).unwrap(),
            "200000 100000"
        );
        assert!(!besteffort.join("memory.high").exists());
        // Removed between the decision and the write.
        std::fs::remove_dir_all(root.join("kubepods.slice")).unwrap();
        let err = set_cpu_limit(&dirs, None).unwrap_err();
        assert!(
            matches!(err, CgroupfsError::CgroupRemoved { .. }),
            "{err:?}"
        );
    }
}
