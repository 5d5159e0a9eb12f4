//! Process isolation through the choke point: one journaled batch per call.

use super::Actuator;
use crate::{
    actuators::{
        isolation,
        journal::{Entry, JournalError, Outcome},
    },
    clock::unix_now,
    model::Class,
};

impl Actuator {
    /// Isolates new processes of offline cgroups (SPEC §3): one journaled batch per call.
    /// Each cgroup is classified again here; a cgroup that is not offline is refused and
    /// journaled, its processes untouched. Returns what each isolated process had before.
    pub fn isolate(
        &mut self,
        batch: &[(String, Vec<i32>)],
        oom_score_adj: i32,
        nice: i32,
    ) -> Result<Vec<(i32, String, isolation::Previous)>, JournalError> {
        let mut accepted = Vec::new();
        for (rel, pids) in batch {
            let class = self.rules.classify(rel);
            if class.class != Class::Offline || rel.is_empty() {
                let seq = self.journal.next_seq();
                self.journal.append(&Entry {
                    at: unix_now(),
                    seq,
                    stage: "isolation".into(),
                    action: "isolate".into(),
                    target: Some(rel.clone()),
                    class: Some(class.class.to_string()),
                    priority: None,
                    reason: serde_json::json!({"new_processes": pids.len()}),
                    outcome: Outcome::Refused,
                    detail: Some(format!(
                        "refused: {rel} is {} (rule {})",
                        class.class, class.rule
                    )),
                })?;
                continue;
            }
            accepted.push((rel.clone(), pids.clone()));
        }
        if accepted.is_empty() {
            return Ok(Vec::new());
        }
        let processes: usize = accepted.iter().map(|(_, p)| p.len()).sum();
        let reason = serde_json::json!({
            "why": "offline processes are the OOM killer's first choice and run at a higher nice than online work",
            "oom_score_adj": oom_score_adj,
            "nice": nice,
            "cgroups": accepted.iter().map(|(r, p)| serde_json::json!({"cgroup": r, "pids": p})).collect::<Vec<_>>(),
        });
        let detail = format!("{processes} processes in {} cgroups", accepted.len());
        if self.dry_run {
            self.node_entry(
                "isolation",
                "isolate",
                Outcome::DryRun,
                reason,
                detail,
                None,
            )?;
            return Ok(Vec::new());
        }
        self.node_entry(
            "isolation",
            "isolate",
            Outcome::Intent,
            reason.clone(),
            detail.clone(),
            None,
        )?;
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for (rel, pids) in &accepted {
            for &pid in pids {
                match isolation::isolate(pid, oom_score_adj, nice) {
                    Ok(previous) => done.push((pid, rel.clone(), previous)),
                    Err(e) if isolation::is_gone(&e) => {}
                    Err(e) => failures.push(format!("{pid}: {e}")),
                }
            }
        }
        let outcome = if failures.is_empty() {
            Outcome::Applied
        } else {
            Outcome::Failed
        };
        let detail = if failures.is_empty() {
            detail
        } else {
            format!("{detail}; failed: {}", failures.join(", "))
        };
        self.node_entry("isolation", "isolate", outcome, reason, detail, None)?;
        Ok(done)
    }

    /// Puts back what [`Actuator::isolate`] changed, for processes whose cgroup is no longer
    /// offline. The one write that may reach a process that is not offline: it only undoes
    /// enforcer's own change, and is journaled like any other.
    pub fn restore_isolation(
        &mut self,
        items: &[(i32, String, isolation::Previous)],
    ) -> Result<(), JournalError> {
        if items.is_empty() {
            return Ok(());
        }
        let reason = serde_json::json!({
            "why": "cgroup no longer offline: restoring what enforcer changed",
            "processes": items.iter().map(|(pid, rel, p)| serde_json::json!({
                "pid": pid, "cgroup": rel, "oom_score_adj": p.oom_score_adj, "nice": p.nice,
            })).collect::<Vec<_>>(),
        });
        let detail = format!("{} processes", items.len());
        if self.dry_run {
            return self
                .node_entry(
                    "isolation",
                    "restore_isolation",
                    Outcome::DryRun,
                    reason,
                    detail,
                    None,
                )
                .map(drop);
        }
        self.node_entry(
            "isolation",
            "restore_isolation",
            Outcome::Intent,
            reason.clone(),
            detail.clone(),
            None,
        )?;
        for (pid, _, previous) in items {
            if let Err(e) = isolation::restore(*pid, *previous)
                && !isolation::is_gone(&e)
            {
                tracing::warn!(pid, "restoring isolation: {e}");
            }
        }
        self.node_entry(
            "isolation",
            "restore_isolation",
            Outcome::Applied,
            reason,
            detail,
            None,
        )
        .map(drop)
    }
}
