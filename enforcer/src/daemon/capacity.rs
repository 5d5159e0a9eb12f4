//! The offline capacity (SPEC §2) as a controller: computed every tick from the measured
//! online usage and moved toward its target in bounded steps. It decides what the offline
//! parents should get; [`super::limits::OfflineLimits`] decides when to write it.

use super::{effects::Effect, limits::CapacityWish};
use crate::{
    actuators::record::EffectsRecord,
    config::CapacitySettings,
    policy::{
        capacity::{self, NodeUsage, OfflineCapacity},
        window::PeakWindow,
    },
    surfaces::snapshot::CapacityView,
};

pub struct CapacityController {
    settings: CapacitySettings,
    applied: Option<OfflineCapacity>,
    /// The peaks of the online CPU (share of the node) and memory (bytes) over
    /// `usage_window`: what the rule is fed.
    online_cpu_peak: PeakWindow,
    online_memory_peak: PeakWindow,
    /// Entering or leaving the clamp this tick, to journal.
    clamp_event: Option<Effect>,
    pub view: CapacityView,
}

impl CapacityController {
    pub fn new(settings: CapacitySettings) -> CapacityController {
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
            online_cpu_peak: PeakWindow::new(settings.usage_window.as_nanos() as u64),
            online_memory_peak: PeakWindow::new(settings.usage_window.as_nanos() as u64),
            settings,
            applied: None,
            clamp_event: None,
        }
    }

    /// Resumes from the capacity a previous daemon had applied (its effects record), so a
    /// restart neither jumps the limits back to the whole node nor steps them down anew.
    pub fn adopt(&mut self, record: &EffectsRecord) {
        let values = record.capacity_values();
        if !self.settings.enabled || values.is_empty() {
            return;
        }
        let cores: f64 = values.iter().filter_map(|(_, c, _)| *c).sum();
        let bytes: u64 = values.iter().filter_map(|(_, _, b)| *b).sum();
        self.applied = Some(OfflineCapacity {
            cpu_cores: cores,
            memory_bytes: bytes,
        });
    }

    /// The clamp's entry or exit, once, for the journal.
    pub fn take_event(&mut self) -> Option<Effect> {
        self.clamp_event.take()
    }

    /// What the offline side may use as the rule has reached it (None: capacity is off, or
    /// not computed yet): what the Node's annotations publish.
    pub fn applied(&self) -> Option<OfflineCapacity> {
        self.applied.filter(|_| self.settings.enabled)
    }

    /// What each of `parents` offline parents should get now (None: capacity is off).
    pub fn per_parent(&self, parents: usize) -> Option<(f64, u64)> {
        let a = self.applied.filter(|_| self.settings.enabled)?;
        let n = parents.max(1);
        Some((a.cpu_cores / n as f64, a.memory_bytes / n as u64))
    }

    /// The least memory limit any writer may give each of `parents` offline parents: the
    /// rule's floor shared among them (whether or not the rule is on, the ladder's squeeze
    /// never goes below it: an empty BestEffort slice squeezed "to what it uses" would get
    /// a limit of 0 for its next pod).
    pub fn memory_floor_per_parent(&self, node_memory_bytes: u64, parents: usize) -> u64 {
        self.settings.rule.memory_floor.bytes(node_memory_bytes) / parents.max(1) as u64
    }

    /// One step toward the rule's target at `at_ns` (CLOCK_MONOTONIC); returns what the
    /// parents should be written.
    pub fn tick(
        &mut self,
        at_ns: u64,
        measured: &NodeUsage,
        minute_of_day: u32,
        parents: usize,
        held: bool,
    ) -> Option<CapacityWish> {
        // The peaks follow the online load even while the rule is off, so that turning it
        // on (a reload) starts from the load of the last window.
        let node = &NodeUsage {
            online_cpu: self.online_cpu_peak.push(at_ns, measured.online_cpu),
            online_memory_bytes: self
                .online_memory_peak
                .push(at_ns, measured.online_memory_bytes as f64)
                as u64,
            ..*measured
        };
        if !self.settings.enabled {
            return None;
        }
        let rule = &self.settings.rule;
        let (target, clamped) = capacity::target_clamped(rule, node, minute_of_day);
        self.clamp_event = (clamped != self.view.clamped).then(|| Effect::NodeEvent {
            stage: "capacity".into(),
            action: if clamped {
                "capacity_clamped"
            } else {
                "capacity_unclamped"
            },
            reason: serde_json::json!({
                "trigger": "capacity",
                "why": if clamped {
                    "the rule leaves offline memory no more room than its floor: the floor applies"
                } else {
                    "the rule leaves offline memory room above its floor again"
                },
                "online_cpu": node.online_cpu,
                "online_memory_bytes": node.online_memory_bytes,
                "memory_floor_bytes": rule.memory_floor.bytes(node.memory_bytes),
                "reserved_daemons_bytes": rule.reserved_daemons.bytes(node.memory_bytes),
            }),
        });
        if clamped && !self.view.clamped {
            tracing::warn!(
                floor_bytes = rule.memory_floor.bytes(node.memory_bytes),
                "capacity clamped: the rule leaves offline memory no room; its floor applies"
            );
        }
        self.view.clamped = clamped;
        self.view.memory_floor_bytes = rule.memory_floor.bytes(node.memory_bytes);
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
        self.view.offline_parents = parents;
        self.view.held = held;
        if parents == 0 {
            return None;
        }
        Some(CapacityWish {
            per_parent: self.per_parent(parents).expect("enabled"),
            // 2% of the node's CPUs (at least 0.02 core), 1% of its memory: finer than any
            // scheduler's view of the capacity, coarse enough that the limits are written
            // when the online load moved, not every tick.
            cpu_band: (node.cpus * 0.02).max(0.02),
            memory_band: node.memory_bytes / 100,
            reason: serde_json::json!({
                "trigger": "capacity",
                "policy": self.view.policy,
                "online_cpu": node.online_cpu,
                "online_memory_bytes": node.online_memory_bytes,
                "online_peak_window_s": self.settings.usage_window.as_secs_f64(),
                "target_cpu_cores": target.cpu_cores,
                "target_memory_bytes": target.memory_bytes,
            }),
        })
    }
}
