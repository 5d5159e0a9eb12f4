//! CPU: build information, node utilisation, CPU per class and priority, the top-N cgroups,
//! and the health of the sampler that measures all of it.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};

use super::encode::{Fmt, Labels, counter, flag, gauge, histogram, one, priority_label};
use crate::surfaces::snapshot::{CgroupUsage, ClassUsage, DiscoveryView, SamplerHealth, Snapshot};

pub(super) fn encode(enc: &mut DescriptorEncoder, s: &Snapshot) -> Fmt {
    build_info(enc, s)?;
    gauge(
        enc,
        "enforcer_node_cpu_utilisation_ratio",
        "Node CPU utilisation (busy time over elapsed time x online CPUs) over the sliding window.",
        &one(s.node_cpu_utilisation),
    )?;
    gauge(
        enc,
        "enforcer_online_cpus",
        "CPUs online on the node.",
        &one(f64::from(s.online_cpus)),
    )?;
    classes(enc, &s.classes)?;
    top_cgroups(enc, &s.cgroups)?;
    sampler(enc, &s.sampler)?;
    discovery(enc, &s.discovery)?;
    own(enc, s)
}

/// The daemon's own cost under the names every Prometheus client library exports them by,
/// so the operators' existing per-process panels and rules apply as they are.
fn own(enc: &mut DescriptorEncoder, s: &Snapshot) -> Fmt {
    counter(
        enc,
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        &one(s.own.cpu_seconds_total),
    )?;
    gauge(
        enc,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &one(s.own.resident_bytes as f64),
    )?;
    gauge(
        enc,
        "process_open_fds",
        "Number of open file descriptors.",
        &one(s.own.open_fds as f64),
    )?;
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &one(s.started_at),
    )
}

fn build_info(enc: &mut DescriptorEncoder, s: &Snapshot) -> Fmt {
    let info = prometheus_client::metrics::info::Info::new(vec![
        ("version", s.version.clone()),
        ("layout", s.layout.clone()),
        ("kubelet_driver", s.kubelet_driver.clone()),
        ("cpu_hierarchy", s.cpu_hierarchy.clone()),
    ]);
    let metric = enc.encode_descriptor(
        "enforcer_build",
        "Build and runtime information.",
        None,
        info.metric_type(),
    )?;
    info.encode(metric)
}

fn classes(enc: &mut DescriptorEncoder, classes: &[ClassUsage]) -> Fmt {
    let rows = |f: &dyn Fn(&ClassUsage) -> f64| -> Vec<(Labels, f64)> {
        classes
            .iter()
            .map(|c| {
                let labels = vec![
                    ("class", c.class.to_string()),
                    ("priority", priority_label(c.priority)),
                ];
                (labels, f(c))
            })
            .collect()
    };
    counter(
        enc,
        "enforcer_cpu_seconds",
        "CPU time used by the cgroups of a class and priority, from eBPF sched_switch accounting.",
        &rows(&|c| c.cpu_seconds_total),
    )?;
    gauge(
        enc,
        "enforcer_cpu_cores",
        "Cores used by a class and priority over the sliding window.",
        &rows(&|c| c.cpu_cores),
    )?;
    gauge(
        enc,
        "enforcer_cgroups",
        "Cgroups known per class and priority.",
        &rows(&|c| c.cgroups as f64),
    )
}

fn top_cgroups(enc: &mut DescriptorEncoder, cgroups: &[CgroupUsage]) -> Fmt {
    let rows = |f: &dyn Fn(&CgroupUsage) -> f64| -> Vec<(Labels, f64)> {
        cgroups
            .iter()
            .map(|c| {
                let labels = vec![
                    ("cgroup", format!("/{}", c.path)),
                    ("class", c.class.to_string()),
                    ("priority", priority_label(c.priority)),
                ];
                (labels, f(c))
            })
            .collect()
    };
    counter(
        enc,
        "enforcer_cgroup_cpu_seconds",
        "CPU time of the top-N cgroups by current use (N = daemon.top_n).",
        &rows(&|c| c.cpu_seconds_total),
    )?;
    gauge(
        enc,
        "enforcer_cgroup_cpu_cores",
        "Cores used over the sliding window by the top-N cgroups.",
        &rows(&|c| c.cpu_cores),
    )
}

fn sampler(enc: &mut DescriptorEncoder, h: &SamplerHealth) -> Fmt {
    counter(
        enc,
        "enforcer_sampler_ticks",
        "Sampling ticks run.",
        &one(h.ticks_total as f64),
    )?;
    counter(
        enc,
        "enforcer_sampler_reclaim_wakeups",
        "Ticks run at once because a direct-reclaim episode ended, not at their schedule.",
        &one(h.reclaim_wakeups_total as f64),
    )?;
    gauge(
        enc,
        "enforcer_sampler_tick_lag_seconds",
        "How late the last tick started.",
        &one(h.tick_lag_seconds),
    )?;
    gauge(
        enc,
        "enforcer_sampler_tick_lag_max_seconds",
        "Largest tick lag since start.",
        &one(h.tick_lag_max_seconds),
    )?;
    histogram(
        enc,
        "enforcer_sampler_tick_lateness_seconds",
        "How late each tick started compared with its schedule.",
        &h.tick_lag,
    )?;
    gauge(
        enc,
        "enforcer_sampler_map_read_seconds",
        "Duration of the last read of the eBPF maps.",
        &one(h.map_read_seconds),
    )?;
    gauge(
        enc,
        "enforcer_sampler_map_entries",
        "Entries in the per-cgroup eBPF map.",
        &one(h.map_entries as f64),
    )?;
    gauge(
        enc,
        "enforcer_sampler_map_capacity",
        "Capacity of the per-cgroup eBPF map.",
        &one(f64::from(h.map_capacity)),
    )?;
    counter(
        enc,
        "enforcer_sampler_program_runs",
        "sched_switch events handled by the eBPF program.",
        &one(h.program_runs_total as f64),
    )?;
    counter(
        enc,
        "enforcer_sampler_dropped",
        "CPU credits lost because the per-cgroup map was full.",
        &one(h.dropped_total as f64),
    )?;
    counter(
        enc,
        "enforcer_sampler_read_errors",
        "Context switches whose cgroup could not be read.",
        &one(h.read_errors_total as f64),
    )?;
    counter(
        enc,
        "enforcer_sampler_read_failures",
        "Ticks whose map read failed.",
        &one(h.read_failures_total as f64),
    )?;
    counter(
        enc,
        "enforcer_cgroup_rescans",
        "Scans of the cgroup tree.",
        &one(h.rescans_total as f64),
    )?;
    gauge(
        enc,
        "enforcer_cgroup_rescan_seconds",
        "Duration of the last cgroup tree scan.",
        &one(h.rescan_seconds),
    )
}

fn discovery(enc: &mut DescriptorEncoder, d: &DiscoveryView) -> Fmt {
    counter(
        enc,
        "enforcer_cgroup_events",
        "Cgroups created, removed or renamed, as the kernel reported them.",
        &one(d.events_total as f64),
    )?;
    counter(
        enc,
        "enforcer_cgroup_events_lost",
        "Cgroup events the kernel could not queue (each loss is made up by a walk).",
        &one(d.events_lost_total as f64),
    )?;
    gauge(
        enc,
        "enforcer_cgroup_events_enabled",
        "1 when cgroups are learnt from the kernel's events, 0 when the trees are walked every second.",
        &one(flag(d.events)),
    )
}
