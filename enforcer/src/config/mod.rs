//! The daemon's configuration file (TOML). Every field is optional; the defaults let
//! `enforcer run` work on a bare host. Bad input is refused with one line naming the file,
//! the field and what is wrong, before anything is started.
//!
//! One file per section (its typed struct, defaults, conversion from its raw part and its
//! checks); `raw` is the file's shape as serde reads it, `units` the size and duration
//! parsers, `error` the error every section reports through. Sections depend on `error`,
//! `raw` and `units` only; this module ties them together.

use std::{path::Path, sync::Arc};

use crate::model::classify::RuleSet;

mod capacity;
mod daemon;
mod error;
mod filesystems;
mod kubernetes;
mod network;
mod protection;
mod raw;
mod rules;
mod runtime;
mod units;

pub use capacity::CapacitySettings;
pub use daemon::{
    DEFAULT_JOURNAL, DEFAULT_JOURNAL_SEGMENT_SIZE, DEFAULT_JOURNAL_SEGMENTS,
    DEFAULT_METRICS_LISTEN, DEFAULT_SOCKET, DEFAULT_STATE_DIR, DaemonConfig, HierarchyChoice,
    JournalConfig, SamplerChoice,
};
pub use error::ConfigError;
pub use filesystems::{DEFAULT_MOUNTPOINTS, FilesystemsConfig};
pub use kubernetes::{DEFAULT_TAINT, KubernetesConfig, KubernetesSwitch, is_dns_subdomain};
pub use network::NetworkConfig;
pub use protection::{IsolationConfig, ProtectionConfig};
pub use runtime::{DEFAULT_RUNTIME_SOCKET, RuntimeConfig};
pub use units::{parse_bytes, parse_duration};

use raw::RawConfig;

#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub protection: ProtectionConfig,
    pub capacity: CapacitySettings,
    pub network: NetworkConfig,
    /// The file systems reported (never enforced).
    pub filesystems: FilesystemsConfig,
    /// The container runtime pods are read from.
    pub runtime: RuntimeConfig,
    /// The node's Node object in the API server (taint, condition, capacity annotations).
    pub kubernetes: KubernetesConfig,
    /// The classification rules in force (compiled and validated at load).
    pub rules: Arc<RuleSet>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            daemon: DaemonConfig::default(),
            protection: ProtectionConfig::default(),
            capacity: CapacitySettings::default(),
            network: NetworkConfig::default(),
            filesystems: FilesystemsConfig::default(),
            runtime: RuntimeConfig::default(),
            kubernetes: KubernetesConfig::default(),
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

        // The sections are checked in this order so that, of several mistakes in one file,
        // the same one is reported first as ever: isolation, capacity, ladder thresholds,
        // daemon, network, rules, filesystems, runtime, kubernetes.
        let protection = protection::parse(raw.ladder, raw.isolation, &invalid)?;
        let capacity = capacity::parse(raw.capacity, &invalid)?;
        protection::check_ladder(&protection.ladder, &invalid)?;
        let daemon = daemon::parse(raw.daemon, &invalid)?;
        let network = network::parse(raw.network, &invalid)?;
        let rules = rules::parse(raw.classify, &invalid)?;
        let filesystems = filesystems::parse(raw.filesystems, &invalid)?;
        let runtime = runtime::parse(raw.runtime, &invalid)?;
        let kubernetes = kubernetes::parse(raw.kubernetes, &invalid)?;
        Ok(Config {
            daemon,
            protection,
            capacity,
            network,
            filesystems,
            runtime,
            kubernetes,
            rules: Arc::new(rules),
        })
    }
}

#[cfg(test)]
mod tests;
