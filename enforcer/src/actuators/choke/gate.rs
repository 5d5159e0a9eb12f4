//! Node-wide events through the choke point: the scheduling gate and node sick. They have
//! no cgroup target; they are journaled like every other action.

use super::Actuator;
use crate::{
    actuators::journal::{Entry, JournalError, Outcome},
    clock::unix_now,
    policy::ladder::Trigger,
};

impl Actuator {
    /// Journals a node-wide ladder event (no cgroup target).
    pub fn node_event(
        &mut self,
        stage: &str,
        action: &str,
        reason: serde_json::Value,
    ) -> Result<Outcome, JournalError> {
        let outcome = if self.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Applied
        };
        let seq = self.journal.next_seq();
        self.journal.append(&Entry {
            at: unix_now(),
            seq,
            stage: stage.to_string(),
            action: action.to_string(),
            target: None,
            class: None,
            priority: None,
            reason,
            outcome: outcome.clone(),
            detail: None,
        })?;
        Ok(outcome)
    }

    /// Opens or closes the scheduling gate: journaled, then written (not in a dry run).
    pub fn scheduling_gate(
        &mut self,
        stage: &str,
        open: bool,
        trigger: Trigger,
    ) -> Result<Outcome, JournalError> {
        let action = if open {
            "open_scheduling"
        } else {
            "stop_scheduling"
        };
        let outcome = self.node_event(stage, action, serde_json::json!({ "trigger": trigger }))?;
        if !self.dry_run {
            self.write_gate(open, Some(trigger));
        }
        Ok(outcome)
    }

    /// `<state_dir>/scheduling`: "open", or "closed <trigger>" — read by the Yarn
    /// NodeManager health script (deploy/nm-health-check.sh). Written atomically.
    pub fn write_gate(&self, open: bool, trigger: Option<Trigger>) {
        let Some(path) = &self.gate_file else {
            return;
        };
        let text = if open {
            "open\n".to_string()
        } else {
            format!(
                "closed {}\n",
                serde_json::to_string(&trigger).unwrap_or_default()
            )
        };
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let tmp = dir.join(".scheduling.tmp");
        let result = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::error!("{}: cannot write the scheduling gate: {e}", path.display());
        }
    }
}
