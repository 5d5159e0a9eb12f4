//! Process isolation through the choke point: one journaled batch per call.

use super::{
    Actuator,
    transaction::{Head, Settle},
};
use crate::{
    actuators::{isolation, journal::JournalError, record::IsolatedProcess},
    model::Class,
};

/// A batch's journal head (node-wide: many cgroups, many processes).
fn head(action: &str, reason: serde_json::Value, detail: String) -> Head {
    Head {
        stage: "isolation".into(),
        action: action.into(),
        target: None,
        class: Some(Class::Offline.to_string()),
        priority: None,
        reason,
        detail: Some(detail),
    }
}

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
            let class = self.classify(rel);
            if class.class != Class::Offline || rel.is_empty() {
                let refused = Head {
                    target: Some(rel.clone()),
                    class: Some(class.class.to_string()),
                    ..head(
                        "isolate",
                        serde_json::json!({"new_processes": pids.len()}),
                        String::new(),
                    )
                };
                let why = format!("refused: {rel} is {} (rule {})", class.class, class.rule);
                self.transact::<(), Settle>(refused, Some(why), |_| unreachable!("refused"))?;
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
        let (_, done) = self.transact(head("isolate", reason, detail.clone()), None, |a| {
            // Written ahead: what each process has now, so that a successor (after a kill
            // -9) puts back the real values, not the ones enforcer set.
            let ahead = accepted.iter().flat_map(|(rel, pids)| {
                pids.iter().filter_map(move |&pid| {
                    let now = isolation::current(pid).ok()?;
                    let start_time = isolation::start_time(pid).ok()?;
                    Some((
                        pid,
                        IsolatedProcess {
                            cgroup: rel.clone(),
                            start_time,
                            oom_score_adj: now.oom_score_adj,
                            nice: now.nice,
                        },
                    ))
                })
            });
            if let Err(e) = a.record.note_isolated(ahead) {
                tracing::error!("effects record: {e}; isolating anyway");
            }
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
            let result = if failures.is_empty() {
                Ok(Some(detail))
            } else {
                Err(format!("{detail}; failed: {}", failures.join(", ")))
            };
            (Some(done), result)
        })?;
        Ok(done.unwrap_or_default())
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
        self.transact(
            head("restore_isolation", reason, detail.clone()),
            None,
            |a| {
                for (pid, _, previous) in items {
                    if let Err(e) = isolation::restore(*pid, *previous)
                        && !isolation::is_gone(&e)
                    {
                        tracing::warn!(pid, "restoring isolation: {e}");
                    }
                }
                if let Err(e) = a.record.forget_isolated(items.iter().map(|(pid, ..)| *pid)) {
                    tracing::error!("effects record: {e}");
                }
                (Some(()), Ok(Some(detail)))
            },
        )
        .map(drop)
    }
}
