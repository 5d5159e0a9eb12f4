//! The journal protocol of every effect, written once: a refused effect is journaled as
//! refused and never applied; in a dry run it is journaled and not applied; otherwise the
//! intent is journaled (fsynced) before anything is touched, the effect applied, and its
//! outcome journaled under the intent's sequence number — so a daemon killed mid-effect
//! leaves an intent without an outcome, exactly what an operator needs to see.

use super::Actuator;
use crate::{
    actuators::journal::{Entry, JournalError, Outcome},
    clock::unix_now,
};

/// What the journal says of an effect, whatever its outcome.
pub(super) struct Head {
    pub stage: String,
    pub action: String,
    /// The cgroup or interface acted on; `None` for node-wide effects.
    pub target: Option<String>,
    pub class: Option<String>,
    pub priority: Option<String>,
    pub reason: serde_json::Value,
    /// Said with the intent (and a dry run).
    pub detail: Option<String>,
}

/// What applying did: `Ok(detail)` or `Err(what failed)`, and a value for the caller.
pub(super) type Applied<T> = (Option<T>, Result<Option<String>, String>);

impl Actuator {
    /// Runs one effect through the protocol. `refusal` (the choke point's verdict) is
    /// journaled and nothing applied; `apply` runs only after the intent is on disk.
    pub(super) fn transact<T>(
        &mut self,
        head: Head,
        refusal: Option<String>,
        apply: impl FnOnce(&mut Actuator) -> Applied<T>,
    ) -> Result<(Outcome, Option<T>), JournalError> {
        let seq = self.journal.next_seq();
        // A cgroup target is named by its pod too, and by the rule that classified it (an
        // interface or a node-wide event has neither).
        let cgroup = head
            .target
            .as_deref()
            .filter(|t| head.class.is_some() && !t.is_empty());
        let pod = cgroup.and_then(|t| self.pods.lookup(t));
        let rule = cgroup
            .filter(|_| head.stage != "network")
            .map(|t| self.classify(t).rule.to_string());
        let entry = |outcome, detail: Option<String>| Entry {
            at: unix_now(),
            seq,
            stage: head.stage.clone(),
            action: head.action.clone(),
            target: head.target.clone(),
            class: head.class.clone(),
            priority: head.priority.clone(),
            reason: head.reason.clone(),
            outcome,
            detail,
            pod: pod.as_ref().map(|c| c.pod.full_name()),
            pod_uid: pod.as_ref().map(|c| c.pod.uid.clone()),
            rule: rule.clone(),
        };
        if let Some(why) = refusal {
            tracing::warn!("{why}");
            self.journal.append(&entry(Outcome::Refused, Some(why)))?;
            return Ok((Outcome::Refused, None));
        }
        if self.dry_run {
            self.journal
                .append(&entry(Outcome::DryRun, head.detail.clone()))?;
            tracing::info!(action = %head.action, target = ?head.target, "dry run: not applied");
            return Ok((Outcome::DryRun, None));
        }
        self.journal
            .append(&entry(Outcome::Intent, head.detail.clone()))?;
        let (value, result) = apply(self);
        let (outcome, detail) = match result {
            Ok(detail) => {
                tracing::info!(action = %head.action, target = ?head.target, stage = %head.stage, "applied");
                (Outcome::Applied, detail)
            }
            Err(e) => {
                tracing::error!(action = %head.action, target = ?head.target, "{e}");
                (Outcome::Failed, Some(e))
            }
        };
        self.journal.append(&entry(outcome.clone(), detail))?;
        Ok((outcome, value))
    }
}
