//! Writes to cgroupfs: CPU quota, memory limit, freeze, kill. Each works on v1 and on
//! cgroup2, whichever the host has for that job. Thin on purpose: the integration tests
//! cover it against the real kernel.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use thiserror::Error;

use crate::model::layout::CgroupLayout;

#[derive(Debug, Error)]
pub enum CgroupfsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no hierarchy on this host can {1}")]
    Unsupported(String, &'static str),
    #[error("{path}: still has processes {pids:?} after kill")]
    Survivors { path: PathBuf, pids: Vec<i32> },
}

/// One cgroup (a relative path) in every hierarchy that can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDirs {
    pub rel: String,
    /// v1 `cpu` hierarchy, or cgroup2 when it has the cpu controller.
    pub cpu: Option<PathBuf>,
    pub cpu_is_v2: bool,
    pub memory: Option<PathBuf>,
    pub memory_is_v2: bool,
    /// v1 freezer.
    pub freezer: Option<PathBuf>,
    /// cgroup2 (controllers or not: `cgroup.freeze` and `cgroup.kill` are core files).
    pub unified: Option<PathBuf>,
}

impl CgroupDirs {
    /// Resolves `rel` in each hierarchy of `layout`; a hierarchy where the directory does
    /// not exist is left out.
    pub fn resolve(layout: &CgroupLayout, rel: &str) -> CgroupDirs {
        let rel = rel.trim_start_matches('/');
        let existing = |root: Option<&Path>| root.map(|r| r.join(rel)).filter(|p| p.is_dir());
        let unified = existing(layout.unified_mount());
        let v2_has = |c: &str| layout.unified_controllers.iter().any(|x| x == c);
        let (cpu, cpu_is_v2) = if v2_has("cpu") {
            (unified.clone(), true)
        } else {
            (existing(layout.v1_mount("cpu")), false)
        };
        let (memory, memory_is_v2) = if v2_has("memory") {
            (unified.clone(), true)
        } else {
            (existing(layout.v1_mount("memory")), false)
        };
        CgroupDirs {
            rel: rel.to_string(),
            cpu,
            cpu_is_v2,
            memory,
            memory_is_v2,
            freezer: existing(layout.v1_mount("freezer")),
            unified,
        }
    }
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupfsError> {
    std::fs::write(&path, value).map_err(|source| CgroupfsError::Io { path, source })
}

fn read(path: PathBuf) -> Result<String, CgroupfsError> {
    std::fs::read_to_string(&path).map_err(|source| CgroupfsError::Io { path, source })
}

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
        write(dir.join("cpu.max"), &value)
    } else {
        let period: u64 = read(dir.join("cpu.cfs_period_us"))?
            .trim()
            .parse()
            .unwrap_or(100_000);
        let value = match cores {
            Some(c) => ((c * period as f64) as u64).max(1000).to_string(),
            None => "-1".to_string(),
        };
        write(dir.join("cpu.cfs_quota_us"), &value)
    }
}

/// Limits memory to `bytes` (None: unlimited).
pub fn set_memory_limit(dirs: &CgroupDirs, bytes: Option<u64>) -> Result<(), CgroupfsError> {
    let dir = dirs
        .memory
        .clone()
        .ok_or_else(|| CgroupfsError::Unsupported(dirs.rel.clone(), "limit memory"))?;
    if dirs.memory_is_v2 {
        write(
            dir.join("memory.max"),
            &bytes.map_or("max".into(), |b| b.to_string()),
        )
    } else {
        write(
            dir.join("memory.limit_in_bytes"),
            &bytes.map_or("-1".into(), |b| b.to_string()),
        )
    }
}

/// Freezes or thaws every process of the cgroup (and its descendants).
pub fn set_frozen(dirs: &CgroupDirs, frozen: bool) -> Result<(), CgroupfsError> {
    if let Some(dir) = &dirs.unified {
        return write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" });
    }
    if let Some(dir) = &dirs.freezer {
        return write(
            dir.join("freezer.state"),
            if frozen { "FROZEN" } else { "THAWED" },
        );
    }
    Err(CgroupfsError::Unsupported(dirs.rel.clone(), "freeze"))
}

/// Every pid in the cgroup and its descendants.
pub fn pids(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            pending.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

/// Kills every process of the cgroup, forks included, and waits until it is empty.
///
/// cgroup2 has `cgroup.kill`, which the kernel applies atomically to the whole subtree. On
/// v1 the cgroup is frozen first so that nothing can fork while it is being killed; then
/// every pid gets SIGKILL, the cgroup is thawed (frozen tasks cannot die) and emptiness is
/// confirmed.
pub fn kill_all(dirs: &CgroupDirs, timeout: Duration) -> Result<usize, CgroupfsError> {
    let deadline = Instant::now() + timeout;
    if let Some(dir) = &dirs.unified
        && dir.join("cgroup.kill").exists()
    {
        let victims = pids(dir).len();
        write(dir.join("cgroup.kill"), "1")?;
        return wait_empty(dir, deadline).map(|()| victims);
    }
    let Some(dir) = dirs
        .freezer
        .clone()
        .or(dirs.cpu.clone())
        .or(dirs.memory.clone())
    else {
        return Err(CgroupfsError::Unsupported(dirs.rel.clone(), "kill"));
    };
    let frozen = dirs.freezer.is_some() && set_frozen(dirs, true).is_ok();
    let mut victims = 0;
    loop {
        let pids = pids(&dir);
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                victims += 1;
            }
        }
        if frozen {
            // Killed tasks only exit once thawed; anything forked before the freeze was
            // caught by the freeze and is in the list already.
            set_frozen(dirs, false)?;
        }
        if wait_empty(&dir, Instant::now() + Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(CgroupfsError::Survivors {
                path: dir.clone(),
                pids: self::pids(&dir),
            });
        }
        if frozen {
            set_frozen(dirs, true)?;
        }
    }
    if frozen {
        set_frozen(dirs, false)?;
    }
    wait_empty(&dir, deadline).map(|()| victims)
}

fn wait_empty(dir: &Path, deadline: Instant) -> Result<(), CgroupfsError> {
    loop {
        let left = pids(dir);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupfsError::Survivors {
                path: dir.to_path_buf(),
                pids: left,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
