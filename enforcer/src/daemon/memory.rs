//! Memory per class and reclaim per class, for the surfaces and the capacity rule: the
//! memory hierarchy's own index (v1 and hybrid hosts charge reclaim to memory cgroup ids),
//! memcg reclaim stall per class over the window (the per-class memory-pressure signal), and
//! hierarchical memory use of each class's top cgroups, read once a second.

use std::collections::HashMap;

use super::census::{class_roots, offline_roots};
use crate::{
    actuators::cgroupfs::CgroupDirs,
    model::{Class, index::CgroupIndex, layout::CgroupLayout},
    policy::window::RateWindow,
    sampling::{memory, reclaim::ReclaimReading},
    surfaces::snapshot::{ClassMemory, ClassReclaim},
};

pub struct MemoryAccounting {
    memcg_stall: HashMap<Class, RateWindow>,
    window_ns: u64,
    stall_trigger: f64,
    /// Online memory (hierarchical use of the online class roots), refreshed each second.
    pub online_bytes: u64,
    pub total_bytes: u64,
}

impl MemoryAccounting {
    pub fn new(window_ns: u64, stall_trigger: f64, total_bytes: u64) -> Self {
        MemoryAccounting {
            memcg_stall: HashMap::new(),
            window_ns,
            stall_trigger,
            online_bytes: 0,
            total_bytes,
        }
    }

    /// Reclaim per class, classified with the memory hierarchy's index (the CPU one when
    /// memory is charged there too).
    pub fn reclaim_by_class(
        &mut self,
        at_ns: u64,
        reclaim: &ReclaimReading,
        index: &CgroupIndex,
    ) -> Vec<ClassReclaim> {
        let mut totals: HashMap<Class, enforcer_common::ReclaimStats> = HashMap::new();
        for (id, stats) in &reclaim.per_cgroup {
            let class = index.get(*id).map_or(Class::System, |e| e.class);
            let t = totals.entry(class).or_default();
            t.direct_episodes += stats.direct_episodes;
            t.direct_stall_ns += stats.direct_stall_ns;
            t.memcg_episodes += stats.memcg_episodes;
            t.memcg_stall_ns += stats.memcg_stall_ns;
        }
        Class::ALL
            .into_iter()
            .map(|class| {
                let stats = totals.get(&class).copied().unwrap_or_default();
                let window_ns = self.window_ns;
                let w = self
                    .memcg_stall
                    .entry(class)
                    .or_insert_with(|| RateWindow::new(window_ns));
                w.push(at_ns, stats.memcg_stall_ns);
                let ratio = w.rate();
                ClassReclaim {
                    class,
                    stats: stats.into(),
                    memcg_stall_ratio: ratio,
                    memory_pressure: ratio > self.stall_trigger,
                }
            })
            .collect()
    }

    /// The top cgroups of online and offline (relative paths), for [`Self::class_memory`].
    pub fn class_roots(index: &CgroupIndex) -> Vec<(Class, Vec<String>)> {
        [Class::Online, Class::Offline]
            .into_iter()
            .map(|class| {
                // Offline: the parents with nothing else below them, so that an online pod
                // inside the BestEffort slice is counted once, as online.
                let roots = match class {
                    Class::Offline => offline_roots(index),
                    _ => class_roots(index, class),
                };
                (class, roots.iter().map(|e| e.path.to_string()).collect())
            })
            .collect()
    }

    /// Memory per class from cgroupfs; system is what the node uses beyond online and
    /// offline (the OS, kubelet, HDFS, the NodeManager, page cache of no cgroup of ours).
    pub fn class_memory(
        &mut self,
        layout: &CgroupLayout,
        class_roots: &[(Class, Vec<String>)],
        node_used_ratio: f64,
    ) -> Vec<ClassMemory> {
        let mut out: Vec<ClassMemory> = class_roots
            .iter()
            .map(|(class, roots)| {
                let mut usage = memory::MemoryUsage::default();
                for root in roots {
                    let dirs = CgroupDirs::resolve(layout, root);
                    if let Some(dir) = &dirs.memory
                        && let Some(u) = memory::read(dir, dirs.memory_is_v2)
                    {
                        usage += u;
                    }
                }
                ClassMemory {
                    class: *class,
                    usage,
                }
            })
            .collect();
        let used = (node_used_ratio * self.total_bytes as f64) as u64;
        let accounted: u64 = out.iter().map(|m| m.usage.usage_bytes).sum();
        out.push(ClassMemory {
            class: Class::System,
            usage: memory::MemoryUsage {
                usage_bytes: used.saturating_sub(accounted),
                ..Default::default()
            },
        });
        self.online_bytes = out
            .iter()
            .find(|m| m.class == Class::Online)
            .map_or(0, |m| m.usage.usage_bytes);
        out
    }
}
