//! What the surfaces show of the protection ladder and the offline capacity.

use serde::{Deserialize, Serialize};

/// What the surfaces show of the ladder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProtectionView {
    pub enabled: bool,
    pub dry_run: bool,
    pub stage: String,
    pub frozen: bool,
    pub scheduling_open: bool,
    pub node_sick: bool,
    pub node_memory_used_ratio: f64,
    pub direct_reclaim_stall_ratio: f64,
    pub explain: String,
    pub offline_killed_total: u64,
    pub actions_total: u64,
    pub refused_total: u64,
    pub journal: String,
    /// Journal entries that could not be written (full or read-only file system).
    #[serde(default)]
    pub journal_write_failures_total: u64,
    pub thresholds: Option<crate::policy::ladder::LadderConfig>,
    /// Controllers missing, or not delegated to an offline parent, found at start-up: each
    /// names the controller, the cgroup and the feature it turns off.
    #[serde(default)]
    pub controller_gaps: Vec<crate::model::controllers::Gap>,
}

/// What the surfaces show of the offline capacity (SPEC §2).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CapacityView {
    pub enabled: bool,
    pub policy: String,
    pub target_cpu_cores: f64,
    pub target_memory_bytes: u64,
    pub applied_cpu_cores: f64,
    pub applied_memory_bytes: u64,
    pub offline_parents: usize,
    /// True while the protection ladder holds the limits.
    pub held: bool,
    /// The rule leaves offline memory no more room than its floor: the floor is applied.
    #[serde(default)]
    pub clamped: bool,
    #[serde(default)]
    pub memory_floor_bytes: u64,
    /// Each offline parent as the kernel has it now (read back every tick, not believed).
    #[serde(default)]
    pub parents: Vec<ParentState>,
}

/// An offline parent's freeze and limits, read back from cgroupfs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParentState {
    pub path: String,
    pub frozen: bool,
    /// `None`: no quota.
    pub cpu_quota_cores: Option<f64>,
    /// `None`: no limit (or no memory cgroup).
    pub memory_limit_bytes: Option<u64>,
}
