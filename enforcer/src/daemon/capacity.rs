//! Applies the offline capacity (SPEC §2) to the offline parent cgroups: computed every
//! tick from the measured online usage, moved toward its target in bounded steps, written
//! only when it moved by more than a dead band (so the journal records changes, not ticks),
//! and held while the protection ladder is squeezing offline work.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::{
    actuators::journal::{JournalError, Outcome},
    actuators::{Actuator, Operation, Request, cgroupfs::CgroupDirs},
    config::CapacitySettings,
    model::layout::CgroupLayout,
    policy::capacity::{self, NodeUsage, OfflineCapacity},
    surfaces::snapshot::CapacityView,
};

/// After a failed write (e.g. a memory limit the kernel cannot reclaim down to), leave that
/// limit alone this long instead of failing every tick.
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Written {
    cores: Option<f64>,
    bytes: Option<u64>,
    cpu_backoff: Option<Instant>,
    memory_backoff: Option<Instant>,
}

pub struct CapacityController {
    settings: CapacitySettings,
    layout: CgroupLayout,
    applied: Option<OfflineCapacity>,
    written: HashMap<String, Written>,
    pub view: CapacityView,
}

impl CapacityController {
    pub fn new(settings: CapacitySettings, layout: CgroupLayout) -> CapacityController {
        let policy = match &settings.rule.policy {
            capacity::Policy::Dynamic => "dynamic",
            capacity::Policy::Static { .. } => "static",
            capacity::Policy::TimeOfDay(_) => "time_of_day",
        };
        CapacityController {
            view: CapacityView {
                enabled: settings.enabled,
                policy: policy.into(),
                ..Default::default()
            },
            settings,
            layout,
            applied: None,
            written: HashMap::new(),
        }
    }

    /// What each offline parent should get now, for the ladder to restore to.
    pub fn per_parent(&self, parents: usize) -> Option<(f64, u64)> {
        let a = self.applied.filter(|_| self.settings.enabled)?;
        let n = parents.max(1);
        Some((a.cpu_cores / n as f64, a.memory_bytes / n as u64))
    }

    /// Forget what was written (the ladder changed the limits): the next tick writes again.
    pub fn invalidate(&mut self) {
        self.written.clear();
    }

    pub fn tick(
        &mut self,
        actuator: &mut Actuator,
        parents: &[String],
        node: &NodeUsage,
        hold: bool,
    ) -> Result<(), JournalError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let rule = &self.settings.rule;
        let target = capacity::target(rule, node, crate::clock::local_minute_of_day());
        // Start from the whole node (what "no limit" amounts to) and come down gradually.
        let from = self.applied.unwrap_or(OfflineCapacity {
            cpu_cores: node.cpus,
            memory_bytes: node.memory_bytes,
        });
        let applied = capacity::step_toward(from, target, node, rule.max_step);
        self.applied = Some(applied);
        self.view.target_cpu_cores = target.cpu_cores;
        self.view.target_memory_bytes = target.memory_bytes;
        self.view.applied_cpu_cores = applied.cpu_cores;
        self.view.applied_memory_bytes = applied.memory_bytes;
        self.view.offline_parents = parents.len();
        self.view.held = hold;
        self.written.retain(|root, _| parents.contains(root));
        if hold || parents.is_empty() {
            return Ok(());
        }
        let (cores, bytes) = self.per_parent(parents.len()).expect("enabled");
        let cpu_band = (node.cpus * 0.01).max(0.02);
        let mem_band = node.memory_bytes / 100;
        let reason = serde_json::json!({
            "trigger": "capacity",
            "policy": self.view.policy,
            "online_cpu": node.online_cpu,
            "online_memory_bytes": node.online_memory_bytes,
            "target_cpu_cores": target.cpu_cores,
            "target_memory_bytes": target.memory_bytes,
        });
        let now = Instant::now();
        for root in parents {
            let w = self.written.entry(root.clone()).or_default();
            let cpu_due = w.cores.is_none_or(|c| (c - cores).abs() > cpu_band)
                && w.cpu_backoff.is_none_or(|t| now >= t);
            if cpu_due {
                let outcome = actuator.apply(&Request {
                    stage: "capacity".into(),
                    target: root.clone(),
                    op: Operation::CpuLimit { cores: Some(cores) },
                    reason: reason.clone(),
                })?;
                match outcome {
                    Outcome::Applied | Outcome::DryRun => w.cores = Some(cores),
                    _ => w.cpu_backoff = Some(now + FAILURE_BACKOFF),
                }
            }
            let has_memory = CgroupDirs::resolve(&self.layout, root).memory.is_some();
            let mem_due = has_memory
                && w.bytes.is_none_or(|b| b.abs_diff(bytes) > mem_band)
                && w.memory_backoff.is_none_or(|t| now >= t);
            if mem_due {
                let outcome = actuator.apply(&Request {
                    stage: "capacity".into(),
                    target: root.clone(),
                    op: Operation::MemoryLimit { bytes: Some(bytes) },
                    reason: reason.clone(),
                })?;
                match outcome {
                    Outcome::Applied | Outcome::DryRun => w.bytes = Some(bytes),
                    _ => w.memory_backoff = Some(now + FAILURE_BACKOFF),
                }
            }
        }
        Ok(())
    }
}
