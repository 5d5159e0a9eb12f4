//! The `[network]` section: what to shape, the offline bandwidth rule, and its checks.

use std::{path::PathBuf, time::Duration};

use super::{error::ConfigError, raw::RawNetwork};
use crate::policy::bandwidth::{BandwidthRule, LimitPolicy};

/// Network sight and shaping (SPEC §3, network).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Count bytes per cgroup (cgroup_skb) and per interface.
    pub enabled: bool,
    /// Program tc on the interface and the offline subinterfaces.
    pub shaping: bool,
    /// The bond (or NIC) pods' macvlans hang off.
    pub interface: String,
    /// The namespace holding `interface` (None: the daemon's own).
    pub netns: Option<PathBuf>,
    /// The rule for the offline limit (both directions).
    pub rule: BandwidthRule,
    /// Host traffic cap on the interface, bytes per second.
    pub host_limit: u64,
    /// Subinterfaces whose name matches are offline whatever their namespace.
    pub offline_interfaces: Option<regex::Regex>,
    /// Full discovery and reconcile.
    pub reconcile_interval: Duration,
    pub over_share_tolerance: f64,
    /// Relative rise of the limit below which classes are not rewritten.
    pub dead_band: f64,
}

const GBIT: u64 = 125_000_000;

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            shaping: true,
            interface: "bond0".into(),
            netns: None,
            rule: BandwidthRule {
                policy: LimitPolicy::Dynamic,
                // Two bonded 10 GbE NICs (SPEC §1).
                capacity: 20 * GBIT,
                watermark: 0.8,
                floor: GBIT / 10,
                ceiling: 10 * GBIT,
                raise_time_ns: 5_000_000_000,
            },
            host_limit: 10 * GBIT,
            offline_interfaces: None,
            reconcile_interval: Duration::from_secs(1),
            over_share_tolerance: 0.1,
            dead_band: 0.05,
        }
    }
}

/// Builds and checks the section; `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    n: RawNetwork,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<NetworkConfig, ConfigError> {
    let d = NetworkConfig::default();
    let policy = match n.policy.as_deref().unwrap_or("dynamic") {
        "dynamic" => LimitPolicy::Dynamic,
        "static" => LimitPolicy::Static(n.offline_limit.ok_or_else(|| {
            invalid(
                "network.offline_limit".into(),
                "required with policy = \"static\"".into(),
            )
        })?),
        other => {
            return Err(invalid(
                "network.policy".into(),
                format!("unknown policy {other:?} (expected \"dynamic\" or \"static\")"),
            ));
        }
    };
    let rule = BandwidthRule {
        policy,
        capacity: n.capacity.unwrap_or(d.rule.capacity),
        watermark: n.watermark.unwrap_or(d.rule.watermark),
        floor: n.floor.unwrap_or(d.rule.floor),
        ceiling: n.ceiling.unwrap_or(d.rule.ceiling),
        raise_time_ns: n
            .raise_time
            .map_or(d.rule.raise_time_ns, |t| t.as_nanos() as u64),
    };
    let interface = n.interface.unwrap_or(d.interface);
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
        return Err(invalid(
            "network.interface".into(),
            format!(
                "{interface:?} is not an interface name (1 to 15 characters, no '/' or spaces)"
            ),
        ));
    }
    if rule.floor > rule.ceiling {
        return Err(invalid(
            "network.floor".into(),
            "is above network.ceiling".into(),
        ));
    }
    if rule.ceiling > rule.capacity {
        return Err(invalid(
            "network.ceiling".into(),
            "is above network.capacity".into(),
        ));
    }
    if let LimitPolicy::Static(limit) = policy
        && limit > rule.capacity
    {
        return Err(invalid(
            "network.offline_limit".into(),
            "is above network.capacity".into(),
        ));
    }
    Ok(NetworkConfig {
        enabled: n.enabled.unwrap_or(d.enabled),
        shaping: n.shaping.unwrap_or(d.shaping),
        interface,
        netns: n.netns,
        rule,
        host_limit: n.host_limit.unwrap_or(d.host_limit),
        offline_interfaces: n.offline_interfaces,
        reconcile_interval: n.reconcile_interval.unwrap_or(d.reconcile_interval),
        over_share_tolerance: n.over_share_tolerance.unwrap_or(d.over_share_tolerance),
        dead_band: n.dead_band.unwrap_or(d.dead_band),
    })
}
