//! The journal protocol of every effect, written once: a refused effect is journaled as
//! refused and never applied; in a dry run it is journaled and not applied; otherwise the
//! intent is journaled (fsynced) before anything is touched, the effect applied, and its
//! outcome journaled under the intent's sequence number — so a daemon killed mid-effect
//! leaves an intent without an outcome, exactly what an operator needs to see. An effect
//! the kernel completes on its own time (a freeze) may leave its outcome to a later tick:
//! the intent stays open and `unsettled.rs` journals the outcome under its number.

use super::{
    Actuator,
    pending::{FollowUp, Unsettled},
};
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

/// When an effect's outcome is known. What applying returns, beside a value for the caller,
/// is this or a plain `Result`: `Ok(detail)` or `Err(what failed)`.
pub(super) enum Settle {
    /// Now: `Ok(detail)` or `Err(what failed)`.
    Now(Result<Option<String>, String>),
    /// A freeze or a kill requested and not complete yet: later ticks follow it up, and
    /// journal its outcome then.
    Later(FollowUp),
}

impl From<Result<Option<String>, String>> for Settle {
    fn from(result: Result<Option<String>, String>) -> Settle {
        Settle::Now(result)
    }
}

impl Actuator {
    /// Runs one effect through the protocol. `refusal` (the choke point's verdict) is
    /// journaled and nothing applied; `apply` runs only after the intent is on disk. An
    /// effect settled later returns [`Outcome::Intent`]: its outcome is still to come.
    pub(super) fn transact<T, S: Into<Settle>>(
        &mut self,
        head: Head,
        refusal: Option<String>,
        apply: impl FnOnce(&mut Actuator) -> (Option<T>, S),
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
        let intent = entry(Outcome::Intent, head.detail.clone());
        self.journal.append(&intent)?;
        let (value, settle) = apply(self);
        let result = match settle.into() {
            Settle::Now(result) => result,
            Settle::Later(follow) => {
                tracing::info!(action = %head.action, target = ?head.target, "requested; confirmed by the ticks after this one");
                self.unsettled.push(Unsettled { intent, follow });
                return Ok((Outcome::Intent, value));
            }
        };
        let (outcome, detail) =
            concluded(&head.action, head.target.as_deref(), &head.stage, result);
        self.journal.append(&entry(outcome.clone(), detail))?;
        Ok((outcome, value))
    }
}

/// The outcome line of an applied effect: `Ok(detail)` is applied, `Err(what failed)` failed;
/// logged once either way. Shared by the effects settled now and those settled later.
pub(super) fn concluded(
    action: &str,
    target: Option<&str>,
    stage: &str,
    result: Result<Option<String>, String>,
) -> (Outcome, Option<String>) {
    match result {
        Ok(detail) => {
            tracing::info!(%action, ?target, %stage, "applied");
            (Outcome::Applied, detail)
        }
        Err(e) => {
            tracing::error!(%action, ?target, "{e}");
            (Outcome::Failed, Some(e))
        }
    }
}
