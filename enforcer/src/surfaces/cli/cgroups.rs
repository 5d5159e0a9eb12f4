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
