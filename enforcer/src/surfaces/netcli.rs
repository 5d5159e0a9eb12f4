//! Text renderings of the network: the `status` section and `enforcer tc show|apply`.

use std::fmt::Write;

use super::snapshot::{NetworkSnapshot, TcReport};
use crate::model::tc::{Filter, InterfaceTc, RootQdisc, handle_str, rate_str};

fn rate(bytes_per_second: f64) -> String {
    rate_str(bytes_per_second.max(0.0) as u64)
}

/// The network part of `enforcer top`: the offline limit against online use, and the
/// cgroups moving the most bytes.
pub fn render_top(n: &NetworkSnapshot, rows: usize) -> String {
    let mut out = String::new();
    let v = &n.view;
    if !v.enabled {
        return out;
    }
    let _ = writeln!(
        out,
        "\nnetwork {}: online tx {} rx {}   offline tx {} rx {}   offline limit {} / {}{}",
        v.interface,
        rate(v.online_rate.egress),
        rate(v.online_rate.ingress),
        rate(v.offline_rate.egress),
        rate(v.offline_rate.ingress),
        rate(v.offline_limit.egress),
        rate(v.offline_limit.ingress),
        if v.offline_over_share {
            "   OVER SHARE"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:>12} {:>12} {:<8} {:<6}  PATH",
        "RX/s", "TX/s", "CLASS", "PRIO"
    );
    for c in n.cgroups.iter().take(rows) {
        let _ = writeln!(
            out,
            "{:>12} {:>12} {:<8} {:<6}  {}",
            rate(c.rx_bytes_per_second),
            rate(c.tx_bytes_per_second),
            c.class.as_str(),
            c.priority.map_or("-".to_string(), |p| p.to_string()),
            if c.path.is_empty() { "/" } else { &c.path }
        );
    }
    out
}

/// The network part of `enforcer status`.
pub fn render_status(n: &NetworkSnapshot) -> String {
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

fn describe(tc: &InterfaceTc) -> String {
    let mut parts = vec![match &tc.root {
        RootQdisc::Default { qdisc } => format!("root {qdisc} (kernel default)"),
        RootQdisc::Htb { default_minor } => format!("root htb ef00: default {default_minor:x}"),
        RootQdisc::Foreign { qdisc, handle } => {
            format!("root {qdisc} {} (not enforcer's)", handle_str(*handle))
        }
    }];
    for c in &tc.classes {
        parts.push(format!(
            "class {} rate {} ceil {} prio {}",
            handle_str(c.classid),
            rate_str(c.rate),
            rate_str(c.ceil),
            c.prio
        ));
    }
    if tc.ingress {
        parts.push("ingress".into());
    }
    for f in &tc.filters {
        parts.push(match f {
            Filter::Classify { prog_id, .. } => {
                format!("filter bpf enforcer_classify (prog {prog_id})")
            }
            Filter::Redirect { target_ifindex, .. } => {
                format!("filter u32 redirect to ifindex {target_ifindex}")
            }
            Filter::Other { filter, parent, .. } => {
                format!(
                    "filter {filter} under {} (not enforcer's)",
                    handle_str(*parent)
                )
            }
        });
    }
    parts.join("\n      ")
}

/// `enforcer tc show` and `enforcer tc apply`.
pub fn render_tc(r: &TcReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: offline limit egress {} ingress {}{}",
        r.interface,
        rate(r.limits.egress),
        rate(r.limits.ingress),
        if r.survey.bond_present {
            ""
        } else {
            "  (interface not found)"
        }
    );
    for i in &r.survey.interfaces {
        let role = serde_json::to_value(&i.role)
            .ok()
            .and_then(|v| v["role"].as_str().map(String::from))
            .unwrap_or_default();
        let _ = writeln!(out, "\n{} ({role}, namespace {})", i.name, i.namespace);
        let _ = writeln!(out, "  installed: {}", describe(&i.installed));
        match &i.wanted {
            Some(w) => {
                let _ = writeln!(out, "  wanted:    {}", describe(w));
            }
            None => {
                let _ = writeln!(out, "  wanted:    nothing from enforcer");
            }
        }
        if i.changes.is_empty() && i.conflicts.is_empty() {
            let _ = writeln!(out, "  in sync");
        }
        for c in &i.changes {
            let _ = writeln!(out, "  - {c}");
        }
        for c in &i.conflicts {
            let _ = writeln!(out, "  ! {c}");
        }
    }
    for e in &r.survey.errors {
        let _ = writeln!(out, "error: {e}");
    }
    let pending: usize = r.survey.interfaces.iter().map(|i| i.changes.len()).sum();
    match &r.applied {
        Some(a) => {
            let _ = writeln!(
                out,
                "\napplied {} changes, {} failed",
                a.changes.len(),
                a.failures.len()
            );
            for f in &a.failures {
                let _ = writeln!(out, "  failed: {f}");
            }
        }
        None if r.dry_run => {
            let _ = writeln!(out, "\ndry run: {pending} changes shown, none applied");
        }
        None => {
            let _ = writeln!(out, "\n{pending} changes pending");
        }
    }
    out
}
