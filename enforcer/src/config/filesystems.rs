//! The `[filesystems]` section: which of the node's file systems are reported (`statvfs`;
//! SPEC §1: disks are reported, never enforced), how often, and through which root.

use std::{path::PathBuf, time::Duration};

use super::{error::ConfigError, raw::RawFilesystems};

/// Reported when the file names none: the root file system and where a Kubernetes node
/// keeps pod volumes, images and logs. Paths on the same file system as an earlier one are
/// reported once, under the earlier name; paths that do not exist are skipped (one line).
pub const DEFAULT_MOUNTPOINTS: &[&str] =
    &["/", "/var/lib/kubelet", "/var/lib/containerd", "/var/log"];

/// The most paths one node reports (one reader thread each).
const MAX_MOUNTPOINTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemsConfig {
    /// Paths as the node names them (the `mountpoint` label), in order.
    pub mountpoints: Vec<PathBuf>,
    /// True when the file named none and these are [`DEFAULT_MOUNTPOINTS`] (a missing
    /// default path is not the operator's mistake, so it is said quietly).
    pub defaulted: bool,
    /// How often each path is read.
    pub interval: Duration,
    /// Where the node's paths are looked up (`/` for the daemon's own mount namespace).
    /// `None`: the mount namespace of the node's init through `/proc/1/root` (what a
    /// DaemonSet with hostPID and a systemd unit with ProtectSystem both need), or `/` where
    /// that cannot be entered (`sampling::filesystem::default_root`).
    pub root: Option<PathBuf>,
}

impl Default for FilesystemsConfig {
    fn default() -> Self {
        FilesystemsConfig {
            mountpoints: DEFAULT_MOUNTPOINTS.iter().map(PathBuf::from).collect(),
            defaulted: true,
            interval: Duration::from_secs(10),
            root: None,
        }
    }
}

/// Builds and checks the section; `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    r: RawFilesystems,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<FilesystemsConfig, ConfigError> {
    let d = FilesystemsConfig::default();
    let defaulted = r.mountpoints.is_none();
    let c = FilesystemsConfig {
        mountpoints: r.mountpoints.unwrap_or(d.mountpoints),
        defaulted,
        interval: r.interval.unwrap_or(d.interval),
        root: r.root,
    };
    if c.mountpoints.len() > MAX_MOUNTPOINTS {
        return Err(invalid(
            "filesystems.mountpoints".into(),
            format!(
                "{} paths is more than {MAX_MOUNTPOINTS}",
                c.mountpoints.len()
            ),
        ));
    }
    for (i, p) in c.mountpoints.iter().enumerate() {
        let field = || format!("filesystems.mountpoints[{i}]");
        if !p.is_absolute() {
            return Err(invalid(
                field(),
                format!("{:?} is not an absolute path", p.display().to_string()),
            ));
        }
        if c.mountpoints[..i].contains(p) {
            return Err(invalid(
                field(),
                format!("{:?} is listed twice", p.display().to_string()),
            ));
        }
    }
    if c.interval < Duration::from_secs(1) {
        return Err(invalid(
            "filesystems.interval".into(),
            format!("{:?} is shorter than 1s", c.interval),
        ));
    }
    if let Some(root) = c.root.as_ref().filter(|r| !r.is_absolute()) {
        return Err(invalid(
            "filesystems.root".into(),
            format!("{:?} is not an absolute path", root.display().to_string()),
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("enforcer.toml"))
    }

    #[test]
    fn defaults_report_the_root_and_the_kubelet_paths() {
        let c = parse("").unwrap().filesystems;
        assert_eq!(c, FilesystemsConfig::default());
        assert!(c.defaulted);
        assert_eq!(c.mountpoints[0], Path::new("/"));
        assert_eq!(c.root, None, "found at start");
    }

    #[test]
    fn a_list_replaces_the_defaults() {
        let c = parse(
            "[filesystems]\nmountpoints = [\"/\", \"/data1\"]\ninterval = \"30s\"\nroot = \"/\"\n",
        )
        .unwrap()
        .filesystems;
        assert_eq!(c.mountpoints, [Path::new("/"), Path::new("/data1")]);
        assert!(!c.defaulted);
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.root.as_deref(), Some(Path::new("/")));
        // An empty list reports nothing.
        let c = parse("[filesystems]\nmountpoints = []\n")
            .unwrap()
            .filesystems;
        assert!(c.mountpoints.is_empty() && !c.defaulted);
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            ("mountpoints = [\"data\"]", "filesystems.mountpoints[0]"),
            (
                "mountpoints = [\"/a\", \"/a\"]",
                "filesystems.mountpoints[1]",
            ),
            ("mountpoints = \"/\"", "filesystems.mountpoints"),
            ("interval = \"100ms\"", "filesystems.interval"),
            ("interval = \"soon\"", "filesystems.interval"),
            ("root = \"proc\"", "filesystems.root"),
            ("mountpoint = [\"/\"]", "filesystems"),
        ] {
            let e = parse(&format!("[filesystems]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("enforcer.toml: {field}")),
                "{text}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn the_documented_example_states_the_defaults() {
        let c = Config::parse(
            include_str!("../../../deploy/enforcer.toml"),
            Path::new("deploy/enforcer.toml"),
        )
        .unwrap();
        let d = FilesystemsConfig::default();
        assert_eq!(c.filesystems, d);
    }
}
