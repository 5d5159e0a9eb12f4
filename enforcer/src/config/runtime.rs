//! The `[runtime]` section: the node's container runtime over CRI, where pods and their
//! labels come from (classification by pod, victims named as pods).

use std::{path::PathBuf, time::Duration};

use super::{error::ConfigError, raw::RawRuntime};

/// containerd's socket; CRI `runtime.v1` is served on it.
pub const DEFAULT_RUNTIME_SOCKET: &str = "/run/containerd/containerd.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Off: pods are never asked for, cgroups are classified by path alone.
    pub enabled: bool,
    pub socket: PathBuf,
    /// How often the pod list is read (and at once when a pod cgroup of no known pod
    /// appears).
    pub refresh_interval: Duration,
    /// The longest one CRI call may take. The list is read on its own thread: a slow
    /// runtime never delays a tick, it only makes the pod list older.
    pub timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            enabled: true,
            socket: PathBuf::from(DEFAULT_RUNTIME_SOCKET),
            refresh_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Builds and checks the section; `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    r: RawRuntime,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<RuntimeConfig, ConfigError> {
    let d = RuntimeConfig::default();
    let c = RuntimeConfig {
        enabled: r.enabled.unwrap_or(d.enabled),
        socket: r.socket.unwrap_or(d.socket),
        refresh_interval: r.refresh_interval.unwrap_or(d.refresh_interval),
        timeout: r.timeout.unwrap_or(d.timeout),
    };
    if c.refresh_interval < Duration::from_millis(100) {
        return Err(invalid(
            "runtime.refresh_interval".into(),
            format!(
                "{:?} is too short (at least 100ms: every refresh is a few RPCs to the runtime)",
                c.refresh_interval
            ),
        ));
    }
    if c.timeout > c.refresh_interval {
        return Err(invalid(
            "runtime.timeout".into(),
            format!(
                "{:?} is longer than runtime.refresh_interval ({:?})",
                c.timeout, c.refresh_interval
            ),
        ));
    }
    if !c.socket.is_absolute() {
        return Err(invalid(
            "runtime.socket".into(),
            format!("{} is not an absolute path", c.socket.display()),
        ));
    }
    Ok(c)
}
