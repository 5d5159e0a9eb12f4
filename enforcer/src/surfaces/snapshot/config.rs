//! What the surfaces show of the configuration file and its reloads (SIGHUP or a change
//! of the file, such as a ConfigMap update).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    /// The file the daemon runs from; empty when it runs on the defaults.
    pub path: String,
    /// The file is watched (inotify), so a change reloads it without a signal.
    pub watched: bool,
    /// When the configuration in force was read: the start, or the last reload that
    /// succeeded (Unix seconds).
    pub loaded_at: f64,
    pub reloads_total: u64,
    pub reload_failures_total: u64,
    /// The last reload was refused (the running configuration was kept).
    pub last_reload_failed: bool,
    /// What was wrong with the file (file, field, message), while the last reload failed.
    pub last_error: Option<String>,
}
