//! Text renderings of a [`Snapshot`] for the operator's terminal.

use std::fmt::Write as _;

use super::snapshot::{CgroupUsage, Snapshot};
use crate::actuators::journal::Entry;

fn priority(p: Option<crate::model::Priority>) -> &'static str {
    p.map(|p| p.as_str()).unwrap_or("-")
}

fn path(p: &str) -> String {
    format!("/{p}")
}

/// `enforcer status`.
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
    }
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
    out
}

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
                "{:>7.3} {:>12} {:<8} {:<6} {:>14.3}  {}",
                c.cpu_cores,
                c.id,
                c.class.as_str(),
                priority(c.priority),
                c.cpu_seconds_total,
                path(&c.path)
            );
        } else {
            let _ = writeln!(
                out,
                "{:>12} {:<8} {:<6} {:<22} {}",
                c.id,
                c.class.as_str(),
                priority(c.priority),
                c.rule,
                path(&c.path)
            );
        }
    }
    out
}

/// `enforcer explain`: where the ladder stands and why, against its thresholds.
pub fn render_explain(s: &Snapshot, recent: &[Entry]) -> String {
    let p = &s.protection;
    let mut out = String::new();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        out,
        "protection ladder: {}{}",
        if p.enabled { "enabled" } else { "disabled" },
        if p.dry_run {
            " (DRY RUN: actions journaled, not applied)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "  {}", p.explain);
    let _ = writeln!(
        out,
        "  scheduling open: {}   offline frozen: {}   node sick: {}",
        yes_no(p.scheduling_open),
        yes_no(p.frozen),
        yes_no(p.node_sick)
    );
    if let Some(t) = &p.thresholds {
        let _ = writeln!(
            out,
            "  node CPU {:.1}% (trigger {:.0}%, recover {:.0}%)   memory {:.1}% (trigger {:.0}%, recover {:.0}%)",
            s.node_cpu_utilisation * 100.0,
            t.cpu_trigger * 100.0,
            t.cpu_recover * 100.0,
            p.node_memory_used_ratio * 100.0,
            t.memory_trigger * 100.0,
            t.memory_recover * 100.0
        );
        let _ = writeln!(
            out,
            "  direct reclaim stall {:.3} s/s (trigger {:.3})   sustain {:?}, freeze after {:?}, evict after {:?}, cooldown {:?}, recover hold {:?}",
            p.direct_reclaim_stall_ratio,
            t.reclaim_stall_trigger,
            t.sustain,
            t.freeze_after,
            t.evict_after,
            t.evict_cooldown,
            t.recover_hold
        );
    }
    let _ = writeln!(
        out,
        "  {} offline units killed, {} actions, {} refused; journal {}",
        p.offline_killed_total, p.actions_total, p.refused_total, p.journal
    );
    if !recent.is_empty() {
        let _ = writeln!(out, "recent actions:");
        out.push_str(&render_journal(recent));
    }
    out
}

/// `enforcer journal`: one line per entry.
pub fn render_journal(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        let when = crate::clock::rfc3339(e.at);
        let _ = writeln!(
            out,
            "{when}  #{:<5} {:<15} {:<16} {:<9} {:<6} {:<8} {}{}  {}",
            e.seq,
            e.stage,
            e.action,
            e.class.as_deref().unwrap_or("-"),
            e.priority.as_deref().unwrap_or("-"),
            e.outcome.name().to_string(),
            e.target
                .as_deref()
                .map(|t| format!("/{t}"))
                .unwrap_or_else(|| "(node)".into()),
            e.detail
                .as_deref()
                .map(|d| format!(" [{d}]"))
                .unwrap_or_default(),
            e.reason
                .get("trigger")
                .map(|t| t.to_string())
                .unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests;
