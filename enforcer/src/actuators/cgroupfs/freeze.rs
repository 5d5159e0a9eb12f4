//! Freeze and thaw. A freeze is requested in the tick that decides it and confirmed by
//! reading the state back, then, when it has not completed yet, in the ticks after: the
//! tick never waits on the kernel's freezer.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::{
    dirs::CgroupDirs,
    error::CgroupfsError,
    file::{read, write},
};

/// How a freeze is confirmed, in one place. A freeze is written, its state read back for
/// at most [`FREEZE_SPIN`] (every [`FREEZE_POLL`]); not frozen by then, it is followed up
/// by the ticks after it ([`FreezeFollowUp`]): each reads the state once, a v1 freezer is
/// written again every [`FREEZE_BUDGET`] / [`FREEZE_TRIES`], and once [`FREEZE_TRIES`]
/// writes and [`FREEZE_BUDGET`] have passed the freeze is reported stalled
/// ([`CgroupfsError::FreezeStalled`]) and the cgroup left as it is.
///
/// Why these numbers: ordinary tasks freeze within a millisecond or two, so the spin sees
/// almost every freeze complete in the tick that asked for it. A v1 freezer stalls in
/// `FREEZING` when a task does not reach the freezer's check: mid-exec (waiting in
/// `de_thread` for its siblings) or in uninterruptible sleep. Writing `FROZEN` again makes
/// the kernel wake every task not yet frozen once more (`freeze_cgroup` runs on each
/// write), which is what catches a task that has come out of exec; a task stuck in D state
/// is not caught by any number of writes, so more than three buys nothing. 300 ms (three of
/// the default 100 ms ticks) is how long a freeze may stay unconfirmed before the journal
/// says it failed; meanwhile the ladder goes on (it escalates to a kill, which thaws to let
/// the killed exit). On cgroup2 writing `1` again is a no-op in the kernel (`cgroup_freeze`
/// returns early when the state is unchanged), so there `cgroup.events` is only read, with
/// the same bound.
pub const FREEZE_TRIES: u32 = 3;
/// See [`FREEZE_TRIES`].
pub const FREEZE_BUDGET: Duration = Duration::from_millis(300);
/// See [`FREEZE_TRIES`]: the most a freeze holds the tick that requests it.
pub const FREEZE_SPIN: Duration = Duration::from_millis(5);
/// See [`FREEZE_TRIES`].
pub const FREEZE_POLL: Duration = Duration::from_millis(1);

/// A freeze's state as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreezeState {
    Frozen,
    /// Not frozen yet, as the file says it (`FREEZING`, `frozen 0`).
    Pending(String),
}

/// v1 `freezer.state`: `THAWED`, `FREEZING` or `FROZEN` (the kernel re-evaluates it on
/// every read).
pub fn v1_freeze_state(text: &str) -> FreezeState {
    match text.trim() {
        "FROZEN" => FreezeState::Frozen,
        other => FreezeState::Pending(other.to_string()),
    }
}

/// cgroup2 `cgroup.events`: `populated 1\nfrozen 1\n`.
pub fn v2_freeze_state(text: &str) -> FreezeState {
    match text.lines().find_map(|l| l.trim().strip_prefix("frozen ")) {
        Some("1") => FreezeState::Frozen,
        Some(v) => FreezeState::Pending(format!("frozen {v}")),
        None => FreezeState::Pending("no frozen line in cgroup.events".into()),
    }
}

/// What to do next about a freeze that was not frozen when last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// It is frozen: done.
    Frozen,
    /// Write the freeze again (v1), then wait for a later tick.
    Rewrite,
    /// Read again at a later tick.
    Wait,
    /// Out of tries and time: report it stalled ([`FreezeFollowUp::stalled`], with the
    /// state read) and leave the cgroup as it is.
    Stalled(String),
}

/// A freeze requested and not frozen yet: when it was asked for, how often written. Pure
/// (the state and the time are given), so that the bound is unit-tested without a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeFollowUp {
    /// The freezer's directory, for the report.
    path: std::path::PathBuf,
    /// v1: writing again can catch a task that left exec; cgroup2: it is a no-op.
    rewrite: bool,
    requested: Instant,
    last_write: Instant,
    writes: u32,
}

impl FreezeFollowUp {
    fn new(path: &Path, rewrite: bool, now: Instant) -> FreezeFollowUp {
        FreezeFollowUp {
            path: path.to_path_buf(),
            rewrite,
            requested: now,
            last_write: now,
            writes: 1,
        }
    }

    /// The freezer's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long since the freeze was requested.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.requested)
    }

    /// The next step, given the state read now.
    pub fn next(&mut self, state: FreezeState, now: Instant) -> FollowUp {
        let FreezeState::Pending(state) = state else {
            return FollowUp::Frozen;
        };
        let per_try = FREEZE_BUDGET / FREEZE_TRIES;
        if self.age(now) >= FREEZE_BUDGET && (self.writes >= FREEZE_TRIES || !self.rewrite) {
            return FollowUp::Stalled(state);
        }
        if self.rewrite
            && self.writes < FREEZE_TRIES
            && now.saturating_duration_since(self.last_write) >= per_try
        {
            self.writes += 1;
            self.last_write = now;
            return FollowUp::Rewrite;
        }
        FollowUp::Wait
    }

    /// The report of a freeze that stalled in `state`.
    pub fn stalled(&self, state: String) -> CgroupfsError {
        CgroupfsError::FreezeStalled {
            path: self.path.clone(),
            state,
            tries: self.writes,
            budget: FREEZE_BUDGET,
        }
    }
}

/// The files a cgroup is frozen with.
pub(super) struct FreezeFiles<'a> {
    dir: &'a Path,
    v2: bool,
}

impl FreezeFiles<'_> {
    pub(super) fn of(dirs: &CgroupDirs) -> Option<FreezeFiles<'_>> {
        // cgroup2 unless it has no cgroup.freeze (before 5.2) and a v1 freezer can do it.
        if let Some(dir) = &dirs.unified
            && (dirs.freezer.is_none() || dir.join("cgroup.freeze").exists())
        {
            return Some(FreezeFiles { dir, v2: true });
        }
        dirs.freezer
            .as_deref()
            .map(|dir| FreezeFiles { dir, v2: false })
    }

    /// One write of the state, unconfirmed.
    pub(super) fn write(&self, frozen: bool) -> Result<(), CgroupfsError> {
        match (self.v2, frozen) {
            (true, f) => write(self.dir, "cgroup.freeze", if f { "1" } else { "0" }),
            (false, true) => write(self.dir, "freezer.state", "FROZEN"),
            (false, false) => write(self.dir, "freezer.state", "THAWED"),
        }
    }

    fn state(&self) -> Result<FreezeState, CgroupfsError> {
        if self.v2 {
            read(self.dir.join("cgroup.events")).map(|t| v2_freeze_state(&t))
        } else {
            read(self.dir.join("freezer.state")).map(|t| v1_freeze_state(&t))
        }
    }
}

fn files(dirs: &CgroupDirs) -> Result<FreezeFiles<'_>, CgroupfsError> {
    FreezeFiles::of(dirs).ok_or_else(|| CgroupfsError::Unsupported(dirs.rel.clone(), "freeze"))
}

/// Requests a freeze of every process of the cgroup (and its descendants) and reads the
/// state back for at most [`FREEZE_SPIN`]: `None` when it is frozen, else what the ticks
/// after this one follow it up with ([`follow_up_freeze`]).
pub fn request_freeze(
    dirs: &CgroupDirs,
    now: Instant,
) -> Result<Option<FreezeFollowUp>, CgroupfsError> {
    let files = files(dirs)?;
    files.write(true)?;
    let started = Instant::now();
    loop {
        if files.state()? == FreezeState::Frozen {
            return Ok(None);
        }
        if started.elapsed() + FREEZE_POLL > FREEZE_SPIN {
            return Ok(Some(FreezeFollowUp::new(files.dir, !files.v2, now)));
        }
        std::thread::sleep(FREEZE_POLL);
    }
}

/// One look at a freeze requested earlier, in a later tick: reads the state once and, when
/// `follow` says so, writes the freeze again. `Ok(true)`: frozen; `Ok(false)`: not yet, ask
/// again next tick; an error: stalled (out of tries and time) or the cgroup is gone.
pub fn follow_up_freeze(
    dirs: &CgroupDirs,
    follow: &mut FreezeFollowUp,
    now: Instant,
) -> Result<bool, CgroupfsError> {
    let files = files(dirs)?;
    match follow.next(files.state()?, now) {
        FollowUp::Frozen => Ok(true),
        FollowUp::Rewrite => files.write(true).map(|()| false),
        FollowUp::Wait => Ok(false),
        FollowUp::Stalled(state) => Err(follow.stalled(state)),
    }
}

/// The freeze state as the kernel has it now, one read.
pub fn freeze_state(dirs: &CgroupDirs) -> Result<FreezeState, CgroupfsError> {
    files(dirs)?.state()
}

/// Thaws every process of the cgroup (and its descendants): one write, immediate.
pub fn thaw(dirs: &CgroupDirs) -> Result<(), CgroupfsError> {
    files(dirs)?.write(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_states_are_parsed() {
        assert_eq!(v1_freeze_state("FROZEN\n"), FreezeState::Frozen);
        assert_eq!(
            v1_freeze_state("FREEZING\n"),
            FreezeState::Pending("FREEZING".into())
        );
        assert_eq!(
            v2_freeze_state("populated 1\nfrozen 1\n"),
            FreezeState::Frozen
        );
        assert_eq!(
            v2_freeze_state("populated 1\nfrozen 0\n"),
            FreezeState::Pending("frozen 0".into())
        );
        assert_eq!(
            v2_freeze_state("populated 0\n"),
            FreezeState::Pending("no frozen line in cgroup.events".into())
        );
    }

    const MS: Duration = Duration::from_millis(1);

    fn pending(s: &str) -> FreezeState {
        v1_freeze_state(s)
    }

    #[test]
    fn a_v1_freeze_stuck_freezing_is_written_again_each_third_of_the_budget_then_stalls() {
        let t0 = Instant::now();
        let mut f = FreezeFollowUp::new(Path::new("/sys/fs/cgroup/freezer/yarn/c1"), true, t0);
        let mut steps = Vec::new();
        for ms in [10, 99, 100, 150, 200, 250, 299] {
            steps.push((ms, f.next(pending("FREEZING"), t0 + MS * ms)));
        }
        use FollowUp::*;
        assert_eq!(
            steps,
            vec![
                (10, Wait),
                (99, Wait),
                (100, Rewrite),
                (150, Wait),
                (200, Rewrite),
                (250, Wait),
                (299, Wait)
            ]
        );
        let FollowUp::Stalled(state) = f.next(pending("FREEZING"), t0 + MS * 300) else {
            panic!("not stalled at the budget");
        };
        let err = f.stalled(state);
        assert_eq!(
            err.to_string(),
            "/sys/fs/cgroup/freezer/yarn/c1: freeze stalled: still FREEZING 300ms after it was requested, written 3 times (a task mid-exec or in uninterruptible sleep); left partly frozen"
        );
        assert_eq!(err.retry(), super::super::Retry::Later);
    }

    #[test]
    fn a_freeze_that_completes_later_is_frozen_whenever_it_is_read() {
        let t0 = Instant::now();
        let mut f = FreezeFollowUp::new(Path::new("/x"), true, t0);
        assert_eq!(
            f.next(pending("FREEZING"), t0 + MS * 100),
            FollowUp::Rewrite
        );
        assert_eq!(f.next(pending("FROZEN"), t0 + MS * 101), FollowUp::Frozen);
        // Read late (a tick delayed past the budget), frozen still wins over stalled.
        let mut f = FreezeFollowUp::new(Path::new("/x"), false, t0);
        assert_eq!(f.next(pending("FROZEN"), t0 + MS * 5000), FollowUp::Frozen);
    }

    #[test]
    fn a_cgroup2_freeze_is_never_written_again_and_stalls_at_the_same_bound() {
        let t0 = Instant::now();
        let mut f = FreezeFollowUp::new(Path::new("/u/c1"), false, t0);
        let frozen0 = || v2_freeze_state("populated 1\nfrozen 0\n");
        for ms in [100, 200, 299] {
            assert_eq!(f.next(frozen0(), t0 + MS * ms), FollowUp::Wait, "{ms}");
        }
        let FollowUp::Stalled(state) = f.next(frozen0(), t0 + MS * 300) else {
            panic!("not stalled");
        };
        let err = f.stalled(state);
        assert!(
            err.to_string().contains(
                "freeze stalled: still frozen 0 300ms after it was requested, written once"
            ),
            "{err}"
        );
    }

    /// The real files in a temp dir: a v1 freezer whose state is already FROZEN (a regular
    /// file keeps what was written) is frozen at once; a cgroup2 one whose events never say
    /// frozen costs the requesting tick at most the spin, then stalls in its follow-ups.
    #[test]
    fn a_freeze_is_requested_within_the_spin_and_followed_up_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("freezer");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("freezer.state"), "THAWED\n").unwrap();
        let mut dirs = CgroupDirs {
            rel: "c1".into(),
            cpu: None,
            cpu_is_v2: false,
            memory: None,
            memory_is_v2: false,
            freezer: Some(v1.clone()),
            unified: None,
        };
        assert_eq!(request_freeze(&dirs, Instant::now()).unwrap(), None);
        assert_eq!(
            std::fs::read_to_string(v1.join("freezer.state")).unwrap(),
            "FROZEN"
        );
        thaw(&dirs).unwrap();
        assert_eq!(
            std::fs::read_to_string(v1.join("freezer.state")).unwrap(),
            "THAWED"
        );
        // A cgroup2 directory without cgroup.freeze (before 5.2): the v1 freezer does it.
        let u = dir.path().join("unified");
        std::fs::create_dir_all(&u).unwrap();
        dirs.unified = Some(u.clone());
        assert_eq!(request_freeze(&dirs, Instant::now()).unwrap(), None);
        std::fs::write(u.join("cgroup.freeze"), "0\n").unwrap();
        std::fs::write(u.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let t0 = Instant::now();
        let mut follow = request_freeze(&dirs, t0).unwrap().expect("not frozen");
        let spun = t0.elapsed();
        assert!(spun < FREEZE_SPIN * 4, "{spun:?}");
        assert_eq!(
            std::fs::read_to_string(u.join("cgroup.freeze")).unwrap(),
            "1"
        );
        assert_eq!(
            freeze_state(&dirs).unwrap(),
            FreezeState::Pending("frozen 0".into())
        );
        assert!(!follow_up_freeze(&dirs, &mut follow, t0 + MS * 100).unwrap());
        let took = Instant::now();
        let err = follow_up_freeze(&dirs, &mut follow, t0 + FREEZE_BUDGET).unwrap_err();
        assert!(took.elapsed() < MS * 5, "{:?}", took.elapsed());
        assert!(
            matches!(err, CgroupfsError::FreezeStalled { .. }),
            "{err:?}"
        );
        // Removed meanwhile: the follow-up says so.
        std::fs::remove_file(u.join("cgroup.events")).unwrap();
        let mut follow = FreezeFollowUp::new(&u, false, t0);
        assert!(follow_up_freeze(&dirs, &mut follow, t0).is_err());
    }
}
