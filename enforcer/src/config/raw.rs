//! The file's shape as serde reads it, and the parsers for typed values (durations,
//! delays, shares, sizes, addresses, regexes) that run during deserialisation so that the
//! error names the field. The two `[daemon]` choices are read as they are, so they are
//! defined here (and re-exported by `daemon`): this module depends on no section.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use regex::Regex;
use serde::{Deserialize, Deserializer};

use super::units::{parse_bytes, parse_duration};
use crate::{
    model::{Class, Priority},
    policy::capacity::Amount,
};

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

// The file's shape. Typed values (durations, addresses, regexes) are parsed during
// deserialisation so that serde_path_to_error can name the field that failed.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) daemon: RawDaemon,
    #[serde(default)]
    pub(super) classify: RawClassify,
    #[serde(default)]
    pub(super) ladder: RawLadder,
    #[serde(default)]
    pub(super) isolation: RawIsolation,
    #[serde(default)]
    pub(super) capacity: RawCapacity,
    #[serde(default)]
    pub(super) network: RawNetwork,
    #[serde(default)]
    pub(super) filesystems: RawFilesystems,
    #[serde(default)]
    pub(super) runtime: RawRuntime,
    #[serde(default)]
    pub(super) kubernetes: RawKubernetes,
}

/// `[kubernetes] enabled`: `"auto"`, `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesSwitch {
    /// On when the daemon runs in a cluster (`KUBERNETES_SERVICE_HOST` set).
    Auto,
    On,
    Off,
}

impl<'de> Deserialize<'de> for KubernetesSwitch {
    // By hand rather than `#[serde(untagged)]`: an untagged enum's error says only "did not
    // match any variant", and the error must say what is accepted.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = KubernetesSwitch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\", true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(if v {
                    KubernetesSwitch::On
                } else {
                    KubernetesSwitch::Off
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "auto" => Ok(KubernetesSwitch::Auto),
                    _ => Err(E::custom(format!(
                        "invalid value {v:?} (expected \"auto\", true or false)"
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    pub(super) enabled: Option<KubernetesSwitch>,
    pub(super) node_name: Option<String>,
    pub(super) taint: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) min_patch_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) timeout: Option<Duration>,
    #[serde(default, deserialize_with = "share")]
    pub(super) dead_band: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    pub(super) enabled: Option<bool>,
    pub(super) socket: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) refresh_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilesystems {
    pub(super) mountpoints: Option<Vec<PathBuf>>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) interval: Option<Duration>,
    pub(super) root: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) enabled: Option<bool>,
    pub(super) shaping: Option<bool>,
    pub(super) interface: Option<String>,
    pub(super) netns: Option<PathBuf>,
    #[serde(default, deserialize_with = "rate")]
    pub(super) capacity: Option<u64>,
    #[serde(default, deserialize_with = "rate")]
    pub(super) host_limit: Option<u64>,
    /// "dynamic" (default) or "static".
    pub(super) policy: Option<String>,
    #[serde(default, deserialize_with = "rate")]
    pub(super) offline_limit: Option<u64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) watermark: Option<f64>,
    #[serde(default, deserialize_with = "rate")]
    pub(super) floor: Option<u64>,
    #[serde(default, deserialize_with = "rate")]
    pub(super) ceiling: Option<u64>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) raise_time: Option<Duration>,
    #[serde(default, deserialize_with = "optional_regex")]
    pub(super) offline_interfaces: Option<Regex>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) reconcile_interval: Option<Duration>,
    #[serde(default, deserialize_with = "share")]
    pub(super) over_share_tolerance: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) dead_band: Option<f64>,
}

/// A link rate in bits per second as `tc` writes it: "100mbit", "20gbit".
pub(super) fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    crate::model::tc::parse_rate(&text)
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid rate {text:?} (expected bits per second, e.g. \"100mbit\", \"20gbit\")"
            ))
        })
}

pub(super) fn optional_regex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
    regex(d).map(Some)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapacity {
    pub(super) enabled: Option<bool>,
    /// "dynamic" (default), "static" or "time_of_day".
    pub(super) policy: Option<String>,
    #[serde(default, deserialize_with = "share")]
    pub(super) cpu_share: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) memory_share: Option<f64>,
    pub(super) schedule: Option<Vec<RawScheduleEntry>>,
    #[serde(default, deserialize_with = "share")]
    pub(super) system_reserve: Option<f64>,
    #[serde(default, deserialize_with = "amount")]
    pub(super) reserved_daemons: Option<Amount>,
    #[serde(default, deserialize_with = "amount")]
    pub(super) memory_floor: Option<Amount>,
    #[serde(default, deserialize_with = "share")]
    pub(super) memory_cap: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) max_step: Option<f64>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) usage_window: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScheduleEntry {
    /// "HH:MM", local time.
    pub(super) start: String,
    #[serde(deserialize_with = "share_required")]
    pub(super) cpu_share: f64,
    #[serde(deserialize_with = "share_required")]
    pub(super) memory_share: f64,
}

pub(super) fn share_required<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    share(d).map(|v| v.unwrap_or_default())
}

/// `"13%"` (of the node's memory) or a size (`"50GiB"`).
pub(super) fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Amount>, D::Error> {
    let text = String::deserialize(d)?;
    if let Some(pct) = text.trim().strip_suffix('%') {
        return match pct.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Some(Amount::Share(p / 100.0))),
            _ => Err(serde::de::Error::custom(format!(
                "invalid share {text:?} (expected e.g. \"13%\", more than 0 and at most 100)"
            ))),
        };
    }
    parse_bytes(&text).map(|b| Some(Amount::Bytes(b))).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid size {text:?} (expected a share of the node's memory like \"13%\", or a size like \"50GiB\")"
        ))
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIsolation {
    pub(super) enabled: Option<bool>,
    pub(super) oom_score_adj: Option<i32>,
    pub(super) nice: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLadder {
    pub(super) enabled: Option<bool>,
    #[serde(default, deserialize_with = "share")]
    pub(super) cpu_trigger: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) cpu_recover: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) memory_trigger: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) memory_recover: Option<f64>,
    #[serde(default, deserialize_with = "share")]
    pub(super) reclaim_stall_trigger: Option<f64>,
    #[serde(default, deserialize_with = "delay")]
    pub(super) sustain: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    pub(super) throttle_after: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    pub(super) freeze_after: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    pub(super) evict_after: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    pub(super) evict_cooldown: Option<Duration>,
    #[serde(default, deserialize_with = "delay")]
    pub(super) recover_hold: Option<Duration>,
    #[serde(default, deserialize_with = "share")]
    pub(super) throttle_cpu_share: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) node_name: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) tick: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) window: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) rescan_interval: Option<Duration>,
    #[serde(default, deserialize_with = "socket_addr")]
    pub(super) metrics_listen: Option<SocketAddr>,
    pub(super) socket: Option<PathBuf>,
    pub(super) top_n: Option<usize>,
    pub(super) hierarchy: Option<HierarchyChoice>,
    pub(super) cgroup_map_entries: Option<u32>,
    pub(super) sampler: Option<SamplerChoice>,
    pub(super) journal: Option<PathBuf>,
    #[serde(default, deserialize_with = "size")]
    pub(super) journal_segment_size: Option<u64>,
    pub(super) journal_segments: Option<usize>,
    pub(super) usage_ledger: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) usage_flush_interval: Option<Duration>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) dry_run: Option<bool>,
    pub(super) lock_memory: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClassify {
    #[serde(default)]
    pub(super) append_defaults: bool,
    pub(super) rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: String,
    /// The path regex; optional for a rule that matches pods.
    #[serde(rename = "match", default, deserialize_with = "optional_regex")]
    pub(super) pattern: Option<Regex>,
    pub(super) class: Class,
    pub(super) priority: Option<Priority>,
    #[serde(default, deserialize_with = "optional_regex")]
    pub(super) namespace: Option<Regex>,
    /// Label → regex its value must match.
    pub(super) labels: Option<std::collections::BTreeMap<String, String>>,
    pub(super) annotations: Option<std::collections::BTreeMap<String, String>>,
    pub(super) qos: Option<String>,
    #[serde(default, deserialize_with = "optional_regex")]
    pub(super) container: Option<Regex>,
    /// `label:<key>` / `annotation:<key>`, read in order.
    pub(super) priority_from: Option<Vec<String>>,
}

/// A size in bytes: `"64MiB"`, `"4KiB"`, `"1048576"`.
pub(super) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    parse_bytes(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid size {text:?} (expected a size like \"64MiB\" or \"4KiB\")"
        ))
    })
}

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} (expected a positive number with a unit, e.g. \"100ms\", \"1s\")"
        ))
    })
}

/// A delay: like a duration, but zero ("0s") is allowed and means "at once".
pub(super) fn delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
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
pub(super) fn share<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    if v > 0.0 && v <= 1.0 {
        Ok(Some(v))
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not a share of the node (expected 0 < x <= 1)"
        )))
    }
}

pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid socket address {text:?} (expected e.g. \"0.0.0.0:9977\")"
        ))
    })
}

pub(super) fn regex<'de, D: Deserializer<'de>>(d: D) -> Result<Regex, D::Error> {
    let text = String::deserialize(d)?;
    Regex::new(&text).map_err(|e| serde::de::Error::custom(format!("invalid regex {text:?}: {e}")))
}
