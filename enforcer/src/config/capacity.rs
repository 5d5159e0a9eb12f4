//! The `[capacity]` section: offline capacity on the offline parents, its policy (dynamic,
//! static or by time of day), and its checks.

use super::{error::ConfigError, raw::RawCapacity};
use crate::policy::capacity::{CapacityConfig, Policy, ScheduleEntry};

/// Offline capacity applied to the offline parents (SPEC §2).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySettings {
    pub enabled: bool,
    pub rule: CapacityConfig,
    /// The rule is fed the peak of the online usage over this window, not the last tick's
    /// figure: the capacity follows a surge at once but a dip only once it has lasted, so
    /// the limits move with the online load rather than with its noise.
    pub usage_window: std::time::Duration,
}

/// The default `capacity.usage_window`.
pub const USAGE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for CapacitySettings {
    fn default() -> Self {
        CapacitySettings {
            enabled: true,
            rule: CapacityConfig::default(),
            usage_window: USAGE_WINDOW,
        }
    }
}

/// Minutes after midnight of "HH:MM" (one or two digits each, 00:00 to 23:59). Only
/// digits: `u32::from_str` would also take "+9", and "9:75" would be 10:15.
fn start_minute(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let part = |p: &str, below: u32| {
        (matches!(p.len(), 1 | 2) && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
            .filter(|&v| v < below)
    };
    Some(part(h, 24)? * 60 + part(m, 60)?)
}

/// Builds and checks the section; `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    c: RawCapacity,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<CapacitySettings, ConfigError> {
    let d = CapacityConfig::default();
    let policy = match c.policy.as_deref().unwrap_or("dynamic") {
        "dynamic" => Policy::Dynamic,
        "static" => Policy::Static {
            cpu_share: c.cpu_share.ok_or_else(|| {
                invalid(
                    "capacity.cpu_share".into(),
                    "required with policy = \"static\"".into(),
                )
            })?,
            memory_share: c.memory_share.ok_or_else(|| {
                invalid(
                    "capacity.memory_share".into(),
                    "required with policy = \"static\"".into(),
                )
            })?,
        },
        "time_of_day" => {
            let entries = c.schedule.unwrap_or_default();
            if entries.is_empty() {
                return Err(invalid(
                    "capacity.schedule".into(),
                    "required with policy = \"time_of_day\"".into(),
                ));
            }
            let mut schedule = Vec::with_capacity(entries.len());
            for (i, e) in entries.into_iter().enumerate() {
                let minute = start_minute(&e.start).ok_or_else(|| {
                    invalid(
                        format!("capacity.schedule[{i}].start"),
                        format!("invalid time {:?} (expected \"HH:MM\")", e.start),
                    )
                })?;
                schedule.push(ScheduleEntry {
                    start_minute: minute,
                    cpu_share: e.cpu_share,
                    memory_share: e.memory_share,
                });
            }
            schedule.sort_by_key(|e| e.start_minute);
            Policy::TimeOfDay(schedule)
        }
        other => {
            return Err(invalid(
                "capacity.policy".into(),
                format!(
                    "unknown policy {other:?} (expected \"dynamic\", \"static\" or \"time_of_day\")"
                ),
            ));
        }
    };
    let usage_window = c.usage_window.unwrap_or(USAGE_WINDOW);
    if usage_window > std::time::Duration::from_secs(600) {
        return Err(invalid(
            "capacity.usage_window".into(),
            format!(
                "{usage_window:?} is too long (at most 10m: offline capacity would lag the online load by that much)"
            ),
        ));
    }
    Ok(CapacitySettings {
        enabled: c.enabled.unwrap_or(true),
        usage_window,
        rule: CapacityConfig {
            policy,
            system_reserve: c.system_reserve.unwrap_or(d.system_reserve),
            reserved_daemons: c.reserved_daemons.unwrap_or(d.reserved_daemons),
            memory_floor: c.memory_floor.unwrap_or(d.memory_floor),
            memory_cap: c.memory_cap.unwrap_or(d.memory_cap),
            max_step: c.max_step.unwrap_or(d.max_step),
        },
    })
}
