//! Keeps SPEC §3's isolation true as processes come and go: every tick the offline cgroups'
//! processes (read by the census) are compared with those already isolated, and new ones
//! are isolated in one batch (so a fork is caught within a tick or two); when a cgroup stops
//! being offline, what enforcer changed is put back. A quiet tick (the census hands over
//! the same list) costs nothing: no set is built and no process is looked up.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::effects::{Done, Effect};
use crate::{
    actuators::{isolation::Previous, record::EffectsRecord},
    config::IsolationConfig,
};

/// Every offline cgroup with its processes, as the census read them.
pub type OfflineProcs = Vec<(String, Vec<i32>)>;

pub struct Isolator {
    config: IsolationConfig,
    /// pid -> (offline cgroup it was isolated in, what it had before).
    isolated: HashMap<i32, (String, Previous)>,
    /// The census list the last decision was made on, and whether it asked for anything
    /// (then the next tick decides again, to retry what failed, even on the same list).
    last: Option<Arc<OfflineProcs>>,
    asked: bool,
}

impl Isolator {
    pub fn new(config: IsolationConfig) -> Isolator {
        Isolator {
            config,
            isolated: HashMap::new(),
            last: None,
            asked: false,
        }
    }

    /// Takes over the processes a previous daemon isolated, with their real values from
    /// before (its effects record): they are not isolated again, and putting them back
    /// restores what they had, not what enforcer set.
    pub fn adopt(&mut self, record: &EffectsRecord) {
        for (pid, p) in &record.isolated {
            self.isolated.insert(
                *pid,
                (
                    p.cgroup.clone(),
                    Previous {
                        oom_score_adj: p.oom_score_adj,
                        nice: p.nice,
                    },
                ),
            );
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn isolated(&self) -> usize {
        self.isolated.len()
    }

    /// `offline` holds every offline cgroup now with its processes; `alive` tells whether
    /// a process still exists.
    pub fn decide(
        &mut self,
        offline: &Arc<OfflineProcs>,
        alive: &dyn Fn(i32) -> bool,
    ) -> Vec<Effect> {
        if !self.config.enabled {
            return Vec::new();
        }
        if !self.asked
            && self
                .last
                .as_ref()
                .is_some_and(|last| Arc::ptr_eq(last, offline))
        {
            return Vec::new();
        }
        self.last = Some(offline.clone());
        // Dead processes are forgotten: one no offline cgroup lists any more and that no
        // longer exists (a pid listed is alive; one moved elsewhere keeps its entry).
        let listed: HashSet<i32> = offline
            .iter()
            .flat_map(|(_, pids)| pids.iter().copied())
            .collect();
        self.isolated
            .retain(|pid, _| listed.contains(pid) || alive(*pid));
        let offline_set: HashSet<&str> = offline.iter().map(|(rel, _)| rel.as_str()).collect();
        let stale: Vec<(i32, String, Previous)> = self
            .isolated
            .iter()
            .filter(|(_, (rel, _))| !offline_set.contains(rel.as_str()))
            .filter(|(pid, _)| alive(**pid))
            .map(|(pid, (rel, prev))| (*pid, rel.clone(), *prev))
            .collect();
        self.isolated
            .retain(|_, (rel, _)| offline_set.contains(rel.as_str()));
        let mut effects = Vec::new();
        if !stale.is_empty() {
            effects.push(Effect::RestoreIsolation(stale));
        }
        let batch: Vec<(String, Vec<i32>)> = offline
            .iter()
            .filter_map(|(rel, pids)| {
                let new: Vec<i32> = pids
                    .iter()
                    .copied()
                    .filter(|pid| !self.isolated.contains_key(pid))
                    .collect();
                (!new.is_empty()).then(|| (rel.clone(), new))
            })
            .collect();
        if !batch.is_empty() {
            effects.push(Effect::Isolate {
                batch,
                oom_score_adj: self.config.oom_score_adj,
                nice: self.config.nice,
            });
        }
        self.asked = !effects.is_empty();
        effects
    }

    pub fn observe(&mut self, done: &Done) {
        if let Done::Isolated(items) = done {
            for (pid, rel, previous) in items {
                self.isolated.insert(*pid, (rel.clone(), *previous));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn isolate_all(iso: &mut Isolator, effects: &[Effect]) {
        for e in effects {
            if let Effect::Isolate { batch, .. } = e {
                let items = batch
                    .iter()
                    .flat_map(|(rel, pids)| {
                        pids.iter().map(|&pid| {
                            let previous = Previous {
                                oom_score_adj: 0,
                                nice: 0,
                            };
                            (pid, rel.clone(), previous)
                        })
                    })
                    .collect();
                iso.observe(&Done::Isolated(items));
            }
        }
    }

    #[test]
    fn a_quiet_tick_looks_at_nothing_and_a_dead_process_is_forgotten_when_its_list_changes() {
        let mut iso = Isolator::new(IsolationConfig::default());
        let looked = Cell::new(0);
        let dead = Cell::new(0);
        let alive = |pid: i32| {
            looked.set(looked.get() + 1);
            pid != dead.get()
        };
        let list = Arc::new(vec![("be/pod1".to_string(), vec![7, 8])]);
        let first = iso.decide(&list, &alive);
        assert!(matches!(&first[..], [Effect::Isolate { .. }]), "{first:?}");
        isolate_all(&mut iso, &first);
        // The tick after a batch decides again (a failure would be retried), then the same
        // list is passed over without a look at any process.
        assert!(iso.decide(&list, &alive).is_empty());
        looked.set(0);
        for _ in 0..100 {
            assert!(iso.decide(&list, &alive).is_empty());
        }
        assert_eq!(looked.get(), 0, "quiet ticks looked up processes");
        assert_eq!(iso.isolated(), 2);
        // 8 exits: the census reads the cgroup again and hands over a new list.
        dead.set(8);
        let list = Arc::new(vec![("be/pod1".to_string(), vec![7])]);
        assert!(iso.decide(&list, &alive).is_empty());
        assert_eq!(iso.isolated(), 1, "the dead process is forgotten");
    }
}
