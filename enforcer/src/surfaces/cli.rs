//! Text renderings of a [`Snapshot`] for the operator's terminal.

use std::fmt::Write as _;

use super::snapshot::{CgroupUsage, Snapshot};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_tables_show_classes_and_paths() {
        let s = crate::surfaces::metrics::tests_support::sample();
        let status = render_status(&s);
        assert!(status.contains("node CPU: 50.0% of 2 CPUs"), "{status}");
        assert!(status.contains("offline  P3"), "{status}");
        let table = render_cgroup_table(&s.cgroups, false);
        assert!(table.contains("/yarn/container_1"), "{table}");
        assert!(table.contains("yarn-container"), "{table}");
    }
}
