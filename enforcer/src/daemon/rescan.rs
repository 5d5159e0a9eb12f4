//! Keeping the live index true: a walk of the CPU hierarchy (and of the memory hierarchy
//! when it is another one) every `rescan_interval`, and at once when the sampler sees a
//! cgroup id the index does not know.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{memory::MemoryAccounting, state::NodeState};
use crate::model::{
    Class,
    classify::RuleSet,
    layout::{CgroupLayout, walk},
};

/// Unknown cgroup ids still unknown after this many rescans are gone for good (created and
/// removed between two scans); their time is counted as system.
const UNKNOWN_RESCANS_BEFORE_FORGET: u32 = 2;

pub struct Discovery {
    /// The CPU hierarchy's root.
    pub root: PathBuf,
    pub layout: CgroupLayout,
    pub rules: Arc<RuleSet>,
    pub interval: Duration,
    last: Option<Instant>,
    /// Unknown ids and how many rescans have not found them.
    unknown_for: HashMap<u64, u32>,
    /// Memory cgroup ids removed by the last scan (for the reclaim map).
    memory_removed: Option<Vec<u64>>,
}

fn online_cpus() -> u32 {
    aya::util::online_cpus()
        .map(|c| c.len() as u32)
        .unwrap_or(1)
}

impl Discovery {
    pub fn new(
        root: PathBuf,
        layout: CgroupLayout,
        rules: Arc<RuleSet>,
        interval: Duration,
    ) -> Discovery {
        Discovery {
            root,
            layout,
            rules,
            interval,
            last: None,
            unknown_for: HashMap::new(),
            memory_removed: None,
        }
    }

    pub fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= self.interval)
    }

    pub fn take_memory_removed(&mut self) -> Option<Vec<u64>> {
        self.memory_removed.take()
    }

    /// Walks the tree, refreshes the index and the memory per class. Returns the CPU
    /// cgroup ids to drop from the sampler's map (None when the walk failed).
    pub fn rescan(
        &mut self,
        state: &Mutex<NodeState>,
        memory: &mut MemoryAccounting,
        unknown: &[u64],
        node_used_ratio: f64,
    ) -> Option<Vec<u64>> {
        self.last = Some(Instant::now());
        let started = Instant::now();
        let dirs = match walk(&self.root) {
            Ok(dirs) => dirs,
            Err(e) => {
                tracing::error!("{}: cannot scan the cgroup tree: {e}", self.root.display());
                return None;
            }
        };
        let cpus = online_cpus();
        let mut st = state.lock().unwrap();
        let pods = st.pods.clone();
        let diff = st.index.refresh(dirs, &self.rules, &pods);
        let class_roots = MemoryAccounting::class_roots(&st.index);
        st.online_cpus = cpus;
        for &id in &diff.removed {
            st.usage.forget(id, (Class::System, None));
        }
        // Ids the sampler saw that no scan finds: cgroups that came and went between scans.
        let mut gone = Vec::new();
        for &id in unknown {
            if st.index.get(id).is_some() {
                self.unknown_for.remove(&id);
                continue;
            }
            let seen = self.unknown_for.entry(id).or_default();
            *seen += 1;
            if *seen >= UNKNOWN_RESCANS_BEFORE_FORGET {
                self.unknown_for.remove(&id);
                st.usage.forget(id, (Class::System, None));
                gone.push(id);
            }
        }
        st.health.rescans_total += 1;
        st.health.rescan_seconds = started.elapsed().as_secs_f64();
        drop(st);
        if let Some(root) = &memory.root {
            match walk(root) {
                Ok(dirs) => {
                    self.memory_removed =
                        Some(memory.index.refresh(dirs, &self.rules, &pods).removed);
                }
                Err(e) => {
                    tracing::error!("{}: cannot scan the memory hierarchy: {e}", root.display())
                }
            }
        }
        let by_class = memory.class_memory(&self.layout, &class_roots, node_used_ratio);
        let pressure = crate::sampling::psi::read();
        let mut st = state.lock().unwrap();
        st.memory = by_class;
        st.pressure = pressure;
        drop(st);
        if !diff.added.is_empty() || !diff.removed.is_empty() {
            tracing::debug!(
                added = diff.added.len(),
                removed = diff.removed.len(),
                "cgroup index changed"
            );
        }
        Some(diff.removed.into_iter().chain(gone).collect())
    }
}
