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
mod cpu;
mod encode;
mod memory;
mod network;
mod protection;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        network::encode(&mut enc, &s.network)
    }
}
