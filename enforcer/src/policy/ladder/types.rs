//! The ladder's vocabulary: its thresholds, stages, triggers, signals and actions.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Priority;

/// Thresholds and delays, all configurable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderConfig {
    /// Node CPU utilisation (over the window) above which the ladder triggers.
    pub cpu_trigger: f64,
    /// Node CPU utilisation below which the node counts as recovered.
    pub cpu_recover: f64,
    /// Node memory use (fraction of total) above which the ladder triggers.
    pub memory_trigger: f64,
    pub memory_recover: f64,
    /// Direct-reclaim stall (seconds stalled per second, summed over tasks) that triggers.
    pub reclaim_stall_trigger: f64,
    /// How long a trigger must hold before the first step (0: at once).
    pub sustain: Duration,
    /// Delay between stop-scheduling and throttling while still triggered.
    pub throttle_after: Duration,
    /// How long the quota and memory squeeze may work before offline work is also frozen.
    pub freeze_after: Duration,
    /// How long throttling may go on without recovery before the first eviction.
    pub evict_after: Duration,
    /// After a kill, wait this long for recovery before the next one.
    pub evict_cooldown: Duration,
    /// How long the node must stay below the recovery thresholds to step down one stage.
    pub recover_hold: Duration,
}

impl Default for LadderConfig {
    fn default() -> Self {
        LadderConfig {
            cpu_trigger: 0.90,
            cpu_recover: 0.80,
            memory_trigger: 0.90,
            memory_recover: 0.85,
            reclaim_stall_trigger: 0.05,
            sustain: Duration::from_millis(500),
            throttle_after: Duration::ZERO,
            freeze_after: Duration::from_secs(2),
            evict_after: Duration::from_secs(5),
            evict_cooldown: Duration::from_secs(3),
            recover_hold: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Normal,
    StopScheduling,
    Throttle,
    Evict,
    NodeSick,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Normal,
        Stage::StopScheduling,
        Stage::Throttle,
        Stage::Evict,
        Stage::NodeSick,
    ];

    /// The one spelling of a stage: the journal's `stage`, the metrics' `stage` label, the
    /// views. Equal to its serde name (a unit test holds them together).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Normal => "normal",
            Stage::StopScheduling => "stop_scheduling",
            Stage::Throttle => "throttle",
            Stage::Evict => "evict",
            Stage::NodeSick => "node_sick",
        }
    }
}

/// What set the ladder off, with the measured value (journaled with every action).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    NodeCpu {
        value: f64,
        threshold: f64,
    },
    NodeMemory {
        value: f64,
        threshold: f64,
    },
    DirectReclaim {
        stall_per_second: f64,
        threshold: f64,
    },
    /// Stepping down: the node has been healthy for `recover_hold`.
    Recovered,
    /// Releasing what a previous daemon left frozen or squeezed: no trigger holds now.
    Adopted,
    /// The daemon is stopping (SIGTERM): it lets go of what it held.
    Shutdown,
    /// The daemon starts with nothing to adopt: the node takes offline work.
    Startup,
}

/// The resource under pressure, which decides who is evicted first within a priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Cpu,
    Memory,
}

/// One offline unit the ladder may act on. Only offline units are ever given to the ladder;
/// the actuator choke point checks again.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineUnit {
    pub id: u64,
    pub priority: Priority,
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

/// What the node looks like now.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// Monotonic nanoseconds.
    pub at_ns: u64,
    pub node_cpu: f64,
    pub node_memory: f64,
    pub reclaim_stall_per_second: f64,
    /// Offline units that still have processes.
    pub offline: Vec<OfflineUnit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Tell the schedulers whether this node takes new offline work.
    SchedulingGate {
        open: bool,
    },
    /// Shrink the offline parents' CPU quota and memory limit.
    ThrottleOffline,
    /// Freeze every offline unit.
    FreezeOffline,
    /// Thaw every offline unit.
    ThawOffline,
    /// Give the offline parents back the limits of the capacity rule.
    RestoreOffline,
    /// Kill every process of one offline unit.
    Kill {
        id: u64,
        priority: Priority,
    },
    /// All offline work is gone and the node is still unhealthy.
    DeclareSick,
    ClearSick,
}

/// An action with why it is taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub stage: Stage,
    pub action: Action,
    pub trigger: Trigger,
}
