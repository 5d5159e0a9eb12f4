//! Node-wide events through the choke point: the scheduling gate and node sick. They have
//! no cgroup target; they go through the same protocol as every other effect.

use super::{Actuator, transaction::Head};
use crate::{
    actuators::{
        journal::{JournalError, Outcome},
        kube::GateState,
    },
    policy::ladder::Trigger,
};

/// Said in the journal's outcome when the Node object is to follow the gate.
const TAINT_QUEUED: &str = "node taint queued";

fn node_head(stage: &str, action: &str, reason: serde_json::Value) -> Head {
    Head {
        stage: stage.to_string(),
        action: action.to_string(),
        target: None,
        class: None,
        priority: None,
        reason,
        detail: None,
    }
}

impl Actuator {
    /// A node-wide event with nothing to apply beyond its record (`declare_sick`, ...).
    pub fn node_event(
        &mut self,
        stage: &str,
        action: &str,
        reason: serde_json::Value,
    ) -> Result<Outcome, JournalError> {
        self.transact(node_head(stage, action, reason), None, |_| {
            (Some(()), Ok(None))
        })
        .map(|(o, _)| o)
    }

    /// Opens or closes the scheduling gate: the file the Yarn NodeManager's health script
    /// reads is written like any other effect — intent, write, outcome (a failed write is
    /// a failed outcome, not just a log line). Then the Node object's taint and condition
    /// are queued for the publisher, which sends them on its own thread: the outcome says
    /// "node taint queued", and the publisher's counters say what came of it.
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
        let reason = serde_json::json!({ "trigger": trigger });
        self.transact(node_head(stage, action, reason), None, |a| {
            let written = a.write_gate(open, Some(trigger));
            (Some(()), a.queue_gate(open, trigger, written))
        })
        .map(|(o, _)| o)
    }

    /// At start-up with nothing to adopt: the gate is written open, journaled as its own
    /// action (`scheduling_open_at_start`), so that `open_scheduling` keeps meaning "the
    /// ladder reopened the node".
    pub fn scheduling_gate_at_start(&mut self) -> Result<Outcome, JournalError> {
        let reason = serde_json::json!({ "trigger": Trigger::Startup });
        self.transact(
            node_head("normal", "scheduling_open_at_start", reason),
            None,
            |a| {
                let written = a.write_gate(true, None);
                (Some(()), a.queue_gate(true, Trigger::Startup, written))
            },
        )
        .map(|(o, _)| o)
    }

    /// Hands the gate to the Node's publisher, after the file (whatever came of the file:
    /// the schedulers that read Kubernetes must not miss a closing because a disk failed);
    /// returns the outcome's detail.
    fn queue_gate(
        &self,
        open: bool,
        trigger: Trigger,
        written: Result<(), String>,
    ) -> Result<Option<String>, String> {
        let Some(k) = &self.kube else {
            return written.map(|()| None);
        };
        k.set_gate(GateState::new(open, trigger));
        match written {
            Ok(()) => Ok(Some(TAINT_QUEUED.into())),
            Err(e) => Err(format!("{e}; {TAINT_QUEUED}")),
        }
    }

    /// `<state_dir>/scheduling`: "open", or "closed <trigger>" — read by the Yarn
    /// NodeManager health script (deploy/nm-health-check.sh). Written atomically.
    fn write_gate(&self, open: bool, trigger: Option<Trigger>) -> Result<(), String> {
        let Some(path) = &self.gate_file else {
            return Ok(());
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
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: cannot write the scheduling gate: {e}", path.display()))
    }
}
