//! The choke point. Every effect on the node passes here: it classifies the target again
//! with the rules in force (it does not trust its caller's idea of the class), refuses
//! anything that is not offline, writes the intent and its reason to the journal (fsynced)
//! before touching anything, then the outcome. In dry-run mode the decision is journaled
//! and nothing is applied. One file per domain: cgroup operations, process isolation, tc
//! passes, and the node-wide events (scheduling gate, node sick; the gate also reaches the
//! Kubernetes Node object through the publisher the choke point holds).

mod cgroup;
mod gate;
mod isolation;
mod network;
mod pending;
mod transaction;
mod unsettled;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

pub use pending::Settled;

use super::{journal::Journal, kube::Publisher, record::EffectsRecord};
use crate::{
    model::{classify::RuleSet, layout::CgroupLayout, pod::PodTable},
    policy::capacity::OfflineCapacity,
};

pub struct Actuator {
    layout: CgroupLayout,
    rules: Arc<RuleSet>,
    /// The runtime's pod list: a pod cgroup is classified again with its pod's labels.
    pods: Arc<PodTable>,
    journal: Journal,
    dry_run: bool,
    /// `<state_dir>/scheduling`, read by the Yarn NodeManager health script.
    gate_file: Option<PathBuf>,
    /// What enforcer changed on cgroups, written ahead of each change.
    record: EffectsRecord,
    /// The Node object's publisher (taint, condition, capacity annotations), when the
    /// daemon runs in a cluster with it on.
    kube: Option<Publisher>,
    /// Freezes and kills requested and not complete yet, followed up by the ticks after.
    unsettled: Vec<pending::Unsettled>,
    /// Kills applied since the daemon last took them: (target, journal sequence number),
    /// for the usage ledger's `killed` records.
    kills: Vec<(String, u64)>,
}

impl Actuator {
    pub fn new(
        layout: CgroupLayout,
        rules: Arc<RuleSet>,
        journal: Journal,
        dry_run: bool,
    ) -> Actuator {
        Actuator {
            layout,
            rules,
            pods: Arc::new(PodTable::new()),
            journal,
            dry_run,
            gate_file: None,
            record: EffectsRecord::in_memory(),
            kube: None,
            unsettled: Vec::new(),
            kills: Vec::new(),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// After a configuration reload.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// After the runtime's pod list changed.
    pub fn set_pods(&mut self, pods: Arc<PodTable>) {
        self.pods = pods;
    }

    /// The target classified as the choke point sees it: with its pod when the runtime
    /// knows it, by path otherwise.
    fn classify(&self, rel: &str) -> crate::model::classify::Classification {
        self.rules.classify_in(rel, &self.pods)
    }

    /// Keeps the effects record in `<state_dir>/effects.json` (adopting what is there).
    pub fn with_effects_record(mut self, state_dir: &Path) -> Actuator {
        self.record = EffectsRecord::load(&state_dir.join("effects.json"));
        self
    }

    /// Journal entries that could not be written since start.
    pub fn journal_write_failures(&self) -> u64 {
        self.journal.write_failures()
    }

    /// What enforcer owns on the cgroups, as recorded.
    pub fn record(&self) -> &EffectsRecord {
        &self.record
    }

    /// The kills applied since the last call: (target, journal sequence number).
    pub fn take_kills(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.kills)
    }

    /// Forgets recorded cgroups that no longer exist.
    pub fn forget_gone(&mut self) {
        let layout = &self.layout;
        let exists = |rel: &str| {
            let dirs = super::cgroupfs::CgroupDirs::resolve(layout, rel);
            dirs.cpu.is_some() || dirs.memory.is_some() || dirs.unified.is_some()
        };
        if let Err(e) = self.record.retain(exists) {
            tracing::error!("effects record: {e}");
        }
        let same_process =
            |pid: i32, start: u64| super::isolation::start_time(pid).is_ok_and(|s| s == start);
        if let Err(e) = self.record.retain_isolated(same_process) {
            tracing::error!("effects record: {e}");
        }
    }

    /// Where the scheduling gate is written (`<state_dir>/scheduling`).
    pub fn with_gate_file(mut self, state_dir: &Path) -> Actuator {
        self.gate_file = Some(state_dir.join("scheduling"));
        self
    }

    /// The gate (and the capacity) also go to the Node object, through `publisher`.
    pub fn with_kube(mut self, publisher: Publisher) -> Actuator {
        self.kube = Some(publisher);
        self
    }

    /// The offline capacity in force, for the Node's annotations. Queued, never waited
    /// for; a dry run publishes nothing (it has no publisher).
    pub fn publish_capacity(&self, capacity: OfflineCapacity) {
        if let Some(k) = &self.kube
            && !self.dry_run
        {
            k.set_capacity(capacity);
        }
    }
}
