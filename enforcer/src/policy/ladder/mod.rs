//! The protection ladder (SPEC §4) as a pure state machine: signals in, actions out, time
//! injected. Nothing here touches the kernel; the daemon executes the actions through the
//! actuator choke point, which refuses any target that is not offline.
//!
//! Stages go up one at a time while a trigger holds (each step after its own delay), and
//! down one at a time after the node has stayed healthy for `recover_hold` (hysteresis:
//! recovery thresholds sit below the trigger thresholds, so a signal oscillating around a
//! threshold cannot make the ladder flap).

use std::time::Duration;

mod types;

pub use types::{Action, Decision, LadderConfig, OfflineUnit, Resource, Signals, Stage, Trigger};

#[derive(Debug, Clone)]
pub struct Ladder {
    config: LadderConfig,
    stage: Stage,
    /// Since when a trigger has held without interruption.
    triggered_since: Option<u64>,
    /// Since when the node has been below every recovery threshold.
    healthy_since: Option<u64>,
    /// When the current stage was entered.
    stage_since: u64,
    last_kill: Option<u64>,
    last_trigger: Option<Trigger>,
    frozen: bool,
    /// Adopted from a previous daemon (offline work left frozen or squeezed): until this
    /// time the signals' window fills, then the ladder releases at once if nothing holds, or
    /// resumes at throttle if a trigger does.
    adopting_until: Option<u64>,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

impl Ladder {
    pub fn new(config: LadderConfig) -> Ladder {
        Ladder {
            config,
            stage: Stage::Normal,
            triggered_since: None,
            healthy_since: None,
            stage_since: 0,
            last_kill: None,
            last_trigger: None,
            frozen: false,
            adopting_until: None,
        }
    }

    /// Takes over what a previous daemon left: offline work squeezed (and `frozen`) at
    /// throttle. After `settle` (time for the signals' window to fill) the ladder decides on
    /// fresh signals: released at once if no trigger holds — no `recover_hold` wait, the
    /// node never asked for this daemon's squeeze — or resumed at throttle, without thawing
    /// and freezing again, if one does.
    pub fn adopt(&mut self, now: u64, frozen: bool, settle: Duration) {
        self.stage = Stage::Throttle;
        self.stage_since = now;
        self.frozen = frozen;
        self.adopting_until = Some(now + ns(settle));
    }

    /// Whether the ladder is still waiting to decide on what it adopted.
    pub fn adopting(&self) -> bool {
        self.adopting_until.is_some()
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Whether the ladder has frozen offline work (and not yet thawed it).
    pub fn frozen(&self) -> bool {
        self.frozen
    }

    pub fn config(&self) -> &LadderConfig {
        &self.config
    }

    /// The trigger that holds now, if any; the most severe wins (memory before CPU, since
    /// memory pressure ends in the OOM killer while CPU pressure only slows things down).
    pub fn trigger(&self, s: &Signals) -> Option<Trigger> {
        let c = &self.config;
        if s.reclaim_stall_per_second > c.reclaim_stall_trigger {
            Some(Trigger::DirectReclaim {
                stall_per_second: s.reclaim_stall_per_second,
                threshold: c.reclaim_stall_trigger,
            })
        } else if s.node_memory > c.memory_trigger {
            Some(Trigger::NodeMemory {
                value: s.node_memory,
                threshold: c.memory_trigger,
            })
        } else if s.node_cpu > c.cpu_trigger {
            Some(Trigger::NodeCpu {
                value: s.node_cpu,
                threshold: c.cpu_trigger,
            })
        } else {
            None
        }
    }

    fn healthy(&self, s: &Signals) -> bool {
        let c = &self.config;
        s.node_cpu < c.cpu_recover
            && s.node_memory < c.memory_recover
            && s.reclaim_stall_per_second <= c.reclaim_stall_trigger / 2.0
    }

    fn enter(&mut self, stage: Stage, at: u64) {
        self.stage = stage;
        self.stage_since = at;
    }

    /// Advances the ladder to `s.at_ns` and returns what to do, in order.
    pub fn step(&mut self, s: &Signals) -> Vec<Decision> {
        let now = s.at_ns;
        let trigger = self.trigger(s);
        let mut out = Vec::new();
        if let Some(until) = self.adopting_until {
            if now < until {
                return out;
            }
            self.adopting_until = None;
            if trigger.is_none() {
                self.release_adopted(now, &mut out);
                return out;
            }
            // A trigger holds: carry on from throttle as if this daemon had got there.
        }
        match trigger {
            Some(t) => {
                self.healthy_since = None;
                self.last_trigger = Some(t);
                let since = *self.triggered_since.get_or_insert(now);
                if now - since >= ns(self.config.sustain) {
                    self.escalate(now, t, s, &mut out);
                }
            }
            None => {
                self.triggered_since = None;
                if self.healthy(s) {
                    let since = *self.healthy_since.get_or_insert(now);
                    if self.stage != Stage::Normal && now - since >= ns(self.config.recover_hold) {
                        self.step_down(now, &mut out);
                        // The next step down needs another full hold.
                        self.healthy_since = Some(now);
                    }
                } else {
                    // Between the recovery and trigger thresholds: hold the stage.
                    self.healthy_since = None;
                }
            }
        }
        out
    }

    fn escalate(&mut self, now: u64, t: Trigger, s: &Signals, out: &mut Vec<Decision>) {
        let c = self.config.clone();
        let in_stage = now - self.stage_since;
        let decide = |stage, action| Decision {
            stage,
            action,
            trigger: t,
        };
        match self.stage {
            Stage::Normal => {
                self.enter(Stage::StopScheduling, now);
                out.push(decide(
                    Stage::StopScheduling,
                    Action::SchedulingGate { open: false },
                ));
                if c.throttle_after.is_zero() {
                    self.enter_throttle(now, t, out);
                }
            }
            Stage::StopScheduling => {
                if in_stage >= ns(c.throttle_after) {
                    self.enter_throttle(now, t, out);
                }
            }
            Stage::Throttle => {
                if !self.frozen && in_stage >= ns(c.freeze_after) {
                    self.frozen = true;
                    out.push(decide(Stage::Throttle, Action::FreezeOffline));
                }
                if in_stage >= ns(c.evict_after) {
                    self.enter(Stage::Evict, now);
                    self.kill_next(now, t, s, out);
                }
            }
            Stage::Evict => {
                let cooled = self
                    .last_kill
                    .is_none_or(|k| now - k >= ns(c.evict_cooldown));
                if cooled {
                    self.kill_next(now, t, s, out);
                }
            }
            Stage::NodeSick => {
                // Offline work that shows up on a node declared sick (a container
                // restarted, work placed before the schedulers saw the gate) is evicted
                // too, at the same pace; the node stays declared sick.
                let cooled = self
                    .last_kill
                    .is_none_or(|k| now - k >= ns(c.evict_cooldown));
                if cooled && let Some(victim) = pick_victim(&s.offline, resource_of(t)) {
                    self.last_kill = Some(now);
                    out.push(Decision {
                        stage: Stage::NodeSick,
                        action: Action::Kill {
                            id: victim.id,
                            priority: victim.priority,
                        },
                        trigger: t,
                    });
                }
            }
        }
    }

    /// Squeeze the quota and memory limits first; freeze at once only when configured so.
    fn enter_throttle(&mut self, now: u64, t: Trigger, out: &mut Vec<Decision>) {
        self.enter(Stage::Throttle, now);
        let decide = |action| Decision {
            stage: Stage::Throttle,
            action,
            trigger: t,
        };
        out.push(decide(Action::ThrottleOffline));
        if self.config.freeze_after.is_zero() {
            self.frozen = true;
            out.push(decide(Action::FreezeOffline));
        }
    }

    fn kill_next(&mut self, now: u64, t: Trigger, s: &Signals, out: &mut Vec<Decision>) {
        match pick_victim(&s.offline, resource_of(t)) {
            Some(victim) => {
                self.last_kill = Some(now);
                out.push(Decision {
                    stage: Stage::Evict,
                    action: Action::Kill {
                        id: victim.id,
                        priority: victim.priority,
                    },
                    trigger: t,
                });
            }
            None => {
                self.enter(Stage::NodeSick, now);
                out.push(Decision {
                    stage: Stage::NodeSick,
                    action: Action::DeclareSick,
                    trigger: t,
                });
            }
        }
    }

    fn step_down(&mut self, now: u64, out: &mut Vec<Decision>) {
        let decide = |stage, action| Decision {
            stage,
            action,
            trigger: Trigger::Recovered,
        };
        match self.stage {
            Stage::NodeSick => {
                self.enter(Stage::Evict, now);
                out.push(decide(Stage::Evict, Action::ClearSick));
            }
            Stage::Evict => self.enter(Stage::Throttle, now),
            Stage::Throttle => {
                self.enter(Stage::StopScheduling, now);
                if self.frozen {
                    self.frozen = false;
                    out.push(decide(Stage::StopScheduling, Action::ThawOffline));
                }
                out.push(decide(Stage::StopScheduling, Action::RestoreOffline));
            }
            Stage::StopScheduling => {
                self.enter(Stage::Normal, now);
                out.push(decide(Stage::Normal, Action::SchedulingGate { open: true }));
            }
            Stage::Normal => {}
        }
    }

    /// Releases what was adopted: thaw, the capacity rule's limits back, scheduling open.
    fn release_adopted(&mut self, now: u64, out: &mut Vec<Decision>) {
        let decide = |stage, action| Decision {
            stage,
            action,
            trigger: Trigger::Adopted,
        };
        if self.frozen {
            self.frozen = false;
            out.push(decide(Stage::StopScheduling, Action::ThawOffline));
        }
        out.push(decide(Stage::StopScheduling, Action::RestoreOffline));
        out.push(decide(Stage::Normal, Action::SchedulingGate { open: true }));
        self.enter(Stage::Normal, now);
        self.healthy_since = None;
        self.triggered_since = None;
    }

    /// A one-paragraph account of where the ladder stands, for `enforcer explain`.
    pub fn explain(&self, now_ns: u64) -> String {
        let held = |since: Option<u64>| since.map(|t| (now_ns.saturating_sub(t)) as f64 / 1e9);
        if let Some(until) = self.adopting_until {
            return format!(
                "stage {:?} adopted from the previous daemon (offline work {}); deciding on fresh signals in {:.1}s",
                self.stage,
                if self.frozen {
                    "frozen and throttled"
                } else {
                    "throttled"
                },
                until.saturating_sub(now_ns) as f64 / 1e9,
            );
        }
        format!(
            "stage {:?} for {:.1}s; trigger {}; healthy for {}",
            self.stage,
            now_ns.saturating_sub(self.stage_since) as f64 / 1e9,
            match (self.triggered_since, self.last_trigger) {
                (Some(_), Some(t)) => format!(
                    "{t:?} held {:.1}s",
                    held(self.triggered_since).unwrap_or(0.0)
                ),
                _ => "none".to_string(),
            },
            held(self.healthy_since).map_or("-".to_string(), |h| format!("{h:.1}s")),
        )
    }
}

/// Lowest priority first (`debug`, then `P3`, `P2`, `P1`); within a priority, the largest
/// user of the resource under pressure.
pub fn pick_victim(units: &[OfflineUnit], resource: Resource) -> Option<&OfflineUnit> {
    units.iter().max_by(|a, b| {
        a.priority.cmp(&b.priority).then_with(|| match resource {
            Resource::Cpu => a.cpu_cores.total_cmp(&b.cpu_cores),
            Resource::Memory => a.memory_bytes.cmp(&b.memory_bytes),
        })
    })
}

/// The scarce resource a trigger is about: victims are chosen by their use of it.
fn resource_of(t: Trigger) -> Resource {
    match t {
        Trigger::NodeCpu { .. } => Resource::Cpu,
        _ => Resource::Memory,
    }
}

#[cfg(test)]
mod tests;
