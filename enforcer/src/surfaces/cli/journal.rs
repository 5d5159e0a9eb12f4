//! `enforcer journal`: the action journal, one line per entry; also the recent actions of
//! `enforcer explain`.

use std::fmt::Write as _;

use crate::actuators::journal::Entry;

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
            e.pod
                .as_deref()
                .map(|p| format!(" pod {p}"))
                .unwrap_or_default(),
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
