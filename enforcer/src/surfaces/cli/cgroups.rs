//! `enforcer cgroups`: every cgroup the daemon knows; also the CPU table of `enforcer top`.

use std::fmt::Write as _;

use super::{path, priority};
use crate::surfaces::snapshot::CgroupUsage;

/// The per-cgroup table used by `enforcer cgroups` and `enforcer top`.
pub fn render_cgroup_table(cgroups: &[CgroupUsage], with_usage: bool) -> String {
    let mut out = String::new();
    if with_usage {
        let _ = writeln!(
            out,
            "{:>7} {:>12} {:<8} {:<6} {:>14}  PATH",
            "CORES", "ID", "CLASS", "PRIO", "CPU-SECONDS"
        );
    } else {
        let _ = writeln!(
            out,
            "{:>12} {:<8} {:<6} {:<22} PATH",
            "ID", "CLASS", "PRIO", "RULE"
        );
    }
    for c in cgroups {
        if with_usage {
            let _ = writeln!(
                out,
                "{:>7.3} {:>12} {:<8} {:<6} {:>14.3}  {}{}",
                c.cpu_cores,
                c.id,
                c.class.as_str(),
                priority(c.priority),
                c.cpu_seconds_total,
                path(&c.path),
                pod_of(c)
            );
        } else {
            let _ = writeln!(
                out,
                "{:>12} {:<8} {:<6} {:<22} {}{}",
                c.id,
                c.class.as_str(),
                priority(c.priority),
                c.rule,
                path(&c.path),
                pod_of(c)
            );
        }
    }
    out
}

/// `  namespace/pod (container)` after a pod cgroup's path; nothing for other cgroups.
fn pod_of(c: &CgroupUsage) -> String {
    match (&c.pod, &c.container) {
        (Some(pod), Some(container)) => format!("  {pod} ({container})"),
        (Some(pod), None) => format!("  {pod}"),
        _ => String::new(),
    }
}

/// `enforcer pods`: every pod the runtime lists, with what enforcer makes of it.
pub fn render_pod_table(
    runtime: &crate::surfaces::snapshot::RuntimeView,
    pods: &[crate::surfaces::snapshot::PodUsage],
) -> String {
    let mut out = String::new();
    let state = if !runtime.enabled {
        "off (runtime.enabled = false)".to_string()
    } else if runtime.up {
        format!(
            "up, {} ({} pods, listed in {:.1} ms with {} RPCs; {})",
            runtime.version.as_deref().unwrap_or("?"),
            runtime.pods,
            runtime.refresh_seconds * 1e3,
            runtime.refresh_rpcs,
            if runtime.events {
                "following its events"
            } else {
                "polled"
            }
        )
    } else {
        format!(
            "DOWN: {} (showing the last list)",
            runtime.last_error.as_deref().unwrap_or("no socket")
        )
    };
    let _ = writeln!(out, "runtime {}: {state}", runtime.socket);
    let _ = writeln!(
        out,
        "{:<40} {:<10} {:<8} {:<6} {:<22} {:>7} {:>12} {:>10} {:>10} {:>10}  CONTAINERS",
        "POD", "QOS", "CLASS", "PRIO", "RULE", "CORES", "CPU-SECONDS", "MEMORY", "RX", "TX"
    );
    for p in pods {
        let _ = writeln!(
            out,
            "{:<40} {:<10} {:<8} {:<6} {:<22} {:>7.3} {:>12.3} {:>10} {:>10} {:>10}  {}{}",
            format!("{}/{}", p.namespace, p.name),
            if p.qos.is_empty() { "-" } else { &p.qos },
            p.class.as_str(),
            priority(p.priority),
            p.rule,
            p.cpu_cores,
            p.cpu_seconds_total,
            p.memory_bytes
                .map_or_else(|| "-".into(), |b| format!("{:.1}MiB", b as f64 / 1048576.0)),
            super::rate(p.rx_bytes_per_second),
            super::rate(p.tx_bytes_per_second),
            p.containers.join(","),
            if p.ready { "" } else { "  (not ready)" }
        );
    }
    out
}
