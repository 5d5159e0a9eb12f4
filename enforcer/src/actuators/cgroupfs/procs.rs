//! The processes of a cgroup: listing them and killing them all.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::{dirs::CgroupDirs, error::CgroupfsError, file::write, freeze::FreezeFiles};

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
        write(dir, "cgroup.kill", "1")?;
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
    // Frozen without waiting for the state to settle: a task still FREEZING may fork once
    // more, which the next round catches.
    let freezer = FreezeFiles::of(dirs).filter(|_| dirs.freezer.is_some());
    let set = |frozen: bool| freezer.as_ref().map_or(Ok(()), |f| f.write(frozen));
    let frozen = freezer.is_some() && set(true).is_ok();
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
            set(false)?;
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
            set(true)?;
        }
    }
    if frozen {
        set(false)?;
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
