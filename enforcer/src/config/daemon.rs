//! The `[daemon]` section: node identity, timing, endpoints, the CPU sampler, and its checks.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{error::ConfigError, raw::RawDaemon};

pub use super::raw::{HierarchyChoice, SamplerChoice};

pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9977";
pub const DEFAULT_SOCKET: &str = "/run/enforcer/enforcer.sock";
pub const DEFAULT_JOURNAL: &str = "/var/lib/enforcer/journal.jsonl";
pub const DEFAULT_STATE_DIR: &str = "/run/enforcer";

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

/// Builds and checks the section; `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    r: RawDaemon,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<DaemonConfig, ConfigError> {
    let defaults = DaemonConfig::default();
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
    Ok(daemon)
}
