//! Prometheus metrics (OpenMetrics text), encoded at scrape time from a [`Snapshot`].
//!
//! Encoding from a snapshot instead of keeping live metric objects means per-cgroup series
//! exist only for the current top N (bounded cardinality) and vanish with their cgroup.
//!
//! One file per domain writes its families with the helpers of `encode`; the collector
//! calls the domains in a fixed order, which is the family order of the scrape.

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};

use super::snapshot::Snapshot;

mod compat;
mod config;
mod cpu;
mod encode;
mod filesystem;
mod kube;
mod memory;
mod network;
mod pods;
mod protection;
mod usage;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of [`to_prometheus_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics; anything else (curl, older
/// agents, `promtool check metrics`) gets the Prometheus text format 0.0.4.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.contains("application/openmetrics-text")
}

/// The same families in the Prometheus text format 0.0.4: counters are named by their
/// `_total` sample there, and there is no `# EOF` or `# UNIT`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    // Family name -> (the name of its samples' family in 0.0.4, its 0.0.4 type).
    let families: std::collections::HashMap<&str, (String, &str)> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|r| r.split_once(' '))
        .map(|(name, kind)| {
            let mapped = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                // An info family's one sample is `NAME_info`, a gauge of 1 in 0.0.4.
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            (name, mapped)
        })
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = if let Some(rest) = line.strip_prefix("# TYPE ") {
            rest.split_once(' ')
                .and_then(|(name, _)| families.get(name))
                .map(|(name, kind)| format!("# TYPE {name} {kind}"))
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            rest.split_once(' ')
                .and_then(|(name, help)| Some((families.get(name)?, help)))
                .map(|((name, _), help)| format!("# HELP {name} {help}"))
        } else {
            None
        };
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Renders the snapshot as OpenMetrics text.
pub fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> encode::Fmt {
        let s = &self.0;
        cpu::encode(&mut enc, s)?;
        protection::encode(&mut enc, &s.protection, &s.capacity)?;
        memory::encode(&mut enc, s)?;
        compat::encode(&mut enc, s)?;
        network::encode(&mut enc, &s.network)?;
        filesystem::encode(&mut enc, &s.filesystems)?;
        config::encode(&mut enc, &s.config)?;
        pods::encode(&mut enc, &s.runtime, &s.pods)?;
        usage::encode(&mut enc, &s.usage)?;
        kube::encode(&mut enc, &s.kube)
    }
}
