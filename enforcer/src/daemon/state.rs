//! What the daemon knows between ticks, shared by the sampler thread (writer) and the
//! surfaces (readers, which build views on request).

use std::time::{SystemTime, UNIX_EPOCH};

use enforcer_common::ReclaimStats;

use super::{capacity::CapacityView, protect::ProtectionView};
use crate::{
    model::{Class, index::CgroupIndex},
    policy::usage::UsageTracker,
    sampling::psi::NodePressure,
    surfaces::snapshot::{
        CgroupUsage, ClassMemory, ClassReclaim, ClassUsage, ReclaimTotals, SamplerHealth, Snapshot,
    },
};

pub struct NodeState {
    pub node: String,
    pub layout: String,
    pub kubelet_driver: String,
    pub cpu_hierarchy: String,
    pub started_at: f64,
    pub tick_seconds: f64,
    pub window_seconds: f64,
    pub online_cpus: u32,
    pub top_n: usize,
    pub index: CgroupIndex,
    pub usage: UsageTracker,
    pub health: SamplerHealth,
    pub protection: ProtectionView,
    pub capacity: CapacityView,
    pub memory: Vec<ClassMemory>,
    pub pressure: NodePressure,
    pub reclaim_by_class: Vec<ClassReclaim>,
    /// Node-wide reclaim totals from the vmscan programs.
    pub reclaim: ReclaimStats,
    pub reclaim_kswapd_wakeups: u64,
    pub reclaim_kswapd_by_node: Vec<(u32, u64)>,
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl NodeState {
    /// The state with at most `limit` cgroups, largest CPU users first.
    pub fn snapshot(&self, limit: Option<usize>) -> Snapshot {
        let mut classes: Vec<ClassUsage> = self
            .usage
            .classes()
            .map(|(&(class, priority), totals)| ClassUsage {
                class,
                priority,
                cpu_seconds_total: totals.total_ns as f64 / 1e9,
                cpu_cores: totals.window.rate(),
                cgroups: 0,
            })
            .collect();
        let mut cgroups: Vec<CgroupUsage> = Vec::with_capacity(self.index.len());
        for entry in self.index.iter() {
            let (total_ns, cores) = self.usage.cgroup(entry.id).unwrap_or((0, 0.0));
            let key = (entry.class, entry.priority);
            match classes.iter_mut().find(|c| (c.class, c.priority) == key) {
                Some(c) => c.cgroups += 1,
                None => classes.push(ClassUsage {
                    class: entry.class,
                    priority: entry.priority,
                    cpu_seconds_total: 0.0,
                    cpu_cores: 0.0,
                    cgroups: 1,
                }),
            }
            cgroups.push(CgroupUsage {
                id: entry.id,
                path: entry.path.to_string(),
                class: entry.class,
                priority: entry.priority,
                rule: entry.rule.to_string(),
                cpu_seconds_total: total_ns as f64 / 1e9,
                cpu_cores: cores,
            });
        }
        classes.sort_by_key(|c| (c.class, c.priority));
        // Every class appears, even empty, so dashboards and alerts see zeros, not gaps.
        for class in Class::ALL {
            if !classes.iter().any(|c| c.class == class) {
                classes.push(ClassUsage {
                    class,
                    priority: None,
                    cpu_seconds_total: 0.0,
                    cpu_cores: 0.0,
                    cgroups: 0,
                });
            }
        }
        let cgroups_total = cgroups.len();
        cgroups.sort_by(|a, b| {
            b.cpu_cores
                .total_cmp(&a.cpu_cores)
                .then(b.cpu_seconds_total.total_cmp(&a.cpu_seconds_total))
                .then(a.path.cmp(&b.path))
        });
        if let Some(limit) = limit {
            cgroups.truncate(limit);
        }
        Snapshot {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: self.started_at,
            taken_at: unix_now(),
            layout: self.layout.clone(),
            kubelet_driver: self.kubelet_driver.clone(),
            cpu_hierarchy: self.cpu_hierarchy.clone(),
            tick_seconds: self.tick_seconds,
            window_seconds: self.window_seconds,
            online_cpus: self.online_cpus,
            node_cpu_utilisation: self.usage.node_utilisation(self.online_cpus),
            classes,
            cgroups,
            cgroups_total,
            sampler: self.health.clone(),
            protection: self.protection.clone(),
            capacity: self.capacity.clone(),
            memory: self.memory.clone(),
            pressure: self.pressure,
            reclaim_by_class: self.reclaim_by_class.clone(),
            reclaim: ReclaimTotals {
                direct_episodes: self.reclaim.direct_episodes,
                direct_stall_seconds: self.reclaim.direct_stall_ns as f64 / 1e9,
                memcg_episodes: self.reclaim.memcg_episodes,
                memcg_stall_seconds: self.reclaim.memcg_stall_ns as f64 / 1e9,
                kswapd_wakeups: self.reclaim_kswapd_wakeups,
                kswapd_wakeups_by_node: self.reclaim_kswapd_by_node.clone(),
            },
        }
    }
}
