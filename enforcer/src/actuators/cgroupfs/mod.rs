//! Writes to cgroupfs: CPU quota, memory limit, freeze, kill. Each works on v1 and on
//! cgroup2, whichever the host has for that job. Thin on purpose: the integration tests
//! cover it against the real kernel.
//!
//! A write that fails says which file and why ([`error`]). The modules point one way:
//! `limit`, `freeze`, `procs` → `file` → `error`; `dirs` is plain data.

mod dirs;
mod error;
mod file;
mod freeze;
mod limit;
mod procs;

pub use dirs::CgroupDirs;
pub use error::{CgroupfsError, Facts, Retry, explain};
pub use freeze::{
    FREEZE_BUDGET, FREEZE_POLL, FREEZE_SPIN, FREEZE_TRIES, FreezeFollowUp, FreezeState,
    follow_up_freeze, freeze_state, request_freeze, thaw, v1_freeze_state, v2_freeze_state,
};
pub use limit::{
    LimitKind, memory_max_above, read_limit, restore_limit, set_cpu_limit, set_memory_limit,
};
pub use procs::{
    KILL_BUDGET, KILL_ROUND, KILL_SPIN, KillFollowUp, KillProgress, follow_up_kill, kill_all, pids,
    request_kill,
};
