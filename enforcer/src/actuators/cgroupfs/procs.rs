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

/// How a kill is confirmed, in one place: asked for in the tick that decides it, its
/// cgroup read back for at most [`KILL_SPIN`]; not empty by then, it is followed up by the
/// ticks after it ([`KillFollowUp`]): each reads the cgroup's processes once, a v1 kill
/// runs another round (freeze, SIGKILL, thaw) at most every [`KILL_ROUND`], and a cgroup
/// not empty [`KILL_BUDGET`] after the request is reported with its survivors
/// ([`CgroupfsError::Survivors`]).
///
/// Why: killed tasks exit as fast as the kernel lets them free their memory, which under
/// the memory pressure that called for the kill can take seconds (a task in direct
/// reclaim, one refaulting its own pages); a tick that waited would be blind for that long,
/// exactly when it must see. cgroup2's `cgroup.kill` is atomic for the subtree (forks in
/// flight included), so it is written once; a v1 cgroup is killed pid by pid, and a task
/// forked between the listing and the signal is caught by the next round.
pub const KILL_SPIN: Duration = Duration::from_millis(5);
/// See [`KILL_SPIN`].
pub const KILL_ROUND: Duration = Duration::from_millis(100);
/// See [`KILL_SPIN`].
pub const KILL_BUDGET: Duration = Duration::from_secs(5);

/// A kill asked for and its cgroup not seen empty yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillFollowUp {
    /// The directory whose `cgroup.procs` (and those below) must empty.
    path: std::path::PathBuf,
    /// v1: rounds of SIGKILL; cgroup2: `cgroup.kill` was written once.
    rounds: bool,
    /// Processes signalled so far (every round).
    victims: usize,
    requested: Instant,
    last_round: Instant,
}

impl KillFollowUp {
    /// The directory being emptied.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long since the kill was requested.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.requested)
    }

    /// Processes signalled so far.
    pub fn victims(&self) -> usize {
        self.victims
    }

    /// Whether a v1 round is due at `now` (pure: the bound is unit-tested).
    fn round_due(&self, now: Instant) -> bool {
        self.rounds && now.saturating_duration_since(self.last_round) >= KILL_ROUND
    }
}

/// What a kill request came to.
#[derive(Debug)]
pub enum KillProgress {
    /// Empty within the spin: this many processes killed.
    Done(usize),
    /// Not empty yet: the ticks after this one follow it up.
    Later(KillFollowUp),
}

/// The directory a kill empties, and whether it goes by rounds (v1) or by `cgroup.kill`.
fn kill_dir(dirs: &CgroupDirs) -> Result<(std::path::PathBuf, bool), CgroupfsError> {
    if let Some(dir) = &dirs.unified
        && dir.join("cgroup.kill").exists()
    {
        return Ok((dir.clone(), false));
    }
    dirs.freezer
        .clone()
        .or(dirs.cpu.clone())
        .or(dirs.memory.clone())
        .map(|d| (d, true))
        .ok_or_else(|| CgroupfsError::Unsupported(dirs.rel.clone(), "kill"))
}

/// One v1 round: the cgroup frozen (unconfirmed: a task still FREEZING may fork once more,
/// which the next round catches), every pid sent SIGKILL, thawed (frozen tasks cannot
/// die). Returns how many were signalled.
fn round(dirs: &CgroupDirs, dir: &Path) -> Result<usize, CgroupfsError> {
    let freezer = FreezeFiles::of(dirs).filter(|_| dirs.freezer.is_some());
    let frozen = freezer.as_ref().is_some_and(|f| f.write(true).is_ok());
    let mut signalled = 0;
    for pid in pids(dir) {
        if nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
        {
            signalled += 1;
        }
    }
    if frozen && let Some(f) = &freezer {
        f.write(false)?;
    }
    Ok(signalled)
}

/// Kills every process of the cgroup, forks included: `cgroup.kill` on cgroup2, a round of
/// SIGKILL in a frozen cgroup on v1 (see [`KILL_SPIN`]). Waits for it to empty no longer
/// than the spin.
pub fn request_kill(dirs: &CgroupDirs, now: Instant) -> Result<KillProgress, CgroupfsError> {
    let (path, rounds) = kill_dir(dirs)?;
    let victims = if rounds {
        round(dirs, &path)?
    } else {
        let n = pids(&path).len();
        write(&path, "cgroup.kill", "1")?;
        n
    };
    if wait_empty(&path, Instant::now() + KILL_SPIN).is_ok() {
        return Ok(KillProgress::Done(victims));
    }
    Ok(KillProgress::Later(KillFollowUp {
        path,
        rounds,
        victims,
        requested: now,
        last_round: now,
    }))
}

/// One look at a kill not confirmed yet: `Some(victims)` once the cgroup is empty, `None`
/// to look again at a later tick (after another v1 round when one is due), the survivors
/// once [`KILL_BUDGET`] has passed. A cgroup removed meanwhile is empty.
pub fn follow_up_kill(
    dirs: &CgroupDirs,
    f: &mut KillFollowUp,
    now: Instant,
) -> Result<Option<usize>, CgroupfsError> {
    let left = pids(&f.path);
    if left.is_empty() {
        return Ok(Some(f.victims));
    }
    if f.age(now) >= KILL_BUDGET {
        return Err(CgroupfsError::Survivors {
            path: f.path.clone(),
            pids: left,
        });
    }
    if f.round_due(now) {
        f.victims += round(dirs, &f.path)?;
        f.last_round = now;
    }
    Ok(None)
}

/// Kills every process of the cgroup and waits until it is empty, at most `timeout`: the
/// same as a request and its follow-ups, for a caller that may block (the CLI, tests).
pub fn kill_all(dirs: &CgroupDirs, timeout: Duration) -> Result<usize, CgroupfsError> {
    let start = Instant::now();
    let mut f = match request_kill(dirs, start)? {
        KillProgress::Done(n) => return Ok(n),
        KillProgress::Later(f) => f,
    };
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        if now.duration_since(start) >= timeout {
            return Err(CgroupfsError::Survivors {
                path: f.path.clone(),
                pids: pids(&f.path),
            });
        }
        if let Some(n) = follow_up_kill(dirs, &mut f, now)? {
            return Ok(n);
        }
    }
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
