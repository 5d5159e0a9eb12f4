//! File systems: usage per configured mountpoint (SPEC §1 and §5: reported, alerted above
//! 90%, never enforced). A path that cannot be read has no series.

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, Labels, gauge};
use crate::surfaces::snapshot::FilesystemUsage;

pub(super) fn encode(enc: &mut DescriptorEncoder, filesystems: &[FilesystemUsage]) -> Fmt {
    let rows = |value: &dyn Fn(&FilesystemUsage) -> f64| -> Vec<(Labels, f64)> {
        filesystems
            .iter()
            .map(|f| (vec![("mountpoint", f.mountpoint.clone())], value(f)))
            .collect()
    };
    gauge(
        enc,
        "enforcer_filesystem_used_ratio",
        "File system use as df computes Use%: used / (used + available to users), per configured mountpoint (filesystems.mountpoints).",
        &rows(&|f| f.used_ratio),
    )?;
    gauge(
        enc,
        "enforcer_filesystem_size_bytes",
        "File system size (statvfs).",
        &rows(&|f| f.size_bytes as f64),
    )?;
    gauge(
        enc,
        "enforcer_filesystem_avail_bytes",
        "File system space available to unprivileged users (statvfs f_bavail).",
        &rows(&|f| f.avail_bytes as f64),
    )?;
    gauge(
        enc,
        "enforcer_filesystem_read_age_seconds",
        "Since the file system's figures were read (every filesystems.interval; a hung mount's figures only age).",
        &rows(&|f| f.age_seconds),
    )
}
