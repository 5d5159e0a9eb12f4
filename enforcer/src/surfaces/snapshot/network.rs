//! What the surfaces show of the network: bytes per class and cgroup, per interface, the
//! offline limits, tc health, and the answer to `enforcer tc show|apply`.

use serde::{Deserialize, Serialize};

use crate::model::{
    Class, Priority,
    tc::survey::{Applied, Survey},
};

/// Network sight and shaping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkSnapshot {
    #[serde(flatten)]
    pub view: NetworkView,
    /// Bytes per class and priority (cgroup_skb, loopback excluded).
    pub classes: Vec<ClassNet>,
    /// Cgroups that sent or received anything, most bytes per second first (possibly
    /// truncated like `cgroups`).
    pub cgroups: Vec<CgroupNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassNet {
    pub class: Class,
    pub priority: Option<Priority>,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub rx_bytes_per_second: f64,
    pub tx_bytes_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CgroupNet {
    /// The cgroup2 id (the one `bpf_skb_cgroup_id` returns).
    pub id: u64,
    pub path: String,
    pub class: Class,
    pub priority: Option<Priority>,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub rx_bytes_per_second: f64,
    pub tx_bytes_per_second: f64,
}

/// Both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Directions {
    pub egress: f64,
    pub ingress: f64,
}

/// An interface's traffic, from netlink.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterfaceTraffic {
    pub name: String,
    pub namespace: String,
    pub kind: String,
    pub class: String,
    pub shaped: bool,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub rx_bytes_per_second: f64,
    pub tx_bytes_per_second: f64,
}

/// tc passes so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TcHealth {
    pub passes_total: u64,
    pub changes_total: u64,
    pub failures_total: u64,
    pub refused_total: u64,
    pub last_pass_seconds: f64,
    /// Interfaces enforcer shapes (bond, offline subinterfaces, their IFBs).
    pub managed: usize,
    pub conflicts: Vec<String>,
    pub last_error: Option<String>,
}

/// What the surfaces show of the network, refreshed by the controller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkView {
    pub enabled: bool,
    pub shaping: bool,
    pub dry_run: bool,
    pub interface: String,
    pub interface_present: bool,
    pub capacity_bytes_per_second: u64,
    /// The limits the policy wants now.
    pub offline_limit_target: Directions,
    /// The limits in force in the kernel.
    pub offline_limit: Directions,
    pub online_rate: Directions,
    pub offline_rate: Directions,
    /// Offline traffic above its share (SPEC §5 "network traffic anomaly").
    pub offline_over_share: bool,
    pub offline_over_share_seconds_total: f64,
    pub interfaces: Vec<InterfaceTraffic>,
    pub tc: TcHealth,
}

/// `enforcer tc show` / `enforcer tc apply [--dry-run]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcRequest {
    pub apply: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TcReport {
    pub interface: String,
    pub limits: Directions,
    pub survey: Survey,
    /// What a non-dry-run apply did.
    pub applied: Option<Applied>,
    pub dry_run: bool,
}
