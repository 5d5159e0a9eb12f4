//! The daemon's state as the surfaces see it: built on request (a scrape, a CLI call), never
//! on the tick, so an idle daemon with 10,000 cgroups does no work for views nobody reads.

use serde::{Deserialize, Serialize};

mod config;
mod filesystem;
mod kube;
mod network;
mod pods;
mod protection;
mod usage;

use crate::{
    model::{Class, Priority},
    sampling::{memory::MemoryUsage, psi::NodePressure},
};
pub use config::ConfigView;
pub use filesystem::FilesystemUsage;
pub use kube::KubeView;
pub use network::{
    CgroupNet, ClassNet, Directions, InterfaceTraffic, NetworkSnapshot, NetworkView, TcHealth,
    TcReport, TcRequest,
};
pub use pods::{PodUsage, RuntimeView};
pub use protection::{CapacityView, ParentState, ProtectionView};
pub use usage::{GroupUsage, UnitUsage, UsageView};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub node: String,
    pub version: String,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
    pub taken_at: f64,
    /// The daemon's own CPU time, memory and descriptors when the snapshot was taken.
    #[serde(default)]
    pub own: crate::sampling::own::OwnUsage,
    /// "v1", "v2" or "hybrid".
    pub layout: String,
    /// How the kubelet names its cgroups: "systemd", "cgroupfs" or "none".
    pub kubelet_driver: String,
    /// The hierarchy whose cgroups the CPU sampler charges ("v1 cpu at /sys/fs/cgroup/cpu").
    pub cpu_hierarchy: String,
    pub tick_seconds: f64,
    pub window_seconds: f64,
    pub online_cpus: u32,
    /// Busy time over elapsed time × online CPUs, over the window.
    pub node_cpu_utilisation: f64,
    pub classes: Vec<ClassUsage>,
    /// Sorted by CPU use over the window, largest first; possibly truncated (`cgroups_total`
    /// tells how many there are).
    pub cgroups: Vec<CgroupUsage>,
    pub cgroups_total: usize,
    pub sampler: SamplerHealth,
    /// How the cgroup indexes learn of cgroups (kernel events, walks).
    #[serde(default)]
    pub discovery: DiscoveryView,
    pub protection: ProtectionView,
    pub capacity: CapacityView,
    /// Memory per class (online and offline from cgroupfs, system the rest of the node).
    pub memory: Vec<ClassMemory>,
    pub pressure: NodePressure,
    /// Reclaim per class (memory cgroup of the stalled task).
    pub reclaim_by_class: Vec<ClassReclaim>,
    pub reclaim: ReclaimTotals,
    pub network: NetworkSnapshot,
    /// The configured file systems that could be read, each once.
    #[serde(default)]
    pub filesystems: Vec<FilesystemUsage>,
    #[serde(default)]
    pub config: ConfigView,
    /// The container runtime pods come from.
    #[serde(default)]
    pub runtime: RuntimeView,
    /// Every pod the runtime lists, CPU users first.
    #[serde(default)]
    pub pods: Vec<PodUsage>,
    /// The offline units' usage (the ledger's figures).
    #[serde(default)]
    pub usage: UsageView,
    /// The Kubernetes Node object's publisher.
    #[serde(default)]
    pub kube: KubeView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassReclaim {
    pub class: Class,
    pub stats: ReclaimStatsView,
    /// Seconds stalled in memcg reclaim per second, over the window.
    pub memcg_stall_ratio: f64,
    /// The class is under memory pressure: memcg stall above the ladder's stall threshold.
    pub memory_pressure: bool,
}

/// Serialisable copy of the kernel-side [`enforcer_common::ReclaimStats`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ReclaimStatsView {
    pub direct_episodes: u64,
    pub direct_stall_ns: u64,
    pub memcg_episodes: u64,
    pub memcg_stall_ns: u64,
}

impl From<enforcer_common::ReclaimStats> for ReclaimStatsView {
    fn from(s: enforcer_common::ReclaimStats) -> Self {
        ReclaimStatsView {
            direct_episodes: s.direct_episodes,
            direct_stall_ns: s.direct_stall_ns,
            memcg_episodes: s.memcg_episodes,
            memcg_stall_ns: s.memcg_stall_ns,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassMemory {
    pub class: Class,
    pub usage: MemoryUsage,
}

/// Node-wide memory reclaim since the daemon started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReclaimTotals {
    pub direct_episodes: u64,
    pub direct_stall_seconds: f64,
    pub memcg_episodes: u64,
    pub memcg_stall_seconds: f64,
    pub kswapd_wakeups: u64,
    /// Per NUMA node id: every online node (zero until it wakes kswapd), and any other that did.
    pub kswapd_wakeups_by_node: Vec<(u32, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassUsage {
    pub class: Class,
    pub priority: Option<Priority>,
    pub cpu_seconds_total: f64,
    /// Cores in use over the window.
    pub cpu_cores: f64,
    /// Cgroups currently in this class and priority.
    pub cgroups: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CgroupUsage {
    pub id: u64,
    /// Relative to the hierarchy root ("" is the root itself).
    pub path: String,
    pub class: Class,
    pub priority: Option<Priority>,
    /// The classification rule that matched.
    pub rule: String,
    /// `namespace/name` of the cgroup's pod, when the runtime knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The container's name, when the cgroup is one of a pod's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub cpu_seconds_total: f64,
    pub cpu_cores: f64,
}

/// A histogram of durations in fixed buckets (seconds), as Prometheus keeps one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LagHistogram {
    /// Upper bounds of the buckets; a last bucket above them all is implied.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        let bounds = vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
        ];
        LagHistogram {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum: 0.0,
            count: 0,
        }
    }
}

impl LagHistogram {
    pub fn observe(&mut self, seconds: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// The upper bound of the bucket holding quantile `q` of what was observed after
    /// `before` (an earlier copy of this histogram); infinity when it is above every bound,
    /// None when nothing was observed in between.
    pub fn quantile_since(&self, before: &LagHistogram, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(self.bounds.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// What discovery did, for the status and the metrics.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiscoveryView {
    /// Cgroup events applied (created, removed, renamed).
    pub events_total: u64,
    /// Events the kernel could not queue (ring buffer full); each loss costs a walk.
    pub events_lost_total: u64,
    /// Whether the kernel's events are used (false: the hierarchies are walked every
    /// second).
    pub events: bool,
    /// Walks of the hierarchies (the safety net, losses, unknown ids, start).
    pub walks_total: u64,
    /// Time the last walk took (all hierarchies).
    pub walk_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SamplerHealth {
    pub ticks_total: u64,
    /// Of those, ticks run at once because a direct-reclaim episode ended (not at their
    /// schedule): the ladder's reclaim trigger seen when it happens.
    #[serde(default)]
    pub reclaim_wakeups_total: u64,
    /// How late the last tick started compared with its schedule.
    pub tick_lag_seconds: f64,
    pub tick_lag_max_seconds: f64,
    /// Every tick's lag since start, in buckets (p99 over any interval from two reads).
    #[serde(default)]
    pub tick_lag: LagHistogram,
    /// Time the last read of the eBPF maps took.
    pub map_read_seconds: f64,
    /// Entries in the per-cgroup eBPF map, and its capacity.
    pub map_entries: usize,
    pub map_capacity: u32,
    /// `sched_switch` events handled by the program.
    pub program_runs_total: u64,
    /// Wall time of the last tick that saw that count grow (0: never, e.g. the cgroupfs
    /// poller, which has no program).
    #[serde(default)]
    pub program_runs_moved_unix: f64,
    /// Credits the program could not store because its map was full.
    pub dropped_total: u64,
    pub read_errors_total: u64,
    pub rescans_total: u64,
    pub rescan_seconds: f64,
    pub read_failures_total: u64,
    /// Wall time of the last tick (0: none yet), for `/healthz`.
    #[serde(default)]
    pub last_tick_unix: f64,
    /// Map reads failed in a row (the programs detached or their maps gone).
    #[serde(default)]
    pub consecutive_read_failures: u32,
    /// A journal entry could not be written in the last minute.
    #[serde(default)]
    pub journal_failing: bool,
}

impl Snapshot {
    /// Cumulative CPU seconds of one class (all priorities).
    pub fn class_seconds(&self, class: Class) -> f64 {
        self.classes
            .iter()
            .filter(|c| c.class == class)
            .map(|c| c.cpu_seconds_total)
            .sum()
    }
}

#[cfg(test)]
mod lag_tests {
    use super::LagHistogram;

    #[test]
    fn quantile_since_counts_only_what_came_after() {
        let mut h = LagHistogram::default();
        for _ in 0..100 {
            h.observe(0.2); // before: slow ticks
        }
        let before = h.clone();
        for _ in 0..99 {
            h.observe(0.0001);
        }
        h.observe(0.004);
        assert_eq!(h.quantile_since(&before, 0.5), Some(0.0005));
        assert_eq!(h.quantile_since(&before, 0.99), Some(0.0005));
        assert_eq!(h.quantile_since(&before, 1.0), Some(0.005));
        h.observe(7.0);
        assert_eq!(h.quantile_since(&before, 1.0), Some(f64::INFINITY));
        assert_eq!(before.quantile_since(&before, 0.99), None);
        assert_eq!(h.count, 201);
    }
}
