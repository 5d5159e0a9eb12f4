//! Cgroup operations through the choke point.

use super::Actuator;
use crate::{
    actuators::{
        Operation, Request,
        cgroupfs::{self, CgroupDirs},
        journal::{Entry, JournalError, Outcome},
    },
    clock::unix_now,
    model::Class,
};

impl Actuator {
    /// The choke point. Returns what happened; fails only if the journal cannot be
    /// written, in which case nothing was applied.
    pub fn apply(&mut self, req: &Request) -> Result<Outcome, JournalError> {
        let rel = req.target.trim_start_matches('/');
        let class = self.rules.classify(rel);
        let seq = self.journal.next_seq();
        let entry = |outcome, detail: Option<String>| Entry {
            at: unix_now(),
            seq,
            stage: req.stage.clone(),
            action: req.op.name().to_string(),
            target: Some(rel.to_string()),
            class: Some(class.class.to_string()),
            priority: class.priority.map(|p| p.to_string()),
            reason: serde_json::json!({ "trigger": req.reason, "request": req.op }),
            outcome,
            detail,
        };

        // Never act on anything that is not offline, nor on a hierarchy root.
        if class.class != Class::Offline || rel.is_empty() {
            let why = format!(
                "refused: {} is {} (rule {}), only offline cgroups are acted on",
                if rel.is_empty() { "/" } else { rel },
                class.class,
                class.rule
            );
            tracing::warn!("{why}");
            self.journal.append(&entry(Outcome::Refused, Some(why)))?;
            return Ok(Outcome::Refused);
        }
        if self.dry_run {
            self.journal.append(&entry(Outcome::DryRun, None))?;
            tracing::info!(target = rel, op = req.op.name(), "dry run: not applied");
            return Ok(Outcome::DryRun);
        }

        self.journal.append(&entry(Outcome::Intent, None))?;
        // Written ahead: a daemon killed during or after the write leaves its successor
        // the knowledge of what it owns.
        if let Err(e) = self.record.note(rel, &req.op, &req.stage) {
            tracing::error!("effects record: {e}; applying anyway (protection first)");
        }
        let dirs = CgroupDirs::resolve(&self.layout, rel);
        let result = match &req.op {
            Operation::CpuLimit { cores } => cgroupfs::set_cpu_limit(&dirs, *cores).map(|()| None),
            Operation::MemoryLimit { bytes } => {
                cgroupfs::set_memory_limit(&dirs, *bytes).map(|()| None)
            }
            Operation::Freeze => cgroupfs::set_frozen(&dirs, true).map(|()| None),
            Operation::Thaw => cgroupfs::set_frozen(&dirs, false).map(|()| None),
            Operation::Kill => cgroupfs::kill_all(&dirs, self.kill_timeout)
                .map(|n| Some(format!("{n} processes killed"))),
        };
        match result {
            Ok(detail) => {
                tracing::info!(target = rel, op = req.op.name(), stage = %req.stage, "applied");
                self.journal.append(&entry(Outcome::Applied, detail))?;
                Ok(Outcome::Applied)
            }
            Err(e) => {
                tracing::error!(target = rel, op = req.op.name(), "{e}");
                self.journal
                    .append(&entry(Outcome::Failed, Some(e.to_string())))?;
                Ok(Outcome::Failed)
            }
        }
    }
}
