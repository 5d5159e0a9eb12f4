//! The `[kubernetes]` section: the node's Node object in the API server, where the ladder's
//! "stop scheduling" step (a `NoSchedule` taint and a node condition) and the offline
//! capacity (annotations) are published for the schedulers that read Kubernetes rather
//! than the state file.

use std::time::Duration;

pub use super::raw::KubernetesSwitch;
use super::{error::ConfigError, raw::RawKubernetes};

/// The taint put on the Node while the scheduling gate is closed.
pub const DEFAULT_TAINT: &str = "enforcer.io/offline-closed";

#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    /// `auto` (the default): on when the daemon runs in a cluster (`KUBERNETES_SERVICE_HOST`
    /// is set, as in every pod); `true`; `false`.
    pub enabled: KubernetesSwitch,
    /// The Node to patch; `None`: `NODE_NAME` (the downward API's `spec.nodeName`), else
    /// `daemon.node_name`.
    pub node_name: Option<String>,
    /// The taint's key (effect `NoSchedule`).
    pub taint: String,
    /// At most one patch of each kind in this time, except the gate's, which go at once: a
    /// Node write wakes every watcher of Nodes in the cluster (schedulers, controllers).
    pub min_patch_interval: Duration,
    /// The longest one request to the API server may take. Requests are made on their own
    /// thread: a slow API server never delays a tick, it only delays the Node's update.
    pub timeout: Duration,
    /// Capacity changes smaller than this share of the value published are not sent.
    pub dead_band: f64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            enabled: KubernetesSwitch::Auto,
            node_name: None,
            taint: DEFAULT_TAINT.to_string(),
            min_patch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            dead_band: 0.05,
        }
    }
}

impl KubernetesConfig {
    /// Whether the Node is to be patched, given whether the daemon runs in a cluster.
    pub fn wanted(&self, in_cluster: bool) -> bool {
        match self.enabled {
            KubernetesSwitch::Auto => in_cluster,
            KubernetesSwitch::On => true,
            KubernetesSwitch::Off => false,
        }
    }

    /// The Node's name: configured, else `NODE_NAME` from the environment (`env_node_name`,
    /// passed in so that this stays a pure function), else the daemon's node name.
    pub fn node_name(&self, env_node_name: Option<&str>, daemon_node_name: &str) -> String {
        self.node_name
            .clone()
            .or_else(|| {
                env_node_name
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| daemon_node_name.to_string())
    }
}

/// A DNS-1123 subdomain (what a Node's name is): at most 253 characters, lower-case
/// alphanumerics, `-` and `.`, starting and ending alphanumeric. The name goes into the
/// request's path, so anything else is refused rather than sent.
pub fn is_dns_subdomain(name: &str) -> bool {
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.starts_with(edge)
        && name.ends_with(edge)
        && name.chars().all(|c| edge(c) || c == '-' || c == '.')
}

/// A qualified name as a taint key has it: `[prefix/]name`, the name at most 63
/// characters of alphanumerics, `-`, `_` and `.` (alphanumeric at both ends), the prefix a
/// DNS subdomain.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let edge = |c: char| c.is_ascii_alphanumeric();
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(edge)
        && name.ends_with(edge)
        && name
            .chars()
            .all(|c| edge(c) || c == '-' || c == '_' || c == '.');
    name_ok && prefix.is_none_or(is_dns_subdomain)
}

/// Builds and checks the section; `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    r: RawKubernetes,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<KubernetesConfig, ConfigError> {
    let d = KubernetesConfig::default();
    let c = KubernetesConfig {
        enabled: r.enabled.unwrap_or(d.enabled),
        node_name: r.node_name,
        taint: r.taint.unwrap_or(d.taint),
        min_patch_interval: r.min_patch_interval.unwrap_or(d.min_patch_interval),
        timeout: r.timeout.unwrap_or(d.timeout),
        dead_band: r.dead_band.unwrap_or(d.dead_band),
    };
    if let Some(name) = &c.node_name
        && !is_dns_subdomain(name)
    {
        return Err(invalid(
            "kubernetes.node_name".into(),
            format!(
                "{name:?} is not a Kubernetes node name (lower-case letters, digits, '-' and '.', at most 253)"
            ),
        ));
    }
    if !is_qualified_name(&c.taint) {
        return Err(invalid(
            "kubernetes.taint".into(),
            format!(
                "{:?} is not a taint key (expected [prefix/]name, e.g. \"{DEFAULT_TAINT}\")",
                c.taint
            ),
        ));
    }
    if c.min_patch_interval < Duration::from_secs(1) {
        return Err(invalid(
            "kubernetes.min_patch_interval".into(),
            format!(
                "{:?} is too short (at least 1s: every patch wakes every watcher of Nodes)",
                c.min_patch_interval
            ),
        ));
    }
    if c.timeout < Duration::from_millis(100) || c.timeout > Duration::from_secs(60) {
        return Err(invalid(
            "kubernetes.timeout".into(),
            format!("{:?} is out of range (100ms to 60s)", c.timeout),
        ));
    }
    if c.dead_band > 0.5 {
        return Err(invalid(
            "kubernetes.dead_band".into(),
            format!(
                "{} is too wide (at most 0.5: capacity moves within it would never be published)",
                c.dead_band
            ),
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_taint_keys() {
        assert!(is_dns_subdomain("node-1.example"));
        assert!(!is_dns_subdomain("Node-1"));
        assert!(!is_dns_subdomain("a/b"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
        assert!(is_qualified_name(DEFAULT_TAINT));
        assert!(is_qualified_name("offline_Closed"));
        assert!(!is_qualified_name("enforcer.io/"));
        assert!(!is_qualified_name("Enforcer.io/x"));
        assert!(!is_qualified_name("a/b/c"));
    }

    #[test]
    fn the_node_name_falls_back_to_the_environment_then_the_daemon() {
        let mut c = KubernetesConfig::default();
        assert_eq!(c.node_name(Some("k8s-node"), "host"), "k8s-node");
        assert_eq!(c.node_name(Some(" "), "host"), "host");
        assert_eq!(c.node_name(None, "host"), "host");
        c.node_name = Some("set".into());
        assert_eq!(c.node_name(Some("k8s-node"), "host"), "set");
    }

    #[test]
    fn the_documented_example_states_the_defaults() {
        let c = crate::config::Config::parse(
            include_str!("../../../deploy/enforcer.toml"),
            std::path::Path::new("deploy/enforcer.toml"),
        )
        .unwrap();
        assert_eq!(c.kubernetes, KubernetesConfig::default());
    }

    #[test]
    fn auto_follows_the_cluster() {
        let mut c = KubernetesConfig::default();
        assert!(c.wanted(true) && !c.wanted(false));
        c.enabled = KubernetesSwitch::On;
        assert!(c.wanted(false));
        c.enabled = KubernetesSwitch::Off;
        assert!(!c.wanted(true));
    }
}
