//! What a failed cgroupfs write means, in words an operator acts on: the errno is
//! explained from what the node shows at that moment ([`Facts`]: is the cgroup still there,
//! is the file writable, does cgroup2 delegate the controller down to it), by the pure
//! [`explain`], and each error says when to try again ([`Retry`]).

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use crate::model::controllers::NotDelegated;

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
    /// A freeze that did not complete within its bound (`tries` writes over `budget`, see
    /// `freeze::FREEZE_TRIES`): left as the kernel has it (partly frozen), for a later tick
    /// to retry or escalate.
    #[error("{path}: freeze stalled: still {state} {budget:?} after it was requested, written {times} (a task mid-exec or in uninterruptible sleep); left partly frozen", path = .path.display(), times = crate::text::times(*.tries))]
    FreezeStalled {
        path: PathBuf,
        state: String,
        tries: u32,
        budget: Duration,
    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::controllers::Controller;

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
            tries: 3,
            budget: Duration::from_millis(300),
        };
        assert_eq!(stalled.retry(), Retry::Later);
    }
}
