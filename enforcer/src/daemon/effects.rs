//! What the controllers decide, as data, and the one step that carries it out through the
//! choke point. Controllers never touch the kernel: they return [`Effect`]s, the tick hands
//! them to [`apply`] in order, and each controller learns what happened from the
//! [`Done`] paired with its effect.

use crate::{
    actuators::{
        Actuator, Request,
        isolation::Previous,
        journal::{JournalError, Outcome},
    },
    policy::ladder::{Stage, Trigger},
};

/// One thing to do to the node.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A cgroup operation (CPU quota, memory limit, freeze, thaw, kill).
    Cgroup(Request),
    /// Tell the schedulers whether this node takes new offline work.
    Gate {
        stage: Stage,
        open: bool,
        trigger: Trigger,
    },
    /// A node-wide event with no target (`declare_sick`, `clear_sick`, `capacity_clamped`).
    NodeEvent {
        stage: String,
        action: &'static str,
        reason: serde_json::Value,
    },
    /// New processes of offline cgroups: one journaled batch.
    Isolate {
        batch: Vec<(String, Vec<i32>)>,
        oom_score_adj: i32,
        nice: i32,
    },
    /// Put back what isolation changed, for processes no longer offline.
    RestoreIsolation(Vec<(i32, String, Previous)>),
}

/// What came of an effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    Outcome(Outcome),
    /// The processes isolated, with what each had before.
    Isolated(Vec<(i32, String, Previous)>),
}

/// Carries out `effects` in order through the choke point. Fails only when the journal
/// cannot be written: then the effects after the failing one are not applied.
pub fn apply(
    actuator: &mut Actuator,
    effects: Vec<Effect>,
) -> Result<Vec<(Effect, Done)>, JournalError> {
    let mut out = Vec::with_capacity(effects.len());
    for effect in effects {
        let done = match &effect {
            Effect::Cgroup(req) => Done::Outcome(actuator.apply(req)?),
            Effect::Gate {
                stage,
                open,
                trigger,
            } => Done::Outcome(actuator.scheduling_gate(stage.name(), *open, *trigger)?),
            Effect::NodeEvent {
                stage,
                action,
                reason,
            } => Done::Outcome(actuator.node_event(stage, action, reason.clone())?),
            Effect::Isolate {
                batch,
                oom_score_adj,
                nice,
            } => Done::Isolated(actuator.isolate(batch, *oom_score_adj, *nice)?),
            Effect::RestoreIsolation(items) => {
                actuator.restore_isolation(items)?;
                Done::Outcome(Outcome::Applied)
            }
        };
        out.push((effect, done));
    }
    Ok(out)
}
