//! The `[ladder]` and `[isolation]` sections: the protection ladder's thresholds and delays,
//! what every offline process gets, and their checks.

use super::{
    error::ConfigError,
    raw::{RawIsolation, RawLadder},
};
use crate::policy::ladder::LadderConfig;

/// The protection ladder (SPEC §4).
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectionConfig {
    pub enabled: bool,
    pub ladder: LadderConfig,
    /// Offline CPU quota while throttled, as a share of the node, split among the offline
    /// parent cgroups.
    pub throttle_cpu_share: f64,
    pub isolation: IsolationConfig,
}

/// SPEC §3: what every offline process gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolationConfig {
    pub enabled: bool,
    /// -1000..=1000; the OOM killer's preference.
    pub oom_score_adj: i32,
    /// -20..=19; online work keeps its own (lower) value.
    pub nice: i32,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        IsolationConfig {
            enabled: true,
            oom_score_adj: 1000,
            nice: 10,
        }
    }
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        ProtectionConfig {
            enabled: true,
            ladder: LadderConfig::default(),
            throttle_cpu_share: 0.05,
            isolation: IsolationConfig::default(),
        }
    }
}

/// Builds both sections and checks `[isolation]`; the ladder's thresholds are checked by
/// [`check_ladder`]. `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    l: RawLadder,
    isolation: RawIsolation,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<ProtectionConfig, ConfigError> {
    let d = ProtectionConfig::default();
    let dl = d.ladder;
    let protection = ProtectionConfig {
        enabled: l.enabled.unwrap_or(d.enabled),
        throttle_cpu_share: l.throttle_cpu_share.unwrap_or(d.throttle_cpu_share),
        isolation: IsolationConfig {
            enabled: isolation.enabled.unwrap_or(d.isolation.enabled),
            oom_score_adj: isolation.oom_score_adj.unwrap_or(d.isolation.oom_score_adj),
            nice: isolation.nice.unwrap_or(d.isolation.nice),
        },
        ladder: LadderConfig {
            cpu_trigger: l.cpu_trigger.unwrap_or(dl.cpu_trigger),
            cpu_recover: l.cpu_recover.unwrap_or(dl.cpu_recover),
            memory_trigger: l.memory_trigger.unwrap_or(dl.memory_trigger),
            memory_recover: l.memory_recover.unwrap_or(dl.memory_recover),
            reclaim_stall_trigger: l.reclaim_stall_trigger.unwrap_or(dl.reclaim_stall_trigger),
            sustain: l.sustain.unwrap_or(dl.sustain),
            throttle_after: l.throttle_after.unwrap_or(dl.throttle_after),
            freeze_after: l.freeze_after.unwrap_or(dl.freeze_after),
            evict_after: l.evict_after.unwrap_or(dl.evict_after),
            evict_cooldown: l.evict_cooldown.unwrap_or(dl.evict_cooldown),
            recover_hold: l.recover_hold.unwrap_or(dl.recover_hold),
        },
    };
    let iso = &protection.isolation;
    if !(-1000..=1000).contains(&iso.oom_score_adj) {
        return Err(invalid(
            "isolation.oom_score_adj".into(),
            format!("{} is out of range -1000..=1000", iso.oom_score_adj),
        ));
    }
    if !(-20..=19).contains(&iso.nice) {
        return Err(invalid(
            "isolation.nice".into(),
            format!("{} is out of range -20..=19", iso.nice),
        ));
    }
    Ok(protection)
}

/// Each recovery threshold must be below its trigger.
pub(super) fn check_ladder(
    lc: &LadderConfig,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (field, recover, trigger) in [
        ("ladder.cpu_recover", lc.cpu_recover, lc.cpu_trigger),
        (
            "ladder.memory_recover",
            lc.memory_recover,
            lc.memory_trigger,
        ),
    ] {
        if recover >= trigger {
            return Err(invalid(
                field.into(),
                format!("{recover} must be below its trigger ({trigger}) or the ladder would flap"),
            ));
        }
    }
    Ok(())
}
