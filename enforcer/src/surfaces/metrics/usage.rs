//! The offline units' usage for dashboards: per queue and namespace (bounded labels), and
//! per unit for the top N by CPU only (the ledger has every one).

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, Labels, counter, one};
use crate::surfaces::snapshot::{GroupUsage, UsageView};

pub(super) fn encode(enc: &mut DescriptorEncoder, u: &UsageView) -> Fmt {
    let unit_rows = |value: &dyn Fn(&crate::surfaces::snapshot::UnitUsage) -> f64| {
        u.units
            .iter()
            .map(|x| {
                (
                    vec![
                        ("namespace", x.namespace.clone()),
                        ("pod", x.pod.clone()),
                        ("queue", x.queue.clone()),
                        ("id", x.id.clone()),
                    ],
                    value(x),
                )
            })
            .collect::<Vec<(Labels, f64)>>()
    };
    counter(
        enc,
        "enforcer_pod_cpu_seconds",
        "On-CPU seconds of an offline pod (or unit) over its life, the top daemon.top_n by CPU; every one is in the usage ledger.",
        &unit_rows(&|x| x.cpu_seconds),
    )?;
    counter(
        enc,
        "enforcer_pod_memory_byte_seconds",
        "Integral of an offline pod's memory use (memory.current; v1 memory.usage_in_bytes) over its life, the top daemon.top_n by CPU.",
        &unit_rows(&|x| x.memory_byte_seconds),
    )?;
    let group_rows = |label: &'static str,
                      groups: &[GroupUsage],
                      value: &dyn Fn(&GroupUsage) -> f64|
     -> Vec<(Labels, f64)> {
        groups
            .iter()
            .map(|g| (vec![(label, g.name.clone())], value(g)))
            .collect()
    };
    counter(
        enc,
        "enforcer_queue_cpu_seconds",
        "On-CPU seconds of the offline units of a queue (YuniKorn queue label, else the priority), running and ended since the daemon started.",
        &group_rows("queue", &u.by_queue, &|g| g.cpu_seconds),
    )?;
    counter(
        enc,
        "enforcer_queue_memory_byte_seconds",
        "Memory byte-seconds of the offline units of a queue, running and ended since the daemon started.",
        &group_rows("queue", &u.by_queue, &|g| g.memory_byte_seconds),
    )?;
    counter(
        enc,
        "enforcer_namespace_cpu_seconds",
        "On-CPU seconds of the offline units of a namespace, running and ended since the daemon started.",
        &group_rows("namespace", &u.by_namespace, &|g| g.cpu_seconds),
    )?;
    counter(
        enc,
        "enforcer_namespace_memory_byte_seconds",
        "Memory byte-seconds of the offline units of a namespace, running and ended since the daemon started.",
        &group_rows("namespace", &u.by_namespace, &|g| g.memory_byte_seconds),
    )?;
    counter(
        enc,
        "enforcer_usage_ledger_write_failures",
        "Usage ledger writes that failed (the records stay in memory and are written when it can be).",
        &one(u.ledger_write_failures as f64),
    )
}
