//! Which cgroup controllers the enforcer's effects need, where each one is on this host, and
//! whether cgroup2 delegates it down to a given cgroup: found at start-up so that a missing
//! or undelegated controller is said once, in one line naming it and the cgroup, with the
//! feature it turns off, instead of showing up as a bare "Permission denied" on every write
//! or as memory limiting that silently does nothing.
//!
//! Pure over the [`CgroupLayout`] (itself parsed from mountinfo text) and the
//! [`Host`](crate::host::Host) seam for `cgroup.subtree_control` and friends, so every case is a unit test
//! over fixtures.
//!
//! On cgroup2 a controller's files (`cpu.max`, `memory.max`) exist in a cgroup only when
//! every ancestor, root included, lists the controller in its `cgroup.subtree_control`;
//! writing one that is absent fails with EACCES (kernfs cannot create files). Freezing and
//! killing use the core files `cgroup.freeze` and `cgroup.kill`, which need no delegation.

mod delegation;
mod gap;
mod kind;
mod placement;
#[cfg(test)]
mod tests;

pub use delegation::{NotDelegated, delegation, delegation_with};
pub use gap::{Gap, features_off};
pub use kind::{Controller, Feature, Placement};
pub use placement::Controllers;
