//! The configuration file: reloads (SIGHUP or a change of the file) and whether the last
//! one was refused.

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, counter, flag, gauge, one};
use crate::surfaces::snapshot::ConfigView;

pub(super) fn encode(enc: &mut DescriptorEncoder, c: &ConfigView) -> Fmt {
    gauge(
        enc,
        "enforcer_config_last_reload_successful",
        "0 while the last reload of the configuration file was refused (the running configuration is kept).",
        &one(flag(!c.last_reload_failed)),
    )?;
    gauge(
        enc,
        "enforcer_config_last_reload_success_timestamp_seconds",
        "When the configuration in force was read (start or the last reload that succeeded).",
        &one(c.loaded_at),
    )?;
    counter(
        enc,
        "enforcer_config_reloads",
        "Reloads of the configuration file that succeeded (SIGHUP or a change of the file).",
        &one(c.reloads_total as f64),
    )?;
    counter(
        enc,
        "enforcer_config_reload_failures",
        "Reloads of the configuration file refused (a bad or unreadable file; the running configuration is kept).",
        &one(c.reload_failures_total as f64),
    )?;
    gauge(
        enc,
        "enforcer_config_watched",
        "1 while the configuration file is watched (inotify): a change, such as a ConfigMap update, reloads it without SIGHUP.",
        &one(flag(c.watched)),
    )
}
