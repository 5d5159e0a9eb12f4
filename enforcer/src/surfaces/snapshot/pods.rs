//! What the surfaces show of the container runtime and the pods it lists.

use serde::{Deserialize, Serialize};

use crate::model::{Class, Priority};

/// The pod source's health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeView {
    /// `[runtime] enabled`.
    pub enabled: bool,
    pub socket: String,
    /// The last list succeeded.
    pub up: bool,
    /// `containerd 1.6.20`, once it answered.
    pub version: Option<String>,
    pub pods: usize,
    pub refreshes_total: u64,
    pub errors_total: u64,
    /// How long the last successful list took, and how many RPCs it made.
    pub refresh_seconds: f64,
    pub refresh_rpcs: u32,
    /// Unix seconds of the last successful list.
    pub refreshed_at: f64,
    /// The runtime's event stream is followed (containerd ≥ 1.7); else the list is polled.
    #[serde(default)]
    pub events: bool,
    /// Why the last list failed, while it fails.
    pub last_error: Option<String>,
}

/// One pod, with what enforcer makes of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub qos: String,
    pub ready: bool,
    /// The pod's cgroup (relative to the CPU hierarchy's root), when the index has it.
    pub cgroup: Option<String>,
    pub class: Class,
    pub priority: Option<Priority>,
    pub rule: String,
    pub containers: Vec<String>,
    /// How many of them run, as the runtime listed them last.
    #[serde(default)]
    pub containers_running: usize,
    pub cpu_cores: f64,
    pub cpu_seconds_total: f64,
    /// Hierarchical memory of the pod's cgroup, read when the view is asked for (never at
    /// a tick: 500 pods' `memory.current` ×10/s is what an idle node must not pay).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Bytes through the pod's cgroups (cgroup_skb), per second over the window and in all.
    #[serde(default)]
    pub rx_bytes_per_second: f64,
    #[serde(default)]
    pub tx_bytes_per_second: f64,
    #[serde(default)]
    pub rx_bytes_total: u64,
    #[serde(default)]
    pub tx_bytes_total: u64,
    /// Labels enforcer reads (queue, Spark's, enforcer.io/*), for the operator's eye.
    pub labels: std::collections::BTreeMap<String, String>,
}
