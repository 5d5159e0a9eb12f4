//! The daemon's configuration file (TOML). Every field is optional; the defaults let
//! `enforcer run` work on a bare host. Bad input is refused with one line naming the file,
//! the field and what is wrong, before anything is started.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;
use thiserror::Error;

use crate::{
    model::{
        Class,
        classify::{Rule, RuleSet},
    },
    policy::{
        capacity::{CapacityConfig, Policy, ScheduleEntry},
        ladder::LadderConfig,
    },
};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// `field` is the dotted path (`daemon.tick`, `classify.rules[1].match`) or `line N`.
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

/// Where CPU figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerChoice {
    /// The eBPF sched_switch sampler (the default).
    Ebpf,
    /// Polling cpuacct/cpu.stat and /proc/stat every tick, as polling agents do: a baseline
    /// for benchmarks and a fallback where the programs cannot load.
    Cgroupfs,
}

/// Which cgroup identity the CPU sampler charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HierarchyChoice {
    /// cgroup2 when the cpu controller is enabled there, else the v1 cpu hierarchy.
    Auto,
    Unified,
    V1,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub node_name: String,
    pub tick: Duration,
    pub window: Duration,
    pub rescan_interval: Duration,
    pub metrics_listen: SocketAddr,
    pub socket: PathBuf,
    pub top_n: usize,
    pub hierarchy: HierarchyChoice,
    pub cgroup_map_entries: u32,
    pub sampler: SamplerChoice,
    /// Append-only action journal.
    pub journal: PathBuf,
    /// Node-local state for other agents (the scheduling gate file).
    pub state_dir: PathBuf,
    /// Decide and journal every action without applying any.
    pub dry_run: bool,
}

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

/// Offline capacity applied to the offline parents (SPEC §2).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySettings {
    pub enabled: bool,
    pub rule: CapacityConfig,
}

impl Default for CapacitySettings {
    fn default() -> Self {
        CapacitySettings {
            enabled: true,
            rule: CapacityConfig::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub protection: ProtectionConfig,
    pub capacity: CapacitySettings,
    pub network: NetworkConfig,
    /// The classification rules in force (compiled and validated at load).
    pub rules: Arc<RuleSet>,
}

mod network;
mod raw;

pub use network::NetworkConfig;

use raw::RawConfig;
pub use raw::{parse_bytes, parse_duration};

pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9977";
pub const DEFAULT_SOCKET: &str = "/run/enforcer/enforcer.sock";
pub const DEFAULT_JOURNAL: &str = "/var/lib/enforcer/journal.jsonl";
pub const DEFAULT_STATE_DIR: &str = "/run/enforcer";

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            node_name: hostname(),
            tick: Duration::from_millis(100),
            window: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(1),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().expect("valid default"),
            socket: PathBuf::from(DEFAULT_SOCKET),
            top_n: 20,
            hierarchy: HierarchyChoice::Auto,
            cgroup_map_entries: enforcer_common::CPU_NS_DEFAULT_ENTRIES,
            sampler: SamplerChoice::Ebpf,
            journal: PathBuf::from(DEFAULT_JOURNAL),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            dry_run: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            daemon: DaemonConfig::default(),
            protection: ProtectionConfig::default(),
            capacity: CapacitySettings::default(),
            network: NetworkConfig::default(),
            rules: Arc::new(RuleSet::defaults()),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let file = origin.display().to_string();
        let invalid = |field: String, message: String| ConfigError::Invalid {
            file: file.clone(),
            field,
            message: crate::text::one_line(&message),
        };
        let de = toml::de::Deserializer::parse(text).map_err(|e| {
            let field = e.span().map_or("syntax".to_string(), |s| {
                format!("line {}", line_of(text, s.start))
            });
            invalid(field, e.message().to_string())
        })?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner();
            let line = inner
                .span()
                .map(|s| format!(" (line {})", line_of(text, s.start)));
            let field = if path == "." {
                "config".to_string()
            } else {
                path
            };
            invalid(
                format!("{field}{}", line.unwrap_or_default()),
                inner.message().to_string(),
            )
        })?;

        let defaults = DaemonConfig::default();
        let r = raw.daemon;
        let daemon = DaemonConfig {
            node_name: r.node_name.unwrap_or(defaults.node_name),
            tick: r.tick.unwrap_or(defaults.tick),
            window: r.window.unwrap_or(defaults.window),
            rescan_interval: r.rescan_interval.unwrap_or(defaults.rescan_interval),
            metrics_listen: r.metrics_listen.unwrap_or(defaults.metrics_listen),
            socket: r.socket.unwrap_or(defaults.socket),
            top_n: r.top_n.unwrap_or(defaults.top_n),
            hierarchy: r.hierarchy.unwrap_or(defaults.hierarchy),
            cgroup_map_entries: r.cgroup_map_entries.unwrap_or(defaults.cgroup_map_entries),
            sampler: r.sampler.unwrap_or(defaults.sampler),
            journal: r.journal.unwrap_or(defaults.journal),
            state_dir: r.state_dir.unwrap_or(defaults.state_dir),
            dry_run: r.dry_run.unwrap_or(defaults.dry_run),
        };
        let protection = {
            let d = ProtectionConfig::default();
            let l = raw.ladder;
            let dl = d.ladder;
            ProtectionConfig {
                enabled: l.enabled.unwrap_or(d.enabled),
                throttle_cpu_share: l.throttle_cpu_share.unwrap_or(d.throttle_cpu_share),
                isolation: IsolationConfig {
                    enabled: raw.isolation.enabled.unwrap_or(d.isolation.enabled),
                    oom_score_adj: raw
                        .isolation
                        .oom_score_adj
                        .unwrap_or(d.isolation.oom_score_adj),
                    nice: raw.isolation.nice.unwrap_or(d.isolation.nice),
                },
                ladder: LadderConfig {
                    cpu_trigger: l.cpu_trigger.unwrap_or(dl.cpu_trigger),
                    cpu_recover: l.cpu_recover.unwrap_or(dl.cpu_recover),
                    memory_trigger: l.memory_trigger.unwrap_or(dl.memory_trigger),
                    memory_recover: l.memory_recover.unwrap_or(dl.memory_recover),
                    reclaim_stall_trigger: l
                        .reclaim_stall_trigger
                        .unwrap_or(dl.reclaim_stall_trigger),
                    sustain: l.sustain.unwrap_or(dl.sustain),
                    throttle_after: l.throttle_after.unwrap_or(dl.throttle_after),
                    freeze_after: l.freeze_after.unwrap_or(dl.freeze_after),
                    evict_after: l.evict_after.unwrap_or(dl.evict_after),
                    evict_cooldown: l.evict_cooldown.unwrap_or(dl.evict_cooldown),
                    recover_hold: l.recover_hold.unwrap_or(dl.recover_hold),
                },
            }
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
        let capacity = {
            let c = raw.capacity;
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
                        let minute = e
                            .start
                            .split_once(':')
                            .and_then(|(h, m)| {
                                Some(h.parse::<u32>().ok()? * 60 + m.parse::<u32>().ok()?)
                            })
                            .filter(|&m| m < 24 * 60)
                            .ok_or_else(|| {
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
            CapacitySettings {
                enabled: c.enabled.unwrap_or(true),
                rule: CapacityConfig {
                    policy,
                    system_reserve: c.system_reserve.unwrap_or(d.system_reserve),
                    reserved_daemons_bytes: c.reserved_daemons.unwrap_or(d.reserved_daemons_bytes),
                    memory_cap: c.memory_cap.unwrap_or(d.memory_cap),
                    max_step: c.max_step.unwrap_or(d.max_step),
                },
            }
        };
        let lc = &protection.ladder;
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
                    format!(
                        "{recover} must be below its trigger ({trigger}) or the ladder would flap"
                    ),
                ));
            }
        }
        if daemon.window < daemon.tick {
            return Err(invalid(
                "daemon.window".into(),
                format!(
                    "{:?} is shorter than daemon.tick ({:?})",
                    daemon.window, daemon.tick
                ),
            ));
        }
        if daemon.rescan_interval < daemon.tick {
            return Err(invalid(
                "daemon.rescan_interval".into(),
                format!(
                    "{:?} is shorter than daemon.tick ({:?})",
                    daemon.rescan_interval, daemon.tick
                ),
            ));
        }
        if !(1..=1000).contains(&daemon.top_n) {
            return Err(invalid(
                "daemon.top_n".into(),
                format!("{} is out of range 1..=1000", daemon.top_n),
            ));
        }
        if !(1024..=1_048_576).contains(&daemon.cgroup_map_entries) {
            return Err(invalid(
                "daemon.cgroup_map_entries".into(),
                format!(
                    "{} is out of range 1024..=1048576",
                    daemon.cgroup_map_entries
                ),
            ));
        }
        if daemon.node_name.trim().is_empty() {
            return Err(invalid(
                "daemon.node_name".into(),
                "must not be empty".into(),
            ));
        }

        let network = network::parse(raw.network, &invalid)?;

        let rules = match raw.classify.rules {
            None => RuleSet::defaults(),
            Some(raw_rules) => {
                let mut rules = Vec::with_capacity(raw_rules.len());
                for (i, rule) in raw_rules.into_iter().enumerate() {
                    if rule.priority.is_some() && rule.class != Class::Offline {
                        return Err(invalid(
                            format!("classify.rules[{i}].priority"),
                            format!(
                                "only offline rules have a priority (this rule's class is {})",
                                rule.class
                            ),
                        ));
                    }
                    if rule.name.trim().is_empty() {
                        return Err(invalid(
                            format!("classify.rules[{i}].name"),
                            "must not be empty".into(),
                        ));
                    }
                    rules.push(Rule {
                        name: rule.name,
                        pattern: rule.pattern,
                        class: rule.class,
                        priority: rule.priority,
                    });
                }
                if raw.classify.append_defaults {
                    rules.extend(RuleSet::default_rules());
                }
                RuleSet::new(rules)
            }
        };
        Ok(Config {
            daemon,
            protection,
            capacity,
            network,
            rules: Arc::new(rules),
        })
    }
}

#[cfg(test)]
mod tests;
