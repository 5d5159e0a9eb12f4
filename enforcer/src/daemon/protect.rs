//! The protection ladder as a controller: signals from the tick's sample, decisions from
//! the pure [`Ladder`], effects out. It writes nothing itself: the offline parents' limits
//! are [`OfflineLimits`]'s to write, everything goes through the tick's apply step.

use std::collections::{HashMap, HashSet};

use super::{
    census::Census,
    effects::{Done, Effect},
    limits::OfflineLimits,
};
use crate::{
    actuators::{Operation, Request, journal::Outcome},
    config::ProtectionConfig,
    policy::{
        ladder::{Action, Decision, Ladder, Signals, Stage, Trigger},
        window::RateWindow,
    },
    surfaces::snapshot::ProtectionView,
};

pub struct Protector {
    ladder: Ladder,
    throttle_cpu_share: f64,
    enabled: bool,
    stall_window: RateWindow,
    /// Units a dry run "killed": they stay out of the candidates, so the dry run goes on to
    /// the decisions a real run would make next.
    dry_run_killed: HashSet<u64>,
    /// Kills asked for and not concluded: target path -> unit id, for their outcome (a
    /// kill whose tasks are still exiting is concluded by a later tick's settle). Their
    /// units are not candidates again meanwhile.
    pending_kills: HashMap<String, u64>,
    /// Cgroups a previous daemon froze (from its effects record), thawed with the parents.
    adopted_frozen: Vec<String>,
    /// The parents a freeze was asked for since the ladder froze: a parent that appears
    /// while it is frozen (the old one now has online work below it, a new Yarn parent) is
    /// frozen too, once.
    freeze_asked: HashSet<String>,
    pub view: ProtectionView,
}

/// A ladder stage's name, if `stage` is one (the journal's `stage` of the ladder's actions).
fn is_ladder_stage(stage: &str) -> bool {
    Stage::ALL.iter().any(|s| s.name() == stage)
}

impl Protector {
    pub fn new(config: &ProtectionConfig, window_ns: u64, dry_run: bool) -> Protector {
        Protector {
            ladder: Ladder::new(config.ladder.clone()),
            throttle_cpu_share: config.throttle_cpu_share,
            enabled: config.enabled,
            stall_window: RateWindow::new(window_ns),
            dry_run_killed: HashSet::new(),
            pending_kills: HashMap::new(),
            adopted_frozen: Vec::new(),
            freeze_asked: HashSet::new(),
            view: ProtectionView {
                enabled: config.enabled,
                dry_run,
                stage: Stage::Normal.name().into(),
                scheduling_open: true,
                thresholds: Some(config.ladder.clone()),
                ..Default::default()
            },
        }
    }

    pub fn stage(&self) -> Stage {
        self.ladder.stage()
    }

    /// Takes over what a previous daemon left frozen or squeezed (its effects record):
    /// the ladder decides on fresh signals once `settle` has passed (see [`Ladder::adopt`]).
    pub fn adopt(&mut self, now_ns: u64, frozen: Vec<String>, settle: std::time::Duration) {
        self.ladder.adopt(now_ns, !frozen.is_empty(), settle);
        self.freeze_asked = frozen.iter().cloned().collect();
        self.adopted_frozen = frozen;
        self.view.stage = self.ladder.stage().name().to_string();
        self.view.frozen = self.ladder.frozen();
        self.view.scheduling_open = false;
        self.view.explain = self.ladder.explain(now_ns);
    }

    /// SIGTERM: nothing stays frozen and the gate reopens (a stopped daemon protects
    /// nothing, so it must not hold offline work or the schedulers either); the limits are
    /// `OfflineLimits`'s to put back.
    pub fn shutdown(&mut self, census: &Census) -> Vec<Effect> {
        let mut effects = Vec::new();
        let reason = serde_json::json!({"trigger": "shutdown"});
        self.freeze_asked.clear();
        if self.ladder.frozen() || !self.adopted_frozen.is_empty() {
            let mut targets: Vec<String> = census.parents.iter().map(|p| p.path.clone()).collect();
            for path in self.adopted_frozen.drain(..) {
                if !targets.contains(&path) {
                    targets.push(path);
                }
            }
            effects.extend(targets.into_iter().map(|target| {
                Effect::Cgroup(Request {
                    stage: "shutdown".into(),
                    target,
                    op: Operation::Thaw,
                    reason: reason.clone(),
                })
            }));
        }
        if !self.view.scheduling_open {
            effects.push(Effect::Gate {
                stage: Stage::Normal,
                open: true,
                trigger: Trigger::Shutdown,
            });
            self.view.scheduling_open = true;
        }
        self.view.frozen = false;
        effects
    }

    /// This tick's signals (offline units still to be added), from the node's figures.
    pub fn signals(
        &mut self,
        at_ns: u64,
        node_cpu: f64,
        node_memory: f64,
        direct_stall_ns_total: u64,
    ) -> Signals {
        self.stall_window.push(at_ns, direct_stall_ns_total);
        let signals = Signals {
            at_ns,
            node_cpu,
            node_memory,
            reclaim_stall_per_second: self.stall_window.rate(),
            offline: Vec::new(),
        };
        self.view.node_memory_used_ratio = node_memory;
        self.view.direct_reclaim_stall_ratio = signals.reclaim_stall_per_second;
        signals
    }

    /// Whether the ladder acts this tick (a trigger holds or a stage is active), i.e.
    /// whether it needs the offline units read from the node.
    pub fn engaged(&self, signals: &Signals) -> bool {
        self.enabled
            && (self.ladder.stage() != Stage::Normal || self.ladder.trigger(signals).is_some())
    }

    /// One step of the ladder. `restore_to` is what the offline parents get back when the
    /// ladder steps down (the capacity rule's values, or no limit without it).
    pub fn step(
        &mut self,
        mut signals: Signals,
        census: &Census,
        online_cpus: u32,
        limits: &mut OfflineLimits,
        restore_to: Option<(f64, u64)>,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !self.engaged(&signals) {
            self.view.explain = self.ladder.explain(signals.at_ns);
            return effects;
        }
        let units: Vec<_> = census
            .units
            .iter()
            .filter(|(u, _)| {
                !self.dry_run_killed.contains(&u.id)
                    && !self.pending_kills.values().any(|&id| id == u.id)
            })
            .collect();
        signals.offline = units.iter().map(|(u, _)| u.clone()).collect();
        for d in self.ladder.step(&signals) {
            tracing::warn!(stage = ?d.stage, action = ?d.action, trigger = ?d.trigger, "protection ladder");
            self.decide(
                &d,
                census,
                &units,
                online_cpus,
                limits,
                restore_to,
                &mut effects,
            );
        }
        if self.ladder.frozen() {
            let stage = self.ladder.stage().name();
            for p in &census.parents {
                if self.freeze_asked.insert(p.path.clone()) {
                    effects.push(Effect::Cgroup(Request {
                        stage: stage.to_string(),
                        target: p.path.clone(),
                        op: Operation::Freeze,
                        reason: serde_json::json!({
                            "trigger": "new_parent",
                            "why": "an offline parent appeared while the ladder holds offline work frozen",
                        }),
                    }));
                }
            }
        }
        self.view.stage = self.ladder.stage().name().to_string();
        self.view.frozen = self.ladder.frozen();
        self.view.explain = self.ladder.explain(signals.at_ns);
        effects
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        d: &Decision,
        census: &Census,
        units: &[&(crate::policy::ladder::OfflineUnit, std::sync::Arc<str>)],
        online_cpus: u32,
        limits: &mut OfflineLimits,
        restore_to: Option<(f64, u64)>,
        effects: &mut Vec<Effect>,
    ) {
        let request = |target: &str, op| {
            Effect::Cgroup(Request {
                stage: d.stage.name().to_string(),
                target: target.to_string(),
                op,
                reason: serde_json::to_value(d.trigger).unwrap_or_default(),
            })
        };
        match &d.action {
            Action::SchedulingGate { open } => {
                self.view.scheduling_open = *open;
                effects.push(Effect::Gate {
                    stage: d.stage,
                    open: *open,
                    trigger: d.trigger,
                });
            }
            Action::ThrottleOffline => {
                let per_parent = self.throttle_cpu_share * f64::from(online_cpus)
                    / census.parents.len().max(1) as f64;
                effects.extend(limits.squeeze(d, &census.parents, per_parent));
            }
            Action::RestoreOffline => effects.extend(limits.release(
                d.stage.name(),
                serde_json::to_value(d.trigger).unwrap_or_default(),
                &census.parents,
                restore_to,
            )),
            Action::FreezeOffline => {
                self.freeze_asked = census.parents.iter().map(|p| p.path.clone()).collect();
                effects.extend(
                    census
                        .parents
                        .iter()
                        .map(|p| request(&p.path, Operation::Freeze)),
                )
            }
            Action::ThawOffline => {
                self.freeze_asked.clear();
                // The parents now, and whatever a previous daemon froze besides.
                let mut targets: Vec<String> =
                    census.parents.iter().map(|p| p.path.clone()).collect();
                for path in self.adopted_frozen.drain(..) {
                    if !targets.contains(&path) {
                        targets.push(path);
                    }
                }
                effects.extend(targets.iter().map(|t| request(t, Operation::Thaw)));
            }
            Action::Kill { id, .. } => {
                let Some((_, path)) = units.iter().find(|(u, _)| u.id == *id) else {
                    tracing::warn!(id, "victim vanished before the kill");
                    return;
                };
                self.pending_kills.insert(path.to_string(), *id);
                effects.push(request(path, Operation::Kill));
            }
            Action::DeclareSick => {
                self.view.node_sick = true;
                tracing::error!(trigger = ?d.trigger, "ALERT: node sick: no offline work left and still unhealthy; online work is never killed");
                effects.push(Effect::NodeEvent {
                    stage: d.stage.name().into(),
                    action: "declare_sick",
                    reason: serde_json::json!({ "trigger": d.trigger }),
                });
            }
            Action::ClearSick => {
                self.view.node_sick = false;
                effects.push(Effect::NodeEvent {
                    stage: d.stage.name().into(),
                    action: "clear_sick",
                    reason: serde_json::json!({ "trigger": d.trigger }),
                });
            }
        }
    }

    /// What came of an effect: the ladder's cgroup actions are counted, kills followed up.
    pub fn observe(&mut self, effect: &Effect, done: &Done) {
        let (Effect::Cgroup(req), Done::Outcome(outcome)) = (effect, done) else {
            return;
        };
        if !is_ladder_stage(&req.stage) {
            return;
        }
        self.view.actions_total += 1;
        if *outcome == Outcome::Refused {
            self.view.refused_total += 1;
        }
        if req.op == Operation::Kill && *outcome != Outcome::Intent {
            self.kill_concluded(&req.target, outcome);
        }
    }

    /// Effects a later tick concluded (`Actuator::settle`): a kill whose tasks took longer
    /// than the tick that asked for it.
    pub fn observe_settled(&mut self, settled: &[crate::actuators::Settled]) {
        for s in settled {
            if s.action == Operation::Kill.name() && is_ladder_stage(&s.stage) {
                self.kill_concluded(&s.target, &s.outcome);
            }
        }
    }

    fn kill_concluded(&mut self, target: &str, outcome: &Outcome) {
        let Some(id) = self.pending_kills.remove(target) else {
            return;
        };
        match outcome {
            Outcome::DryRun => {
                self.dry_run_killed.insert(id);
            }
            Outcome::Applied => {
                self.view.offline_killed_total += 1;
                tracing::error!(target = %target, "ALERT: offline unit killed to protect online work");
            }
            _ => {}
        }
    }
}
