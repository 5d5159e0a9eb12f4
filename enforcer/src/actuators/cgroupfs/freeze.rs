//! Freeze and thaw, confirmed by reading the state back within a bound.

use std::{path::Path, time::Duration};

use super::{
    dirs::CgroupDirs,
    error::CgroupfsError,
    file::{read, write},
};

/// How a freeze is confirmed, in one place. A freeze is written, then its state is read
/// back every [`FREEZE_POLL`] until it shows frozen; after each [`FREEZE_BUDGET`] /
/// [`FREEZE_TRIES`] the v1 write is made again; after the last try the cgroup is left as it
/// is and [`CgroupfsError::FreezeStalled`] returned.
///
/// Why these numbers: ordinary tasks freeze within a few milliseconds, so the first read or
/// two see `FROZEN`. A v1 freezer stalls in `FREEZING` when a task does not reach the
/// freezer's check: mid-exec (waiting in `de_thread` for its siblings) or in uninterruptible
/// sleep. Writing `FROZEN` again makes the kernel wake every task not yet frozen once more
/// (`freeze_cgroup` runs on each write), which is what catches a task that has come out of
/// exec; a task stuck in D state is not caught by any number of writes, so more than three
/// buys nothing. 300 ms bounds what one freeze can hold the apply step of a tick (three of
/// the default 100 ms ticks); past it a later tick retries or the ladder escalates to a kill
/// (which thaws to let the killed exit), instead of this tick waiting on the kernel.
/// On cgroup2 writing `1` again is a no-op in the kernel (`cgroup_freeze` returns early when
/// the state is unchanged), so there only `cgroup.events` is read, with the same bound.
pub const FREEZE_TRIES: u32 = 3;
/// See [`FREEZE_TRIES`].
pub const FREEZE_BUDGET: Duration = Duration::from_millis(300);
/// See [`FREEZE_TRIES`].
pub const FREEZE_POLL: Duration = Duration::from_millis(10);

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

/// A freeze as [`confirm_freeze`] drives it: the real cgroup, or the unit tests' fake.
trait Freeze {
    /// Writes the frozen state.
    fn request(&mut self) -> Result<(), CgroupfsError>;
    fn state(&mut self) -> Result<FreezeState, CgroupfsError>;
    fn sleep(&mut self, d: Duration);
}

/// Requests a freeze and confirms it within the bound of [`FREEZE_TRIES`]: at most
/// `FREEZE_TRIES` requests (one if `rewrite` is false) and `FREEZE_BUDGET` of sleep.
fn confirm_freeze(f: &mut impl Freeze, path: &Path, rewrite: bool) -> Result<(), CgroupfsError> {
    let per_try = FREEZE_BUDGET / FREEZE_TRIES;
    let polls = (per_try.as_nanos() / FREEZE_POLL.as_nanos()).max(1) as u32;
    for attempt in 0..FREEZE_TRIES {
        if attempt == 0 || rewrite {
            f.request()?;
        }
        for _ in 0..polls {
            if f.state()? == FreezeState::Frozen {
                return Ok(());
            }
            f.sleep(FREEZE_POLL);
        }
    }
    match f.state()? {
        FreezeState::Frozen => Ok(()),
        FreezeState::Pending(state) => Err(CgroupfsError::FreezeStalled {
            path: path.to_path_buf(),
            state,
            tries: FREEZE_TRIES,
            budget: FREEZE_BUDGET,
        }),
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
}

impl Freeze for FreezeFiles<'_> {
    fn request(&mut self) -> Result<(), CgroupfsError> {
        self.write(true)
    }

    fn state(&mut self) -> Result<FreezeState, CgroupfsError> {
        if self.v2 {
            read(self.dir.join("cgroup.events")).map(|t| v2_freeze_state(&t))
        } else {
            read(self.dir.join("freezer.state")).map(|t| v1_freeze_state(&t))
        }
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Freezes or thaws every process of the cgroup (and its descendants). A freeze is
/// confirmed by reading the state back, within the bound of [`FREEZE_TRIES`]; a thaw is
/// immediate.
pub fn set_frozen(dirs: &CgroupDirs, frozen: bool) -> Result<(), CgroupfsError> {
    let Some(mut files) = FreezeFiles::of(dirs) else {
        return Err(CgroupfsError::Unsupported(dirs.rel.clone(), "freeze"));
    };
    if !frozen {
        return files.write(false);
    }
    let (dir, rewrite) = (files.dir, !files.v2);
    confirm_freeze(&mut files, dir, rewrite)
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, time::Instant};

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

    /// A freezer that replays states (the last one forever) and counts what was done.
    struct Fake {
        states: VecDeque<FreezeState>,
        requests: u32,
        reads: u32,
        slept: Duration,
        fail_read_at: Option<u32>,
    }

    impl Fake {
        fn new(states: &[&str]) -> Fake {
            Fake {
                states: states.iter().map(|s| v1_freeze_state(s)).collect(),
                requests: 0,
                reads: 0,
                slept: Duration::ZERO,
                fail_read_at: None,
            }
        }
    }

    impl Freeze for Fake {
        fn request(&mut self) -> Result<(), CgroupfsError> {
            self.requests += 1;
            Ok(())
        }

        fn state(&mut self) -> Result<FreezeState, CgroupfsError> {
            self.reads += 1;
            if self.fail_read_at == Some(self.reads) {
                return Err(CgroupfsError::CgroupRemoved {
                    path: "/x/freezer.state".into(),
                });
            }
            let s = if self.states.len() > 1 {
                self.states.pop_front().unwrap()
            } else {
                self.states[0].clone()
            };
            Ok(s)
        }

        fn sleep(&mut self, d: Duration) {
            self.slept += d;
        }
    }

    #[test]
    fn a_freeze_that_settles_at_once_costs_one_write_and_one_read() {
        let mut f = Fake::new(&["FROZEN"]);
        confirm_freeze(&mut f, Path::new("/x"), true).unwrap();
        assert_eq!((f.requests, f.reads, f.slept), (1, 1, Duration::ZERO));
    }

    #[test]
    fn a_v1_freeze_stuck_freezing_is_written_again_then_settles() {
        // FREEZING through the first try's 10 polls, FROZEN after the second write.
        let mut states = vec!["FREEZING"; 12];
        states.push("FROZEN");
        let mut f = Fake::new(&states);
        confirm_freeze(&mut f, Path::new("/x"), true).unwrap();
        assert_eq!(f.requests, 2);
        assert_eq!(f.reads, 13);
        assert_eq!(f.slept, FREEZE_POLL * 12);
    }

    #[test]
    fn a_freeze_that_never_settles_stalls_within_the_bound() {
        let mut f = Fake::new(&["FREEZING"]);
        let err =
            confirm_freeze(&mut f, Path::new("/sys/fs/cgroup/freezer/yarn/c1"), true).unwrap_err();
        assert_eq!(f.requests, FREEZE_TRIES);
        assert_eq!(f.slept, FREEZE_BUDGET);
        assert!(
            matches!(&err, CgroupfsError::FreezeStalled { state, .. } if state == "FREEZING"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/sys/fs/cgroup/freezer/yarn/c1: freeze stalled: FREEZING after 3 tries over 300ms (a task mid-exec or in uninterruptible sleep); left partly frozen"
        );
        // cgroup2: one write (writing it again is a no-op in the kernel), the same bound.
        let mut f = Fake::new(&["FREEZING"]);
        f.states = [v2_freeze_state("frozen 0")].into();
        let err = confirm_freeze(&mut f, Path::new("/u/c1"), false).unwrap_err();
        assert_eq!((f.requests, f.slept), (1, FREEZE_BUDGET));
        assert!(
            err.to_string().contains("freeze stalled: frozen 0 after"),
            "{err}"
        );
    }

    #[test]
    fn a_cgroup_removed_mid_freeze_ends_the_confirmation() {
        let mut f = Fake::new(&["FREEZING"]);
        f.fail_read_at = Some(4);
        let err = confirm_freeze(&mut f, Path::new("/x"), true).unwrap_err();
        assert!(
            matches!(err, CgroupfsError::CgroupRemoved { .. }),
            "{err:?}"
        );
        assert_eq!((f.requests, f.reads), (1, 4));
    }

    /// The real files in a temp dir: a v1 freezer whose state is already FROZEN (a regular
    /// file keeps what was written), and a cgroup2 one whose events never say frozen.
    #[test]
    fn set_frozen_reads_the_state_back() {
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
        set_frozen(&dirs, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(v1.join("freezer.state")).unwrap(),
            "FROZEN"
        );
        set_frozen(&dirs, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(v1.join("freezer.state")).unwrap(),
            "THAWED"
        );
        // A cgroup2 directory without cgroup.freeze (before 5.2): the v1 freezer does it.
        let u = dir.path().join("unified");
        std::fs::create_dir_all(&u).unwrap();
        dirs.unified = Some(u.clone());
        set_frozen(&dirs, true).unwrap();
        std::fs::write(u.join("cgroup.freeze"), "0\n").unwrap();
        std::fs::write(u.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let started = Instant::now();
        let err = set_frozen(&dirs, true).unwrap_err();
        assert!(
            matches!(err, CgroupfsError::FreezeStalled { .. }),
            "{err:?}"
        );
        assert!(
            started.elapsed() < FREEZE_BUDGET * 3,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            std::fs::read_to_string(u.join("cgroup.freeze")).unwrap(),
            "1"
        );
    }
}
