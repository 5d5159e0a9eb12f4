//! Per-process isolation (SPEC §3): offline processes get a high `oom_score_adj`, so the
//! kernel's OOM killer takes them first, and a higher nice value than online work.
//! What was there before is remembered so it can be put back exactly.

use std::io;

/// What a process had before enforcer changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub oom_score_adj: i32,
    pub nice: i32,
}

fn read_oom_score_adj(pid: i32) -> io::Result<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))?
        .trim()
        .parse()
        .map_err(|_| io::Error::other("unparsable oom_score_adj"))
}

fn get_nice(tid: i32) -> io::Result<i32> {
    // getpriority returns -1 both as a value and as an error: clear errno to tell them apart.
    // SAFETY: plain syscalls on integers.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        if v == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    }
}

fn set_nice(tid: i32, nice: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Nice is per thread on Linux: apply it to every thread of the process.
fn set_nice_all_threads(pid: i32, nice: i32) -> io::Result<()> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
    for task in tasks.flatten() {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        {
            // A thread that exits meanwhile is fine.
            match set_nice(tid, nice) {
                Err(e) if e.raw_os_error() != Some(libc::ESRCH) => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// What a process has now. A process that has already exited yields `ESRCH`/`ENOENT`,
/// which callers skip.
pub fn current(pid: i32) -> io::Result<Previous> {
    Ok(Previous {
        oom_score_adj: read_oom_score_adj(pid)?,
        nice: get_nice(pid)?,
    })
}

/// When the process started (clock ticks since boot, `/proc/PID/stat` field 22): with the
/// pid, it names one process for good, so a recorded pid reused after a restart is not
/// mistaken for the process enforcer isolated.
pub fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unparsable /proc/PID/stat"))?;
    rest.split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("unparsable /proc/PID/stat"))
}

/// Applies the offline settings to one process; returns what it had before. A process that
/// has already exited yields `ESRCH`/`ENOENT`, which callers skip.
pub fn isolate(pid: i32, oom_score_adj: i32, nice: i32) -> io::Result<Previous> {
    let previous = current(pid)?;
    // Only ever raise: a process already more killable or nicer than asked keeps its value.
    if previous.oom_score_adj < oom_score_adj {
        std::fs::write(
            format!("/proc/{pid}/oom_score_adj"),
            oom_score_adj.to_string(),
        )?;
    }
    if previous.nice < nice {
        set_nice_all_threads(pid, nice)?;
    }
    Ok(previous)
}

/// Puts back what [`isolate`] changed.
pub fn restore(pid: i32, previous: Previous) -> io::Result<()> {
    std::fs::write(
        format!("/proc/{pid}/oom_score_adj"),
        previous.oom_score_adj.to_string(),
    )?;
    set_nice_all_threads(pid, previous.nice)
}

/// Whether an error only means the process is gone.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENOENT))
        || e.kind() == io::ErrorKind::NotFound
}
