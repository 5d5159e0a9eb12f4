//! The container runtime the pods come from, and the top pods by CPU (bounded: the same
//! top N as the per-cgroup series).

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, counter, flag, gauge, one, priority_label};
use crate::surfaces::snapshot::{PodUsage, RuntimeView};

pub(super) fn encode(enc: &mut DescriptorEncoder, r: &RuntimeView, pods: &[PodUsage]) -> Fmt {
    gauge(
        enc,
        "enforcer_runtime_up",
        "1 while the container runtime answers over CRI (0: down or absent; the last pod list is kept, cgroups of unknown pods are classified by path).",
        &one(flag(r.enabled && r.up)),
    )?;
    gauge(
        enc,
        "enforcer_runtime_pods",
        "Pods the container runtime listed last.",
        &one(r.pods as f64),
    )?;
    counter(
        enc,
        "enforcer_runtime_refreshes",
        "Pod lists read from the container runtime.",
        &one(r.refreshes_total as f64),
    )?;
    counter(
        enc,
        "enforcer_runtime_errors",
        "Pod lists that failed (runtime gone, restarting or slower than runtime.timeout).",
        &one(r.errors_total as f64),
    )?;
    gauge(
        enc,
        "enforcer_runtime_refresh_seconds",
        "How long the last pod list took.",
        &one(r.refresh_seconds),
    )?;
    let labels = |p: &PodUsage| {
        vec![
            ("namespace", p.namespace.clone()),
            ("pod", p.name.clone()),
            ("class", p.class.to_string()),
            ("priority", priority_label(p.priority)),
        ]
    };
    let rows = |value: fn(&PodUsage) -> Option<f64>| -> Vec<_> {
        pods.iter()
            .filter_map(|p| Some((labels(p), value(p)?)))
            .collect()
    };
    gauge(
        enc,
        "enforcer_pod_cpu_cores",
        "CPU cores in use over the window by the top pods (all their containers).",
        &rows(|p| Some(p.cpu_cores)),
    )?;
    gauge(
        enc,
        "enforcer_pod_memory_bytes",
        "Memory charged to the top pods' cgroups (hierarchical), read at the scrape.",
        &rows(|p| p.memory_bytes.map(|b| b as f64)),
    )?;
    gauge(
        enc,
        "enforcer_pod_receive_bytes_per_second",
        "Bytes per second received by the top pods' cgroups over the window (cgroup_skb).",
        &rows(|p| Some(p.rx_bytes_per_second)),
    )?;
    gauge(
        enc,
        "enforcer_pod_transmit_bytes_per_second",
        "Bytes per second sent by the top pods' cgroups over the window (cgroup_skb).",
        &rows(|p| Some(p.tx_bytes_per_second)),
    )
}
