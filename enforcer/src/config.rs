//! The daemon's configuration file (TOML). Every field is optional; the defaults let
//! `enforcer run` work on a bare host. Bad input is refused with one line naming the file,
//! the field and what is wrong, before anything is started.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use regex::Regex;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

use crate::{
    model::{
        Class, Priority,
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
    /// The classification rules in force (compiled and validated at load).
    pub rules: Arc<RuleSet>,
}

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
            rules: Arc::new(RuleSet::defaults()),
        }
    }
}

// The file's shape. Typed values (durations, addresses, regexes) are parsed during
// deserialisation so that serde_path_to_error can name the field that failed.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    classify: RawClassify,
    #[serde(default)]
    ladder: RawLadder,
    #[serde(default)]
    isolation: RawIsolation,
    #[serde(default)]
    capacity: RawCapacity,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    enabled: Option<bool>,
    /// "dynamic" (default), "static" or "time_of_day".
    policy: Option<String>,
    #[serde(default, deserialize_with = "share")]
    cpu_share: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    memory_share: Option<f64>,
    schedule: Option<Vec<RawScheduleEntry>>,
    #[serde(default, deserialize_with = "share")]
    system_reserve: Option<f64>,
    #[serde(default, deserialize_with = "bytes")]
    reserved_daemons: Option<u64>,
    #[serde(default, deserialize_with = "share")]
    memory_cap: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    max_step: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduleEntry {
    /// "HH:MM", local time.
    start: String,
    #[serde(deserialize_with = "share_required")]
    cpu_share: f64,
    #[serde(deserialize_with = "share_required")]
    memory_share: f64,
}

fn share_required<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    share(d).map(|v| v.unwrap_or_default())
}

/// `50GiB`, `512MiB`, `1073741824`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" | "K" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (number.is_finite() && number >= 0.0).then_some((number * scale) as u64)
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    parse_bytes(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid size {text:?} (expected e.g. \"50GiB\", \"512MiB\")"
        ))
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIsolation {
    enabled: Option<bool>,
    oom_score_adj: Option<i32>,
    nice: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLadder {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "share")]
    cpu_trigger: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    cpu_recover: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    memory_trigger: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    memory_recover: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    reclaim_stall_trigger: Option<f64>,
    #[serde(default, deserialize_with = "delay")]
    sustain: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    throttle_after: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    freeze_after: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    evict_after: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    evict_cooldown: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    recover_hold: Option<Duration>,
    #[serde(default, deserialize_with = "share")]
    throttle_cpu_share: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    node_name: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    tick: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    window: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    rescan_interval: Option<Duration>,
    #[serde(default, deserialize_with = "socket_addr")]
    metrics_listen: Option<SocketAddr>,
    socket: Option<PathBuf>,
    top_n: Option<usize>,
    hierarchy: Option<HierarchyChoice>,
    cgroup_map_entries: Option<u32>,
    journal: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    dry_run: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClassify {
    #[serde(default)]
    append_defaults: bool,
    rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(rename = "match", deserialize_with = "regex")]
    pattern: Regex,
    class: Class,
    priority: Option<Priority>,
}

/// Parses `100ms`, `1.5s`, `2m`, `500us`, `1000ns`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    let seconds = number * scale;
    (seconds.is_finite() && seconds > 0.0 && seconds < 86_400.0)
        .then(|| Duration::from_secs_f64(seconds))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} (expected a positive number with a unit, e.g. \"100ms\", \"1s\")"
        ))
    })
}

/// A delay: like a duration, but zero ("0s") is allowed and means "at once".
fn delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        == "0"
    {
        return Ok(Some(Duration::ZERO));
    }
    parse_duration(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid delay {text:?} (expected e.g. \"0s\", \"500ms\", \"5s\")"
        ))
    })
}

/// A share of the node: a number in (0, 1].
fn share<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    if v > 0.0 && v <= 1.0 {
        Ok(Some(v))
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not a share of the node (expected 0 < x <= 1)"
        )))
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid socket address {text:?} (expected e.g. \"0.0.0.0:9977\")"
        ))
    })
}

fn regex<'de, D: Deserializer<'de>>(d: D) -> Result<Regex, D::Error> {
    let text = String::deserialize(d)?;
    Regex::new(&text).map_err(|e| serde::de::Error::custom(format!("invalid regex {text:?}: {e}")))
}

/// Collapses a message onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
            message: one_line(&message),
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
            rules: Arc::new(rules),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/enforcer.toml"))
    }

    fn error(text: &str) -> String {
        let e = parse(text).expect_err("must be refused").to_string();
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        assert!(e.starts_with("/etc/enforcer.toml: "), "{e}");
        e
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.daemon.tick, Duration::from_millis(100));
        assert_eq!(c.daemon.window, Duration::from_secs(1));
        assert_eq!(c.daemon.metrics_listen.port(), 9977);
        assert_eq!(c.daemon.hierarchy, HierarchyChoice::Auto);
        assert_eq!(c.rules.rules().len(), RuleSet::defaults().rules().len());
    }

    #[test]
    fn a_full_file_is_read() {
        let c = parse(
            r#"
[daemon]
node_name = "n1"
tick = "50ms"
window = "2s"
rescan_interval = "500ms"
metrics_listen = "127.0.0.1:9000"
socket = "/tmp/e.sock"
top_n = 5
hierarchy = "v1"
cgroup_map_entries = 4096

[classify]
append_defaults = true

[[classify.rules]]
name = "spark-p1"
match = 'spark-p1'
class = "offline"
priority = "P1"

[[classify.rules]]
name = "db"
match = '^db/'
class = "online"
"#,
        )
        .unwrap();
        let d = &c.daemon;
        assert_eq!(
            (d.node_name.as_str(), d.tick, d.top_n),
            ("n1", Duration::from_millis(50), 5)
        );
        assert_eq!(d.hierarchy, HierarchyChoice::V1);
        assert_eq!(d.socket, PathBuf::from("/tmp/e.sock"));
        let cls = c.rules.classify("x/spark-p1-exec");
        assert_eq!(
            (cls.class, cls.priority),
            (Class::Offline, Some(Priority::P1))
        );
        assert_eq!(c.rules.classify("db/x").class, Class::Online);
        // Defaults appended after the configured rules.
        assert_eq!(c.rules.classify("yarn/container_1").class, Class::Offline);
        assert_eq!(c.rules.rules().len(), 2 + RuleSet::defaults().rules().len());
    }

    #[test]
    fn configured_rules_replace_the_defaults_unless_appended() {
        let c = parse("[[classify.rules]]\nname = \"a\"\nmatch = \"^a$\"\nclass = \"online\"\n")
            .unwrap();
        assert_eq!(c.rules.rules().len(), 1);
        assert_eq!(c.rules.classify("yarn/container_1").class, Class::System);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = error("[daemon]\nbogus = 1\n");
        assert!(
            e.contains("daemon.bogus") && e.contains("unknown field"),
            "{e}"
        );
        let e = error("nope = 1\n");
        assert!(e.contains("nope") && e.contains("unknown field"), "{e}");
        let e = error("[daemon]\ntop_n = \"x\"\n");
        assert!(
            e.contains("daemon.top_n") && e.contains("invalid type"),
            "{e}"
        );
        let e = error("[daemon]\nmetrics_listen = \"nope\"\n");
        assert!(
            e.contains("daemon.metrics_listen") && e.contains("invalid socket address \"nope\""),
            "{e}"
        );
        let e = error("[daemon]\ntick = \"10 parsecs\"\n");
        assert!(
            e.contains("daemon.tick") && e.contains("invalid duration"),
            "{e}"
        );
        let e = error("[daemon]\ntick = \"0s\"\n");
        assert!(e.contains("daemon.tick"), "{e}");
        let e = error("[daemon]\ntick = \"2s\"\nwindow = \"1s\"\n");
        assert!(e.contains("daemon.window") && e.contains("shorter"), "{e}");
        let e = error("[daemon]\ntop_n = 0\n");
        assert!(e.contains("daemon.top_n"), "{e}");
        let e = error(
            "[[classify.rules]]\nname = \"a\"\nmatch = \"x\"\nclass = \"online\"\npriority = \"P1\"\n",
        );
        assert!(e.contains("classify.rules[0].priority"), "{e}");
        let e = error(
            "[[classify.rules]]\nname = \"a\"\nmatch = \"x\"\nclass = \"offline\"\n[[classify.rules]]\nname = \"b\"\nmatch = \"(\"\nclass = \"offline\"\n",
        );
        assert!(
            e.contains("classify.rules[1].match") && e.contains("invalid regex"),
            "{e}"
        );
        let e = error("[[classify.rules]]\nname = \"a\"\nmatch = \"x\"\nclass = \"sometimes\"\n");
        assert!(
            e.contains("classify.rules[0].class") && e.contains("unknown variant"),
            "{e}"
        );
        let e = error("[daemon\ntick = 1\n");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn ladder_section() {
        let c = parse("[ladder]\ncpu_trigger = 0.5\ncpu_recover = 0.4\nsustain = \"0s\"\nevict_after = \"1s\"\n").unwrap();
        assert_eq!(c.protection.ladder.cpu_trigger, 0.5);
        assert_eq!(c.protection.ladder.sustain, Duration::ZERO);
        assert_eq!(c.protection.ladder.evict_after, Duration::from_secs(1));
        let e = error("[ladder]\ncpu_trigger = 0.5\n");
        assert!(
            e.contains("ladder.cpu_recover") && e.contains("flap"),
            "{e}"
        );
        let e = error("[ladder]\ncpu_trigger = 1.5\n");
        assert!(
            e.contains("ladder.cpu_trigger") && e.contains("share"),
            "{e}"
        );
        let e = error("[ladder]\nsustain = \"later\"\n");
        assert!(
            e.contains("ladder.sustain") && e.contains("invalid delay"),
            "{e}"
        );
    }

    #[test]
    fn capacity_section() {
        let c = parse("[capacity]\npolicy = \"static\"\ncpu_share = 0.4\nmemory_share = 0.3\nreserved_daemons = \"40GiB\"\n").unwrap();
        assert_eq!(
            c.capacity.rule.policy,
            Policy::Static {
                cpu_share: 0.4,
                memory_share: 0.3
            }
        );
        assert_eq!(c.capacity.rule.reserved_daemons_bytes, 40 << 30);
        let c = parse("[capacity]\npolicy = \"time_of_day\"\n[[capacity.schedule]]\nstart = \"09:00\"\ncpu_share = 0.2\nmemory_share = 0.2\n[[capacity.schedule]]\nstart = \"03:00\"\ncpu_share = 0.6\nmemory_share = 0.5\n").unwrap();
        match c.capacity.rule.policy {
            Policy::TimeOfDay(s) => assert_eq!(
                s.iter().map(|e| e.start_minute).collect::<Vec<_>>(),
                [180, 540]
            ),
            p => panic!("{p:?}"),
        }
        let e = error("[capacity]\npolicy = \"static\"\ncpu_share = 0.4\n");
        assert!(
            e.contains("capacity.memory_share") && e.contains("required"),
            "{e}"
        );
        let e = error(
            "[capacity]\npolicy = \"time_of_day\"\n[[capacity.schedule]]\nstart = \"25:00\"\ncpu_share = 0.2\nmemory_share = 0.2\n",
        );
        assert!(e.contains("capacity.schedule[0].start"), "{e}");
        let e = error("[capacity]\nreserved_daemons = \"lots\"\n");
        assert!(
            e.contains("capacity.reserved_daemons") && e.contains("invalid size"),
            "{e}"
        );
        let e = error("[capacity]\npolicy = \"greedy\"\n");
        assert!(e.contains("capacity.policy"), "{e}");
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        for bad in ["", "ms", "10", "-1s", "1 parsec", "0ms", "1e3s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn unreadable_file_is_one_line() {
        let e = Config::load(Path::new("/nonexistent/enforcer.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/enforcer.toml: cannot read:"),
            "{e}"
        );
    }
}
