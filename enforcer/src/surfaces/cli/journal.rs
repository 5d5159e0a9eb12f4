//! `enforcer journal`: the action journal, one line per entry; also the recent actions of
//! `enforcer explain`.

use std::fmt::Write as _;

use crate::actuators::journal::Entry;

/// The pod an entry acted on (name, uid) and the rule that made its target what it is.
fn who(e: &Entry) -> String {
    let mut out = String::new();
    if let Some(pod) = &e.pod {
        let _ = write!(out, " pod {pod}");
    }
    let mut facts = Vec::new();
    if let Some(uid) = &e.pod_uid {
        facts.push(format!("uid {uid}"));
    }
    if let Some(rule) = &e.rule {
        facts.push(format!("rule {rule}"));
    }
    if !facts.is_empty() {
        let _ = write!(out, " ({})", facts.join(", "));
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
            "{when}  #{:<5} {:<15} {:<16} {:<9} {:<6} {:<8} {}{}{}  {}",
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
            who(e),
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
