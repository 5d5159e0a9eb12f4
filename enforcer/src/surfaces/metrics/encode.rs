//! The encoder helpers every domain file writes its families with. They know nothing of the
//! domains, so the domain files depend on this one and never on each other.

use prometheus_client::{
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

use crate::model::Priority;

pub(super) type Fmt = Result<(), std::fmt::Error>;

pub(super) type Labels = Vec<(&'static str, String)>;

pub(super) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        metric.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

/// `name` without the `_total` suffix, which the encoder appends for counters.
pub(super) fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        metric
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(value, None)?;
    }
    Ok(())
}

/// The single row of an unlabelled series.
pub(super) fn one(value: f64) -> Vec<(Labels, f64)> {
    vec![(Vec::new(), value)]
}

/// A boolean as a 0/1 gauge value.
pub(super) fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The `priority` label: empty for classes without priorities (online, system), so every
/// series of a family has the same label set.
pub(super) fn priority_label(p: Option<Priority>) -> String {
    p.map(|p| p.to_string()).unwrap_or_default()
}

/// An unlabelled histogram.
pub(super) fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &crate::surfaces::snapshot::LagHistogram,
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let buckets: Vec<(f64, u64)> = h
        .bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(h.counts.iter().copied())
        .collect();
    metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
}
