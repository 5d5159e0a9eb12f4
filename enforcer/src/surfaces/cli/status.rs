//! `enforcer status`: node CPU, per-class usage, memory, pressure, offline capacity, the
//! ladder's stage, sampler health and the network section.

use std::fmt::Write as _;

use super::{priority, rate};
use crate::{
    model::tc::rate_str,
    surfaces::snapshot::{NetworkSnapshot, ParentState, Snapshot},
};

/// `enforcer status`: the node, its classes, the ladder, the sampler, then the network.
pub fn render_status(s: &Snapshot) -> String {
    let mut out = String::new();
    let h = &s.sampler;
    let _ = writeln!(
        out,
        "node {}  enforcer {} (pid {})  up {:.0}s",
        s.node,
        s.version,
        s.pid,
        (s.taken_at - s.started_at).max(0.0)
    );
    let _ = writeln!(
        out,
        "cgroups: {} layout, CPU sampled on {}",
        s.layout, s.cpu_hierarchy
    );
    let r = &s.runtime;
    if r.enabled {
        let state = if r.up {
            format!(
                "up, {}, {} pods ({})",
                r.version.as_deref().unwrap_or("?"),
                r.pods,
                if r.events { "events" } else { "polled" }
            )
        } else if let Some(e) = &r.last_error {
            format!("DOWN ({e}); the last {} pods are kept", r.pods)
        } else {
            "not found: pods classified by cgroup path".to_string()
        };
        let _ = writeln!(out, "pods: runtime {} {state}", r.socket);
    }
    let k = &s.kube;
    if k.enabled {
        let _ = writeln!(
            out,
            "kubernetes: Node {} {} (taint {}, condition {}, annotations {} patches; {} failures){}",
            k.node,
            if k.up { "patched" } else { "NOT REACHED" },
            k.taint_patches_total,
            k.condition_patches_total,
            k.annotation_patches_total,
            k.failures_total,
            k.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    } else if let Some(why) = &k.off_reason {
        let _ = writeln!(out, "kubernetes: off ({why})");
    }
    let _ = writeln!(
        out,
        "node CPU: {:.1}% of {} CPUs over {:.1}s",
        s.node_cpu_utilisation * 100.0,
        s.online_cpus,
        s.window_seconds
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<8} {:<8} {:>8} {:>10} {:>14}",
        "CLASS", "PRIO", "CGROUPS", "CORES", "CPU-SECONDS"
    );
    for c in &s.classes {
        let _ = writeln!(
            out,
            "{:<8} {:<8} {:>8} {:>10.3} {:>14.3}",
            c.class.as_str(),
            priority(c.priority),
            c.cgroups,
            c.cpu_cores,
            c.cpu_seconds_total
        );
    }
    if !s.memory.is_empty() {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let parts: Vec<String> = s
            .memory
            .iter()
            .map(|m| {
                format!(
                    "{} {:.2} GiB (shmem {:.2})",
                    m.class,
                    gib(m.usage.usage_bytes),
                    gib(m.usage.shmem_bytes)
                )
            })
            .collect();
        let _ = writeln!(out, "memory: {}", parts.join(", "));
    }
    if s.pressure.available {
        let _ = writeln!(
            out,
            "pressure (avg10): cpu some {:.1}%, memory some {:.1}% full {:.1}%, io some {:.1}%",
            s.pressure.cpu.some_avg10 * 100.0,
            s.pressure.memory.some_avg10 * 100.0,
            s.pressure.memory.full_avg10 * 100.0,
            s.pressure.io.some_avg10 * 100.0
        );
    }
    let c = &s.capacity;
    if c.enabled {
        let _ = writeln!(
            out,
            "offline capacity ({}): CPU {:.2} cores (target {:.2}), memory {:.1} GiB (target {:.1}) over {} offline parents{}",
            c.policy,
            c.applied_cpu_cores,
            c.target_cpu_cores,
            c.applied_memory_bytes as f64 / (1u64 << 30) as f64,
            c.target_memory_bytes as f64 / (1u64 << 30) as f64,
            c.offline_parents,
            if c.held {
                " (held by the protection ladder)"
            } else {
                ""
            }
        );
        if c.clamped {
            let _ = writeln!(
                out,
                "  CLAMPED: the rule leaves offline memory no room; its floor {:.1} GiB applies (capacity.memory_floor, capacity.reserved_daemons)",
                c.memory_floor_bytes as f64 / (1u64 << 30) as f64
            );
        }
    }
    if !c.enabled && !c.parents.is_empty() {
        let _ = writeln!(out, "offline parents (capacity rule off):");
    }
    out.push_str(&parent_lines(&c.parents, "  "));
    let _ = writeln!(
        out,
        "protection: stage {}, scheduling {}{}",
        s.protection.stage,
        if s.protection.scheduling_open {
            "open"
        } else {
            "closed"
        },
        if s.protection.dry_run {
            ", DRY RUN"
        } else {
            ""
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "sampler: {} ticks of {:.0}ms, lag {:.1}ms (max {:.1}ms), map read {:.3}ms, {} / {} map entries",
        h.ticks_total,
        s.tick_seconds * 1e3,
        h.tick_lag_seconds * 1e3,
        h.tick_lag_max_seconds * 1e3,
        h.map_read_seconds * 1e3,
        h.map_entries,
        h.map_capacity
    );
    let _ = writeln!(
        out,
        "         {} sched_switch events, {} dropped credits, {} read errors, {} failed reads, {} rescans (last {:.1}ms)",
        h.program_runs_total,
        h.dropped_total,
        h.read_errors_total,
        h.read_failures_total,
        h.rescans_total,
        h.rescan_seconds * 1e3
    );
    out.push_str(&render_network(&s.network));
    out
}

/// The network part of `enforcer status`.
fn render_network(n: &NetworkSnapshot) -> String {
    let mut out = String::new();
    let v = &n.view;
    if !v.enabled {
        return "network: off (network.enabled = false)\n".into();
    }
    let _ = writeln!(
        out,
        "network: {} {}{}, capacity {}",
        v.interface,
        if v.interface_present {
            "present"
        } else {
            "MISSING"
        },
        if v.shaping {
            ", shaping"
        } else {
            ", sight only"
        },
        rate_str(v.capacity_bytes_per_second)
    );
    let _ = writeln!(
        out,
        "  offline limit: egress {} ingress {} (target {} / {}){}",
        rate(v.offline_limit.egress),
        rate(v.offline_limit.ingress),
        rate(v.offline_limit_target.egress),
        rate(v.offline_limit_target.ingress),
        if v.dry_run { " [dry run]" } else { "" }
    );
    let _ = writeln!(
        out,
        "  online: tx {} rx {}   offline: tx {} rx {}{}",
        rate(v.online_rate.egress),
        rate(v.online_rate.ingress),
        rate(v.offline_rate.egress),
        rate(v.offline_rate.ingress),
        if v.offline_over_share {
            "   OFFLINE OVER ITS SHARE"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  tc: {} interfaces managed, {} passes, {} changes, {} failures, last pass {:.1} ms",
        v.tc.managed,
        v.tc.passes_total,
        v.tc.changes_total,
        v.tc.failures_total,
        v.tc.last_pass_seconds * 1e3
    );
    for c in &v.tc.conflicts {
        let _ = writeln!(out, "  conflict: {c}");
    }
    if let Some(e) = &v.tc.last_error {
        let _ = writeln!(out, "  last error: {e}");
    }
    if !v.interfaces.is_empty() {
        let _ = writeln!(
            out,
            "  {:<16} {:<9} {:<8} {:>12} {:>12}  NAMESPACE",
            "INTERFACE", "KIND", "CLASS", "RX", "TX"
        );
        for i in &v.interfaces {
            let _ = writeln!(
                out,
                "  {:<16} {:<9} {:<8} {:>12} {:>12}  {}{}",
                i.name,
                i.kind,
                i.class,
                rate(i.rx_bytes_per_second),
                rate(i.tx_bytes_per_second),
                i.namespace,
                if i.shaped { "  (shaped)" } else { "" }
            );
        }
    }
    out
}

/// One line per offline parent with what the kernel has on it (read back from cgroupfs every
/// tick, never what the daemon believes it wrote), whether or not the capacity rule is on: a
/// freeze or a squeeze of the ladder shows here too.
pub(super) fn parent_lines(parents: &[ParentState], indent: &str) -> String {
    let mut out = String::new();
    for p in parents {
        let _ = writeln!(
            out,
            "{indent}/{}: {}quota {}, memory limit {} (read back from the kernel)",
            p.path,
            if p.frozen { "FROZEN, " } else { "" },
            p.cpu_quota_cores
                .map_or("none".to_string(), |q| format!("{q:.2} cores")),
            p.memory_limit_bytes.map_or("none".to_string(), |b| format!(
                "{:.1} GiB",
                b as f64 / (1u64 << 30) as f64
            )),
        );
    }
    out
}
