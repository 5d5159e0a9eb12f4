//! `enforcer explain`: the protection ladder's state and why, with the last actions.

use std::fmt::Write as _;

use super::{journal::render_journal, status::parent_lines};
use crate::{actuators::journal::Entry, surfaces::snapshot::Snapshot};

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
    if !s.capacity.parents.is_empty() {
        let _ = writeln!(out, "  offline parents:");
        out.push_str(&parent_lines(&s.capacity.parents, "    "));
    }
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
    let c = &s.capacity;
    if c.enabled && c.clamped {
        let _ = writeln!(
            out,
            "  offline memory capacity CLAMPED: the {} rule leaves offline memory no room, so its floor {:.1} GiB applies; no limit is set below what offline work uses (see capacity.reserved_daemons, capacity.memory_floor)",
            c.policy,
            c.memory_floor_bytes as f64 / (1u64 << 30) as f64
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
