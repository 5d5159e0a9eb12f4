//! Memory: use per class from cgroupfs, pressure stall information, reclaim per class from
//! eBPF, and kswapd wake-ups per NUMA node.

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, Labels, counter, flag, gauge};
use crate::{
    sampling::psi::NodePressure,
    surfaces::snapshot::{ClassMemory, ClassReclaim, ReclaimTotals, Snapshot},
};

pub(super) fn encode(enc: &mut DescriptorEncoder, s: &Snapshot) -> Fmt {
    per_class(enc, &s.memory)?;
    pressure(enc, &s.pressure)?;
    reclaim(enc, &s.reclaim_by_class)?;
    kswapd(enc, &s.reclaim)
}

fn per_class(enc: &mut DescriptorEncoder, memory: &[ClassMemory]) -> Fmt {
    let mut rows: Vec<(Labels, f64)> = Vec::new();
    for m in memory {
        for (kind, v) in [
            ("usage", m.usage.usage_bytes),
            ("rss", m.usage.rss_bytes),
            ("cache", m.usage.cache_bytes),
            ("shmem", m.usage.shmem_bytes),
        ] {
            rows.push((
                vec![("class", m.class.to_string()), ("kind", kind.to_string())],
                v as f64,
            ));
        }
    }
    gauge(
        enc,
        "enforcer_memory_bytes",
        "Memory per class from cgroupfs (shmem/tmpfs broken out; system is the rest of the node).",
        &rows,
    )
}

/// Nothing where the kernel has no PSI: zeros would read as "no pressure".
fn pressure(enc: &mut DescriptorEncoder, pressure: &NodePressure) -> Fmt {
    if !pressure.available {
        return Ok(());
    }
    let mut avg = Vec::new();
    let mut total = Vec::new();
    for (resource, p) in [
        ("cpu", &pressure.cpu),
        ("memory", &pressure.memory),
        ("io", &pressure.io),
    ] {
        for (kind, a, t) in [
            ("some", p.some_avg10, p.some_seconds_total),
            ("full", p.full_avg10, p.full_seconds_total),
        ] {
            let labels = vec![
                ("resource", resource.to_string()),
                ("kind", kind.to_string()),
            ];
            avg.push((labels.clone(), a));
            total.push((labels, t));
        }
    }
    gauge(
        enc,
        "enforcer_psi_avg10_ratio",
        "Pressure stall information: share of the last 10 s stalled.",
        &avg,
    )?;
    counter(
        enc,
        "enforcer_psi_stall_seconds",
        "Pressure stall information: cumulative stall time.",
        &total,
    )
}

fn reclaim(enc: &mut DescriptorEncoder, by_class: &[ClassReclaim]) -> Fmt {
    let mut episodes = Vec::new();
    let mut stalls = Vec::new();
    let mut pressure = Vec::new();
    for c in by_class {
        let labels = |kind: &str| vec![("kind", kind.to_string()), ("class", c.class.to_string())];
        episodes.push((labels("direct"), c.stats.direct_episodes as f64));
        episodes.push((labels("memcg"), c.stats.memcg_episodes as f64));
        stalls.push((labels("direct"), c.stats.direct_stall_ns as f64 / 1e9));
        stalls.push((labels("memcg"), c.stats.memcg_stall_ns as f64 / 1e9));
        pressure.push((
            vec![("class", c.class.to_string())],
            flag(c.memory_pressure),
        ));
    }
    counter(
        enc,
        "enforcer_reclaim_episodes",
        "Memory reclaim episodes seen by eBPF, by the class of the stalled task's memory cgroup (direct: global pressure; memcg: a cgroup at its limit).",
        &episodes,
    )?;
    counter(
        enc,
        "enforcer_reclaim_stall_seconds",
        "Time tasks stalled in memory reclaim.",
        &stalls,
    )?;
    gauge(
        enc,
        "enforcer_memory_pressure",
        "1 while a class stalls in memcg reclaim above ladder.reclaim_stall_trigger (seconds per second).",
        &pressure,
    )
}

fn kswapd(enc: &mut DescriptorEncoder, totals: &ReclaimTotals) -> Fmt {
    // Every online NUMA node (zero until it wakes kswapd), and any other that ever woke it.
    let per_node: Vec<(Labels, f64)> = totals
        .kswapd_wakeups_by_node
        .iter()
        .map(|(node, n)| (vec![("numa_node", node.to_string())], *n as f64))
        .collect();
    counter(
        enc,
        "enforcer_kswapd_wakeups",
        "kswapd wake-ups per NUMA node.",
        &per_node,
    )
}
