//! Writes to cgroupfs: CPU quota, memory limit, freeze, kill. Each works on v1 and on
//! cgroup2, whichever the host has for that job. Thin on purpose: the integration tests
//! cover it against the real kernel.
//!
//! A write that fails says which file and why, in words an operator acts on: the errno is
//! explained from what the node shows at that moment ([`Facts`]: is the cgroup still there,
//! is the file writable, does cgroup2 delegate the controller down to it), by the pure
//! [`explain`].

use std::{
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use thiserror::Error;

use crate::model::{
    controllers::{self, Controller, NotDelegated},
    layout::CgroupLayout,
};

#[derive(Debug, Error)]
pub enum CgroupfsError {
    /// An error the others do not explain.
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// EACCES/EPERM (or ENOENT) on a cgroup2 controller file of a cgroup whose ancestor does
    /// not delegate the controller: the file does not exist there.
    #[error("{path}: {why} (enable it with \"+{controller}\")", path = .path.display(), controller = .why.controller)]
    NotDelegated { path: PathBuf, why: NotDelegated },
    /// EACCES/EPERM with the controller delegated and the file writable.
    #[error("{path}: permission denied ({source}): the controller is delegated and the file writable, so the daemon may not write it (run it as root in the host's cgroup namespace)", path = .path.display())]
    PermissionDenied { path: PathBuf, source: io::Error },
    /// ENOENT with the cgroup gone: removed between the decision and the write. Nothing to
    /// do; the next rescan forgets it.
    #[error("{path}: cgroup removed ({dir} no longer exists)", path = .path.display(), dir = .path.parent().unwrap_or(Path::new("")).display())]
    CgroupRemoved { path: PathBuf },
    /// ENOENT with the cgroup there: the kernel has no such file (an older kernel, or a
    /// controller not enabled on that hierarchy).
    #[error("{path}: no such file in the cgroup (this kernel or hierarchy does not have it)", path = .path.display())]
    NoSuchFile { path: PathBuf },
    /// EBUSY on v1 `memory.limit_in_bytes`: the kernel could not reclaim the cgroup down to
    /// the limit. Its own variant so that callers back off (the usage has to fall first)
    /// instead of writing the same limit again every tick.
    #[error("{path}: memory limit below current usage: not reclaimable yet (limit {bytes} bytes)", path = .path.display())]
    MemoryBelowUsage { path: PathBuf, bytes: u64 },
    /// EROFS, or a file without a write bit (EACCES).
    #[error("{path}: {what}", path = .path.display())]
    ReadOnly { path: PathBuf, what: &'static str },
    /// EINVAL: the kernel refused the value itself.
    #[error("{path}: value {value:?} rejected by the kernel (EINVAL)", path = .path.display())]
    Rejected { path: PathBuf, value: String },
    /// A freeze that did not complete within [`FREEZE_TRIES`] writes over [`FREEZE_BUDGET`]:
    /// left as the kernel has it (partly frozen), for a later tick to retry or escalate.
    #[error("{path}: freeze stalled: {state} after {FREEZE_TRIES} tries over {FREEZE_BUDGET:?} (a task mid-exec or in uninterruptible sleep); left partly frozen", path = .path.display())]
    FreezeStalled { path: PathBuf, state: String },
    #[error("{0}: no hierarchy on this host can {1}")]
    Unsupported(String, &'static str),
    #[error("{path}: still has processes {pids:?} after kill", path = .path.display())]
    Survivors { path: PathBuf, pids: Vec<i32> },
}

/// What a caller should do after a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing: the cgroup is gone and the next rescan forgets it.
    Gone,
    /// Not before the kernel's state changes (usage has to fall below the limit, a task has
    /// to leave exec or D state): back off rather than write the same thing every tick.
    Later,
    /// Not until the node is fixed (a controller not delegated, a read-only mount, a
    /// missing file or privilege, a value the kernel refuses): say it once.
    Never,
    /// Anything else: the next tick may try again.
    Next,
}

impl CgroupfsError {
    pub fn retry(&self) -> Retry {
        match self {
            CgroupfsError::CgroupRemoved { .. } => Retry::Gone,
            CgroupfsError::MemoryBelowUsage { .. } | CgroupfsError::FreezeStalled { .. } => {
                Retry::Later
            }
            CgroupfsError::NotDelegated { .. }
            | CgroupfsError::PermissionDenied { .. }
            | CgroupfsError::NoSuchFile { .. }
            | CgroupfsError::ReadOnly { .. }
            | CgroupfsError::Rejected { .. }
            | CgroupfsError::Unsupported(..) => Retry::Never,
            CgroupfsError::Io { .. } | CgroupfsError::Survivors { .. } => Retry::Next,
        }
    }
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

/// What the node shows, right after a write failed, to explain the errno.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// The cgroup directory still exists.
    pub cgroup_exists: bool,
    /// The file exists and has no write permission bit at all.
    pub file_read_only: bool,
    /// For a cgroup2 controller file: the ancestor that does not delegate it.
    pub not_delegated: Option<NotDelegated>,
}

/// The file a write goes to, and what is needed to explain its failure.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    dir: &'a Path,
    file: &'static str,
    /// The cgroup2 controller the file belongs to, and the cgroup's path relative to the
    /// cgroup2 root; None for v1 files and cgroup2 core files.
    v2: Option<(Controller, &'a str)>,
}

impl Target<'_> {
    fn path(&self) -> PathBuf {
        self.dir.join(self.file)
    }

    /// Looks at the node (only after a failure).
    fn facts(&self) -> Facts {
        let path = self.path();
        let not_delegated = self.v2.and_then(|(controller, rel)| {
            let depth = rel.split('/').filter(|p| !p.is_empty()).count();
            let root = self.dir.ancestors().nth(depth)?;
            controllers::delegation(root, rel, controller).err()
        });
        Facts {
            cgroup_exists: self.dir.is_dir(),
            file_read_only: std::fs::metadata(&path)
                .is_ok_and(|m| m.permissions().mode() & 0o222 == 0),
            not_delegated,
        }
    }
}

/// The error for `err`, from writing `value` to `path`, given what the node showed then.
/// Pure: unit-tested over every errno it knows.
pub fn explain(err: io::Error, path: PathBuf, value: &str, facts: Facts) -> CgroupfsError {
    const EPERM: i32 = 1;
    const ENOENT: i32 = 2;
    const EACCES: i32 = 13;
    const EBUSY: i32 = 16;
    const EINVAL: i32 = 22;
    const EROFS: i32 = 30;
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    match err.raw_os_error() {
        Some(EACCES | EPERM | ENOENT) if facts.not_delegated.is_some() && facts.cgroup_exists => {
            CgroupfsError::NotDelegated {
                path,
                why: facts.not_delegated.expect("checked"),
            }
        }
        Some(ENOENT) if !facts.cgroup_exists => CgroupfsError::CgroupRemoved { path },
        Some(ENOENT) => CgroupfsError::NoSuchFile { path },
        Some(EACCES | EPERM) if !facts.cgroup_exists => CgroupfsError::CgroupRemoved { path },
        Some(EACCES | EPERM) if facts.file_read_only => CgroupfsError::ReadOnly {
            path,
            what: "read-only file (no write permission: not a file the kernel lets anyone write)",
        },
        Some(EACCES | EPERM) => CgroupfsError::PermissionDenied { path, source: err },
        Some(EBUSY) if file == "memory.limit_in_bytes" => CgroupfsError::MemoryBelowUsage {
            path,
            bytes: value.trim().parse().unwrap_or(0),
        },
        Some(EROFS) => CgroupfsError::ReadOnly {
            path,
            what: "read-only file system (cgroupfs is mounted read-only here: mount it read-write for the daemon)",
        },
        Some(EINVAL) => CgroupfsError::Rejected {
            path,
            value: value.to_string(),
        },
        _ => CgroupfsError::Io { path, source: err },
    }
}

/// Writes `value` in one write(2), never creating the file (cgroupfs cannot: a missing
/// controller file is a fact to explain, not to create). `O_TRUNC` is a no-op on cgroupfs
/// and keeps a plain file of the unit tests exact.
fn write_to(target: Target, value: &str) -> Result<(), CgroupfsError> {
    let path = target.path();
    let result = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|err| explain(err, path, value, target.facts()))
}

fn write(dir: &Path, file: &'static str, value: &str) -> Result<(), CgroupfsError> {
    write_to(
        Target {
            dir,
            file,
            v2: None,
        },
        value,
    )
}

fn read(path: PathBuf) -> Result<String, CgroupfsError> {
    std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound if !path.parent().is_some_and(Path::is_dir) => {
            CgroupfsError::CgroupRemoved { path }
        }
        _ => CgroupfsError::Io { path, source },
    })
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

/// Limits memory to `bytes` (None: unlimited).
pub fn set_memory_limit(dirs: &CgroupDirs, bytes: Option<u64>) -> Result<(), CgroupfsError> {
    let dir = dirs
        .memory
        .clone()
        .ok_or_else(|| CgroupfsError::Unsupported(dirs.rel.clone(), "limit memory"))?;
    if dirs.memory_is_v2 {
        let v2 = Some((Controller::Memory, dirs.rel.as_str()));
        write_to(
            Target {
                dir: &dir,
                file: "memory.max",
                v2,
            },
            &bytes.map_or("max".into(), |b| b.to_string()),
        )
    } else {
        write(
            &dir,
            "memory.limit_in_bytes",
            &bytes.map_or("-1".into(), |b| b.to_string()),
        )
    }
}

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
        }),
    }
}

/// The files a cgroup is frozen with.
struct FreezeFiles<'a> {
    dir: &'a Path,
    v2: bool,
}

impl FreezeFiles<'_> {
    fn of(dirs: &CgroupDirs) -> Option<FreezeFiles<'_>> {
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
    fn write(&self, frozen: bool) -> Result<(), CgroupfsError> {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    const MEMORY_MAX: &str = "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/memory.max";

    fn there() -> Facts {
        Facts {
            cgroup_exists: true,
            ..Facts::default()
        }
    }

    fn undelegated() -> Facts {
        Facts {
            cgroup_exists: true,
            file_read_only: false,
            not_delegated: Some(NotDelegated {
                controller: Controller::Memory,
                cgroup: "/sys/fs/cgroup/kubepods.slice".into(),
            }),
        }
    }

    fn says(err: io::Error, path: &str, value: &str, facts: Facts) -> (CgroupfsError, String) {
        let e = explain(err, path.into(), value, facts);
        let text = e.to_string();
        (e, text)
    }

    #[test]
    fn eacces_on_an_undelegated_v2_controller_file_names_the_parents_subtree_control() {
        for errno in [13, 1, 2] {
            let (e, text) = says(os(errno), MEMORY_MAX, "1073741824", undelegated());
            assert!(
                matches!(e, CgroupfsError::NotDelegated { .. }),
                "{errno}: {e:?}"
            );
            assert_eq!(
                text,
                format!(
                    "{MEMORY_MAX}: memory controller not enabled in /sys/fs/cgroup/kubepods.slice/cgroup.subtree_control (enable it with \"+memory\")"
                )
            );
        }
    }

    #[test]
    fn eacces_with_the_controller_delegated_is_a_permission_problem_or_a_read_only_file() {
        let (e, text) = says(os(13), MEMORY_MAX, "1", there());
        assert!(matches!(e, CgroupfsError::PermissionDenied { .. }), "{e:?}");
        assert!(
            text.starts_with(&format!(
                "{MEMORY_MAX}: permission denied (Permission denied (os error 13))"
            )),
            "{text}"
        );
        let read_only = Facts {
            cgroup_exists: true,
            file_read_only: true,
            not_delegated: None,
        };
        let (e, text) = says(os(13), "/sys/fs/cgroup/x/cpu.stat", "1", read_only);
        assert!(matches!(e, CgroupfsError::ReadOnly { .. }), "{e:?}");
        assert!(
            text.starts_with("/sys/fs/cgroup/x/cpu.stat: read-only file"),
            "{text}"
        );
        // A cgroup gone by the time of the write: removed, whatever the errno said.
        let (e, _) = says(os(13), MEMORY_MAX, "1", Facts::default());
        assert!(matches!(e, CgroupfsError::CgroupRemoved { .. }), "{e:?}");
    }

    #[test]
    fn enoent_is_a_removed_cgroup_or_a_missing_file() {
        let (e, text) = says(
            os(2),
            "/sys/fs/cgroup/cpu/yarn/c1/cpu.cfs_quota_us",
            "-1",
            Facts::default(),
        );
        assert!(matches!(e, CgroupfsError::CgroupRemoved { .. }), "{e:?}");
        assert_eq!(
            text,
            "/sys/fs/cgroup/cpu/yarn/c1/cpu.cfs_quota_us: cgroup removed (/sys/fs/cgroup/cpu/yarn/c1 no longer exists)"
        );
        let (e, text) = says(os(2), "/sys/fs/cgroup/x/cgroup.kill", "1", there());
        assert!(matches!(e, CgroupfsError::NoSuchFile { .. }), "{e:?}");
        assert_eq!(
            text,
            "/sys/fs/cgroup/x/cgroup.kill: no such file in the cgroup (this kernel or hierarchy does not have it)"
        );
    }

    #[test]
    fn ebusy_on_a_v1_memory_limit_is_its_own_variant() {
        let path = "/sys/fs/cgroup/memory/yarn/memory.limit_in_bytes";
        let (e, text) = says(os(16), path, "2147483648", there());
        assert!(
            matches!(
                e,
                CgroupfsError::MemoryBelowUsage {
                    bytes: 2147483648,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            text,
            format!(
                "{path}: memory limit below current usage: not reclaimable yet (limit 2147483648 bytes)"
            )
        );
        // EBUSY elsewhere is not about memory.
        let (e, _) = says(os(16), "/sys/fs/cgroup/x/cgroup.procs", "1", there());
        assert!(matches!(e, CgroupfsError::Io { .. }), "{e:?}");
    }

    #[test]
    fn erofs_einval_and_the_rest() {
        let (e, text) = says(os(30), MEMORY_MAX, "1", there());
        assert!(matches!(e, CgroupfsError::ReadOnly { .. }), "{e:?}");
        assert_eq!(
            text,
            format!(
                "{MEMORY_MAX}: read-only file system (cgroupfs is mounted read-only here: mount it read-write for the daemon)"
            )
        );
        let (e, text) = says(os(22), "/sys/fs/cgroup/x/cpu.max", "5 100000", there());
        assert!(matches!(e, CgroupfsError::Rejected { .. }), "{e:?}");
        assert_eq!(
            text,
            "/sys/fs/cgroup/x/cpu.max: value \"5 100000\" rejected by the kernel (EINVAL)"
        );
        let (e, text) = says(os(28), "/sys/fs/cgroup/x/cpu.max", "max 100000", there());
        assert!(matches!(e, CgroupfsError::Io { .. }), "{e:?}");
        assert!(text.starts_with("/sys/fs/cgroup/x/cpu.max: "), "{text}");
    }

    /// A cgroup2 tree in a temp dir whose `kubepods.slice` does not delegate memory: the
    /// write of `memory.max` fails (no such file) and says why.
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
                besteffort.join("memory.max").display(),
                root.display()
            )
        );
        // cpu is delegated: the write goes through, and nothing is ever created.
        set_cpu_limit(&dirs, Some(2.0)).unwrap();
        assert_eq!(
            std::fs::read_to_string(besteffort.join("cpu.max")).unwrap(),
            "200000 100000"
        );
        assert!(!besteffort.join("memory.max").exists());
        // Removed between the decision and the write.
        std::fs::remove_dir_all(root.join("kubepods.slice")).unwrap();
        let err = set_cpu_limit(&dirs, None).unwrap_err();
        assert!(
            matches!(err, CgroupfsError::CgroupRemoved { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn each_error_says_when_to_retry() {
        let retry = |errno, path: &str, facts| explain(os(errno), path.into(), "1", facts).retry();
        assert_eq!(retry(2, MEMORY_MAX, Facts::default()), Retry::Gone);
        assert_eq!(retry(16, "/c/memory.limit_in_bytes", there()), Retry::Later);
        assert_eq!(retry(13, MEMORY_MAX, undelegated()), Retry::Never);
        assert_eq!(retry(30, MEMORY_MAX, there()), Retry::Never);
        assert_eq!(retry(22, MEMORY_MAX, there()), Retry::Never);
        assert_eq!(retry(5, MEMORY_MAX, there()), Retry::Next);
        let stalled = CgroupfsError::FreezeStalled {
            path: "/c".into(),
            state: "FREEZING".into(),
        };
        assert_eq!(stalled.retry(), Retry::Later);
    }

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
