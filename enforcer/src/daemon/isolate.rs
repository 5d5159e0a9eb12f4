//! Keeps SPEC §3's isolation true as processes come and go: every tick the offline cgroups'
//! processes (read by the census) are compared with those already isolated, and new ones
//! are isolated in one batch (so a fork is caught within a tick or two); when a cgroup stops
//! being offline, what enforcer changed is put back.

use std::collections::{HashMap, HashSet};

use super::effects::{Done, Effect};
use crate::{
    actuators::{isolation::Previous, record::EffectsRecord},
    config::IsolationConfig,
};

/// Dead processes are forgotten every this many ticks.
const PRUNE_EVERY_TICKS: u64 = 10;

pub struct Isolator {
    config: IsolationConfig,
    /// pid -> (offline cgroup it was isolated in, what it had before).
    isolated: HashMap<i32, (String, Previous)>,
    ticks: u64,
}

impl Isolator {
    pub fn new(config: IsolationConfig) -> Isolator {
        Isolator {
            config,
            isolated: HashMap::new(),
            ticks: 0,
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
        offline: &[(String, Vec<i32>)],
        alive: &dyn Fn(i32) -> bool,
    ) -> Vec<Effect> {
        if !self.config.enabled {
            return Vec::new();
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(PRUNE_EVERY_TICKS) {
            self.isolated.retain(|pid, _| alive(*pid));
        }
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
