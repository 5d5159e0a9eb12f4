//! The `[daemon]` section: node identity, timing, endpoints, the CPU sampler, and its checks.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{error::ConfigError, raw::RawDaemon};

pub use super::raw::{HierarchyChoice, SamplerChoice};

pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9977";
pub const DEFAULT_SOCKET: &str = "/run/enforcer/enforcer.sock";
pub const DEFAULT_JOURNAL: &str = "/var/lib/enforcer/journal.jsonl";
pub const DEFAULT_USAGE_LEDGER: &str = "/var/lib/enforcer/usage.jsonl";
/// `daemon.usage_flush_interval`: how often the running units' records are written.
pub const DEFAULT_USAGE_FLUSH: Duration = Duration::from_secs(60);
pub const DEFAULT_STATE_DIR: &str = "/run/enforcer";
/// `daemon.journal_segment_size`: the live segment is rotated before it would pass this.
pub const DEFAULT_JOURNAL_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// `daemon.journal_segments`: segments kept, the live one included.
pub const DEFAULT_JOURNAL_SEGMENTS: usize = 8;
/// The smallest `daemon.journal_segment_size` accepted.
const MIN_JOURNAL_SEGMENT_SIZE: u64 = 4 * 1024;

/// The action journal: where its live segment is, and how it rotates
/// (`daemon.journal`, `daemon.journal_segment_size`, `daemon.journal_segments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The live segment; older ones are `<path>.1` (newest) … `<path>.<segments - 1>`.
    pub path: PathBuf,
    /// Bytes a segment may reach before the journal rotates (an intent and its outcome
    /// stay in one segment, so a segment may pass it by the lines of an action, by a
    /// quarter of it at most).
    pub segment_size: u64,
    /// Segments kept, the live one included (at least 2); older ones are deleted whole.
    pub segments: usize,
}

impl JournalConfig {
    /// The live segment's path, for messages and the snapshot.
    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig::from(Path::new(DEFAULT_JOURNAL))
    }
}

/// A journal at this path with the default rotation.
impl From<&Path> for JournalConfig {
    fn from(path: &Path) -> Self {
        JournalConfig {
            path: path.to_path_buf(),
            segment_size: DEFAULT_JOURNAL_SEGMENT_SIZE,
            segments: DEFAULT_JOURNAL_SEGMENTS,
        }
    }
}

impl From<&PathBuf> for JournalConfig {
    fn from(path: &PathBuf) -> Self {
        JournalConfig::from(path.as_path())
    }
}

impl From<&JournalConfig> for JournalConfig {
    fn from(c: &JournalConfig) -> Self {
        c.clone()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub node_name: String,
    pub tick: Duration,
    pub window: Duration,
    /// The full walk of the cgroup trees, the safety net of the kernel's cgroup events
    /// (every second without them).
    pub rescan_interval: Duration,
    pub metrics_listen: SocketAddr,
    pub socket: PathBuf,
    pub top_n: usize,
    pub hierarchy: HierarchyChoice,
    pub cgroup_map_entries: u32,
    pub sampler: SamplerChoice,
    /// Append-only action journal, in rotated segments.
    pub journal: JournalConfig,
    /// The usage ledger (billing records of the offline units), rotated like the journal
    /// (its segment size and count).
    pub usage_ledger: JournalConfig,
    /// How often the running units' records are written to the ledger.
    pub usage_flush_interval: Duration,
    /// Node-local state for other agents (the scheduling gate file).
    pub state_dir: PathBuf,
    /// Decide and journal every action without applying any.
    pub dry_run: bool,
    /// Lock the daemon's memory (`mlockall`): the memory pressure it acts on must not page
    /// its own code out.
    pub lock_memory: bool,
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
            rescan_interval: Duration::from_secs(60),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().expect("valid default"),
            socket: PathBuf::from(DEFAULT_SOCKET),
            top_n: 20,
            hierarchy: HierarchyChoice::Auto,
            cgroup_map_entries: enforcer_common::CPU_NS_DEFAULT_ENTRIES,
            sampler: SamplerChoice::Ebpf,
            journal: JournalConfig::default(),
            usage_ledger: JournalConfig::from(Path::new(DEFAULT_USAGE_LEDGER)),
            usage_flush_interval: DEFAULT_USAGE_FLUSH,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            dry_run: false,
            lock_memory: true,
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
        journal: JournalConfig {
            path: r.journal.unwrap_or(defaults.journal.path),
            segment_size: r
                .journal_segment_size
                .unwrap_or(defaults.journal.segment_size),
            segments: r.journal_segments.unwrap_or(defaults.journal.segments),
        },
        usage_ledger: JournalConfig {
            path: r.usage_ledger.unwrap_or(defaults.usage_ledger.path),
            segment_size: r
                .journal_segment_size
                .unwrap_or(defaults.usage_ledger.segment_size),
            segments: r.journal_segments.unwrap_or(defaults.usage_ledger.segments),
        },
        usage_flush_interval: r
            .usage_flush_interval
            .unwrap_or(defaults.usage_flush_interval),
        state_dir: r.state_dir.unwrap_or(defaults.state_dir),
        dry_run: r.dry_run.unwrap_or(defaults.dry_run),
        lock_memory: r.lock_memory.unwrap_or(defaults.lock_memory),
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
    if daemon.journal.segment_size < MIN_JOURNAL_SEGMENT_SIZE {
        return Err(invalid(
            "daemon.journal_segment_size".into(),
            format!(
                "{} bytes is less than the minimum, 4KiB",
                daemon.journal.segment_size
            ),
        ));
    }
    if !(2..=1000).contains(&daemon.journal.segments) {
        return Err(invalid(
            "daemon.journal_segments".into(),
            format!(
                "{} is out of range 2..=1000 (the live segment and at least one before it)",
                daemon.journal.segments
            ),
        ));
    }
    if daemon.usage_flush_interval < Duration::from_secs(1) {
        return Err(invalid(
            "daemon.usage_flush_interval".into(),
            format!("{:?} is shorter than 1s", daemon.usage_flush_interval),
        ));
    }
    if daemon.usage_ledger.path == daemon.journal.path {
        return Err(invalid(
            "daemon.usage_ledger".into(),
            "must not be the journal's file".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn error(text: &str) -> String {
        Config::parse(text, Path::new("enforcer.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn journal_rotation_is_configured_with_defaults() {
        let c = Config::parse("", Path::new("enforcer.toml")).unwrap();
        assert_eq!(c.daemon.journal, JournalConfig::default());
        assert_eq!(c.daemon.journal.segment_size, 64 * 1024 * 1024);
        assert_eq!(c.daemon.journal.segments, 8);
        let c = Config::parse(
            "[daemon]\njournal = \"/j/journal.jsonl\"\njournal_segment_size = \"4KiB\"\njournal_segments = 3\n",
            Path::new("enforcer.toml"),
        )
        .unwrap();
        assert_eq!(
            c.daemon.journal,
            JournalConfig {
                path: "/j/journal.jsonl".into(),
                segment_size: 4096,
                segments: 3,
            }
        );
        let e = error("[daemon]\njournal_segment_size = \"1KiB\"\n");
        assert!(e.contains("daemon.journal_segment_size"), "{e}");
        let e = error("[daemon]\njournal_segment_size = \"lots\"\n");
        assert!(
            e.contains("daemon.journal_segment_size") && e.contains("invalid size"),
            "{e}"
        );
        let e = error("[daemon]\njournal_segments = 1\n");
        assert!(e.contains("daemon.journal_segments"), "{e}");
    }

    #[test]
    fn the_documented_example_states_the_journal_defaults() {
        let c = Config::parse(
            include_str!("../../../deploy/enforcer.toml"),
            Path::new("deploy/enforcer.toml"),
        )
        .unwrap();
        assert_eq!(c.daemon.journal, JournalConfig::default());
    }
}
