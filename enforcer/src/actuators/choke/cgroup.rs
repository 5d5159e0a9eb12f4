//! Cgroup operations through the choke point.

use std::time::Instant;

use super::{
    Actuator,
    pending::FollowUp,
    transaction::{Head, Settle},
};
use crate::{
    actuators::{
        Operation, Request,
        cgroupfs::{self, CgroupDirs, KillProgress, LimitKind},
        journal::{JournalError, Outcome},
    },
    model::Class,
};

impl Actuator {
    /// The choke point for a cgroup: the target is classified again with the rules in
    /// force, anything not offline (or a hierarchy root) refused. Returns what happened;
    /// fails only if the journal cannot be written, in which case nothing was applied. A
    /// freeze the kernel has not completed within `cgroupfs::FREEZE_SPIN` returns
    /// [`Outcome::Intent`]: its outcome is journaled by a later [`Actuator::settle`].
    pub fn apply(&mut self, req: &Request) -> Result<Outcome, JournalError> {
        let rel = req.target.trim_start_matches('/').to_string();
        let class = self.classify(&rel);
        // The one thing done to a cgroup that is not offline (any more): giving back what
        // the effects record says enforcer set on it while it was (a thaw, a limit put
        // back). Refusing that would leave online work frozen or squeezed by enforcer.
        let gives_back_a_hold = !rel.is_empty() && self.record.holds(&rel, &req.op);
        let refusal = ((class.class != Class::Offline && !gives_back_a_hold) || rel.is_empty())
            .then(|| {
                format!(
                    "refused: {} is {} (rule {}), only offline cgroups are acted on",
                    if rel.is_empty() { "/" } else { &rel },
                    class.class,
                    class.rule
                )
            });
        if refusal.is_none()
            && !self.dry_run
            && matches!(
                req.op,
                Operation::Freeze | Operation::Thaw | Operation::Kill
            )
        {
            // A freeze, thaw or kill after a freeze or kill still settling ends its
            // follow-up first (a limit written meanwhile does not get in its way).
            self.supersede(&rel, req.op.name())?;
        }
        let head = Head {
            stage: req.stage.clone(),
            action: req.op.name().to_string(),
            target: Some(rel.clone()),
            class: Some(class.class.to_string()),
            priority: class.priority.map(|p| p.to_string()),
            reason: serde_json::json!({ "trigger": req.reason, "request": req.op }),
            detail: None,
        };
        let (outcome, _) = self.transact(head, refusal, |a| {
            // What enforcer takes (a freeze, a limit) is written ahead: a daemon killed
            // during or after the write leaves its successor the knowledge of what it owns.
            // What it gives back (a thaw, a kill, a limit lifted) is written after it
            // succeeded: a crash in between, or a failed write, must leave the record
            // saying the cgroup is still held, so that the successor puts it right.
            let gives_back = matches!(
                req.op,
                Operation::Thaw
                    | Operation::Kill
                    | Operation::CpuLimit { cores: None }
                    | Operation::MemoryLimit { bytes: None }
            );
            let note = |a: &mut Actuator, op: &Operation| {
                if let Err(e) = a.record.note(&rel, op, &req.stage) {
                    tracing::error!("effects record: {e}; applying anyway (protection first)");
                }
            };
            let dirs = CgroupDirs::resolve(&a.layout, &rel);
            let limit = match req.op {
                Operation::CpuLimit { .. } => Some(LimitKind::Cpu),
                Operation::MemoryLimit { .. } => Some(LimitKind::Memory),
                _ => None,
            };
            // Before enforcer's first write of a limit, what the files hold: giving the
            // limit back restores it (persisted with the note, ahead of the write).
            if let Some(kind) = limit.filter(|_| !gives_back)
                && a.record.before(&rel, kind).is_none()
            {
                match cgroupfs::read_limit(&dirs, kind) {
                    Ok(files) => a.record.remember_before(&rel, files),
                    Err(e) => tracing::warn!(
                        "{e}: the limit from before enforcer is unknown; giving it back lifts it"
                    ),
                }
            }
            match req.op {
                // A v1 kill freezes the cgroup first: held until the kill is done.
                Operation::Kill => note(a, &Operation::Freeze),
                _ if !gives_back => note(a, &req.op),
                _ => {}
            }
            let before = limit
                .filter(|_| gives_back)
                .and_then(|kind| Some((kind, a.record.before(&rel, kind)?)));
            let result = match (&req.op, before) {
                (_, Some((kind, files))) => cgroupfs::restore_limit(&dirs, kind, &files).map(Some),
                (Operation::CpuLimit { cores }, None) => {
                    cgroupfs::set_cpu_limit(&dirs, *cores).map(|()| None)
                }
                (Operation::MemoryLimit { bytes }, None) => {
                    cgroupfs::set_memory_limit(&dirs, *bytes).map(|()| None)
                }
                (Operation::Freeze, None) => {
                    match cgroupfs::request_freeze(&dirs, Instant::now()) {
                        Ok(Some(follow)) => {
                            return (Some(()), Settle::Later(FollowUp::Freeze(follow)));
                        }
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
                (Operation::Thaw, None) => cgroupfs::thaw(&dirs).map(|()| None),
                (Operation::Kill, None) => match cgroupfs::request_kill(&dirs, Instant::now()) {
                    Ok(KillProgress::Done(n)) => Ok(Some(format!("{n} processes killed"))),
                    // Dying tasks may take seconds to free their memory: the ticks after
                    // this one confirm it (`unsettled.rs`), this one goes on.
                    Ok(KillProgress::Later(follow)) => {
                        return (Some(()), Settle::Later(FollowUp::Kill(follow)));
                    }
                    Err(e) => Err(e),
                },
            };
            if gives_back && result.is_ok() {
                note(a, &req.op);
            }
            (Some(()), Settle::Now(result.map_err(|e| e.to_string())))
        })?;
        if req.op == Operation::Kill
            && outcome == Outcome::Applied
            && let Some(seq) = self.journal.last_seq()
        {
            self.kills.push((rel, seq));
        }
        Ok(outcome)
    }
}
