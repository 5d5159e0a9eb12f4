//! One offline unit's use of the node over its life, as the usage ledger records it for
//! billing: a pod (the unit is its pod cgroup) or, where no runtime knows the cgroup, the
//! offline cgroup itself (a Yarn container).
//!
//! A unit has one stable `id` for its whole life; the ledger holds `running` records of it
//! (flushed periodically, for a consumer to upsert) and exactly one `ended` record at the
//! end. The last record of an id is the one that counts.

use serde::{Deserialize, Serialize};

use super::Priority;

/// Whether the unit still runs, and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// Still running when the record was written.
    Running,
    /// Its containers exited and it went away.
    Completed,
    /// The protection ladder killed it (`killed_seq` is the journal's sequence number).
    Killed,
    /// The kernel's OOM killer killed a process of it (`memory.events` `oom_kill`).
    OomKilled,
    /// It went away with containers still running: deleted or evicted (the runtime does not
    /// say which; the API server would).
    Deleted,
}

impl UsageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageStatus::Running => "running",
            UsageStatus::Completed => "completed",
            UsageStatus::Killed => "killed",
            UsageStatus::OomKilled => "oom_killed",
            UsageStatus::Deleted => "deleted",
        }
    }
}

impl std::fmt::Display for UsageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the usage ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Stable for the unit's life: the pod's uid, else `cgroup:<path>`.
    pub id: String,
    pub node: String,
    pub status: UsageStatus,
    /// The Spark application (`spark-app-selector` label); empty for other work.
    #[serde(default)]
    pub application_id: String,
    #[serde(default)]
    pub namespace: String,
    /// The pod's name; empty for a unit no runtime knows.
    #[serde(default)]
    pub pod_name: String,
    /// `driver` or `executor` (`spark-role` label); empty for other work.
    #[serde(default)]
    pub spark_role: String,
    /// The YuniKorn queue (`queue` label), else the unit's priority (`P1` … `debug`).
    #[serde(default)]
    pub queue: String,
    pub priority: Option<Priority>,
    /// The unit's cgroup, relative to the CPU hierarchy's root.
    pub cgroup: String,
    /// On-CPU seconds of every task of the unit over its life (the scheduler's runtime, as
    /// `cpu.stat`/`cpuacct.usage` count it), containers that already exited included.
    pub cpu_seconds: f64,
    /// The integral of the unit's `memory.current` (v1: `memory.usage_in_bytes`) over its
    /// life, in MiB × seconds (Yarn's MB-seconds are MiB).
    pub memory_mb_seconds: f64,
    /// The highest memory use read, bytes.
    pub memory_peak_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// RFC 3339: when the runtime created the pod, else when enforcer first saw the unit.
    pub start_time: String,
    /// RFC 3339: when it ended (or, for `running`, when the record was written).
    pub end_time: String,
    /// Journal sequence number of the kill, for `killed`.
    #[serde(default)]
    pub killed_seq: Option<u64>,
    /// Processes of the unit the kernel's OOM killer killed.
    #[serde(default)]
    pub oom_kills: u64,
    /// The unit ended while enforcer was not running: its figures are the last known ones
    /// and `end_time` is when the successor found it gone.
    #[serde(default)]
    pub last_known: bool,
}
