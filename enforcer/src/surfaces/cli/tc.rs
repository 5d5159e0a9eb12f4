//! `enforcer tc show` and `enforcer tc apply`: per interface, what is installed, what the
//! policy wants and the changes between them.

use std::fmt::Write;

use super::rate;
use crate::{
    model::tc::{Filter, InterfaceTc, RootQdisc, handle_str, rate_str},
    surfaces::snapshot::TcReport,
};

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
