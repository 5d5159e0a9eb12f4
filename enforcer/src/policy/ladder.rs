//! The protection ladder (SPEC §4) as a pure state machine: signals in, actions out, time
//! injected. Nothing here touches the kernel; the daemon executes the actions through the
//! actuator choke point, which refuses any target that is not offline.
//!
//! Stages go up one at a time while a trigger holds (each step after its own delay), and
//! down one at a time after the node has stayed healthy for `recover_hold` (hysteresis:
//! recovery thresholds sit below the trigger thresholds, so a signal oscillating around a
//! threshold cannot make the ladder flap).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Priority;

/// Thresholds and delays, all configurable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderConfig {
    /// Node CPU utilisation (over the window) above which the ladder triggers.
    pub cpu_trigger: f64,
    /// Node CPU utilisation below which the node counts as recovered.
    pub cpu_recover: f64,
    /// Node memory use (fraction of total) above which the ladder triggers.
    pub memory_trigger: f64,
    pub memory_recover: f64,
    /// Direct-reclaim stall (seconds stalled per second, summed over tasks) that triggers.
    pub reclaim_stall_trigger: f64,
    /// How long a trigger must hold before the first step (0: at once).
    pub sustain: Duration,
    /// Delay between stop-scheduling and throttling while still triggered.
    pub throttle_after: Duration,
    /// How long the quota and memory squeeze may work before offline work is also frozen.
    pub freeze_after: Duration,
    /// How long throttling may go on without recovery before the first eviction.
    pub evict_after: Duration,
    /// After a kill, wait this long for recovery before the next one.
    pub evict_cooldown: Duration,
    /// How long the node must stay below the recovery thresholds to step down one stage.
    pub recover_hold: Duration,
}

impl Default for LadderConfig {
    fn default() -> Self {
        LadderConfig {
            cpu_trigger: 0.90,
            cpu_recover: 0.80,
            memory_trigger: 0.90,
            memory_recover: 0.85,
            reclaim_stall_trigger: 0.05,
            sustain: Duration::from_millis(500),
            throttle_after: Duration::ZERO,
            freeze_after: Duration::from_secs(2),
            evict_after: Duration::from_secs(5),
            evict_cooldown: Duration::from_secs(3),
            recover_hold: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Normal,
    StopScheduling,
    Throttle,
    Evict,
    NodeSick,
}

/// What set the ladder off, with the measured value (journaled with every action).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    NodeCpu {
        value: f64,
        threshold: f64,
    },
    NodeMemory {
        value: f64,
        threshold: f64,
    },
    DirectReclaim {
        stall_per_second: f64,
        threshold: f64,
    },
    /// Stepping down: the node has been healthy for `recover_hold`.
    Recovered,
}

/// The resource under pressure, which decides who is evicted first within a priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Cpu,
    Memory,
}

/// One offline unit the ladder may act on. Only offline units are ever given to the ladder;
/// the actuator choke point checks again.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineUnit {
    pub id: u64,
    pub priority: Priority,
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

/// What the node looks like now.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// Monotonic nanoseconds.
    pub at_ns: u64,
    pub node_cpu: f64,
    pub node_memory: f64,
    pub reclaim_stall_per_second: f64,
    /// Offline units that still have processes.
    pub offline: Vec<OfflineUnit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Tell the schedulers whether this node takes new offline work.
    SchedulingGate {
        open: bool,
    },
    /// Shrink the offline parents' CPU quota and memory limit.
    ThrottleOffline,
    /// Freeze every offline unit.
    FreezeOffline,
    /// Thaw every offline unit.
    ThawOffline,
    /// Give the offline parents back the limits of the capacity rule.
    RestoreOffline,
    /// Kill every process of one offline unit.
    Kill {
        id: u64,
        priority: Priority,
    },
    /// All offline work is gone and the node is still unhealthy.
    DeclareSick,
    ClearSick,
}

/// An action with why it is taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub stage: Stage,
    pub action: Action,
    pub trigger: Trigger,
}

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
        }
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
            Stage::NodeSick => {}
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
        let resource = match t {
            Trigger::NodeCpu { .. } => Resource::Cpu,
            _ => Resource::Memory,
        };
        match pick_victim(&s.offline, resource) {
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

    /// A one-paragraph account of where the ladder stands, for `enforcer explain`.
    pub fn explain(&self, now_ns: u64) -> String {
        let held = |since: Option<u64>| since.map(|t| (now_ns.saturating_sub(t)) as f64 / 1e9);
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn config() -> LadderConfig {
        LadderConfig {
            sustain: Duration::from_millis(500),
            throttle_after: Duration::ZERO,
            freeze_after: Duration::ZERO,
            evict_after: Duration::from_secs(2),
            evict_cooldown: Duration::from_secs(1),
            recover_hold: Duration::from_secs(3),
            ..LadderConfig::default()
        }
    }

    fn unit(id: u64, priority: Priority, cpu: f64, mem: u64) -> OfflineUnit {
        OfflineUnit {
            id,
            priority,
            cpu_cores: cpu,
            memory_bytes: mem,
        }
    }

    fn signals(at_ns: u64, cpu: f64, offline: &[OfflineUnit]) -> Signals {
        Signals {
            at_ns,
            node_cpu: cpu,
            node_memory: 0.5,
            reclaim_stall_per_second: 0.0,
            offline: offline.to_vec(),
        }
    }

    fn actions(d: &[Decision]) -> Vec<Action> {
        d.iter().map(|d| d.action.clone()).collect()
    }

    /// Runs the ladder every 100 ms from `from` to `to` with the same signals.
    fn run(
        l: &mut Ladder,
        from: u64,
        to: u64,
        cpu: f64,
        offline: &[OfflineUnit],
    ) -> Vec<(u64, Decision)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            out.extend(
                l.step(&signals(t, cpu, offline))
                    .into_iter()
                    .map(|d| (t, d)),
            );
            t += 100 * MS;
        }
        out
    }

    #[test]
    fn climbs_the_ladder_step_by_step_and_evicts_lowest_priority_first() {
        let mut l = Ladder::new(config());
        let units = [
            unit(1, Priority::P1, 1.0, 0),
            unit(2, Priority::Debug, 0.1, 0),
            unit(3, Priority::P3, 0.5, 0),
            unit(4, Priority::Debug, 0.9, 0),
        ];
        // Below the sustain window nothing happens.
        assert!(run(&mut l, 0, 400 * MS, 0.95, &units).is_empty());
        let d = l.step(&signals(500 * MS, 0.95, &units));
        assert_eq!(
            actions(&d),
            [
                Action::SchedulingGate { open: false },
                Action::ThrottleOffline,
                Action::FreezeOffline
            ]
        );
        assert_eq!(l.stage(), Stage::Throttle);
        match d[0].trigger {
            Trigger::NodeCpu { value, threshold } => assert_eq!((value, threshold), (0.95, 0.90)),
            t => panic!("{t:?}"),
        }
        // Throttling gets evict_after (2 s) to work before the first kill.
        assert!(run(&mut l, 600 * MS, 2400 * MS, 0.95, &units).is_empty());
        let d = l.step(&signals(2500 * MS, 0.95, &units));
        assert_eq!(
            actions(&d),
            [Action::Kill {
                id: 4,
                priority: Priority::Debug
            }],
            "largest debug first"
        );
        // Cooldown: the next victim only after 1 s without recovery.
        let left = [units[0].clone(), units[1].clone(), units[2].clone()];
        assert!(run(&mut l, 2600 * MS, 3400 * MS, 0.95, &left).is_empty());
        let d = l.step(&signals(3500 * MS, 0.95, &left));
        assert_eq!(
            actions(&d),
            [Action::Kill {
                id: 2,
                priority: Priority::Debug
            }]
        );
        let d = l.step(&signals(
            4500 * MS,
            0.95,
            &left[..1]
                .iter()
                .chain(&left[2..])
                .cloned()
                .collect::<Vec<_>>(),
        ));
        assert_eq!(
            actions(&d),
            [Action::Kill {
                id: 3,
                priority: Priority::P3
            }]
        );
        let d = l.step(&signals(5500 * MS, 0.95, &left[..1]));
        assert_eq!(
            actions(&d),
            [Action::Kill {
                id: 1,
                priority: Priority::P1
            }]
        );
        // Nothing offline left and still overloaded: the node is sick, and stays so quietly.
        let d = l.step(&signals(6500 * MS, 0.95, &[]));
        assert_eq!(actions(&d), [Action::DeclareSick]);
        assert_eq!(l.stage(), Stage::NodeSick);
        assert!(run(&mut l, 6600 * MS, 9 * S, 0.95, &[]).is_empty());
    }

    #[test]
    fn steps_back_down_with_hysteresis_restoring_what_it_changed() {
        let mut l = Ladder::new(config());
        run(&mut l, 0, 600 * MS, 0.95, &[]);
        assert_eq!(l.stage(), Stage::Throttle);
        // Below the trigger but above the recovery threshold: hold, do not step down.
        assert!(run(&mut l, 700 * MS, 10 * S, 0.85, &[]).is_empty());
        assert_eq!(l.stage(), Stage::Throttle);
        // Healthy: one stage per recover_hold (3 s).
        let steps = run(&mut l, 10 * S + 100 * MS, 17 * S, 0.30, &[]);
        let got: Vec<(u64, Action)> = steps
            .iter()
            .map(|(t, d)| (*t / MS, d.action.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (13_100, Action::ThawOffline),
                (13_100, Action::RestoreOffline),
                (16_100, Action::SchedulingGate { open: true }),
            ]
        );
        assert!(steps.iter().all(|(_, d)| d.trigger == Trigger::Recovered));
        assert_eq!(l.stage(), Stage::Normal);
    }

    #[test]
    fn quota_first_then_freeze_then_evict() {
        let mut l = Ladder::new(LadderConfig {
            freeze_after: Duration::from_secs(1),
            ..config()
        });
        let units = [unit(1, Priority::P3, 1.0, 0)];
        let steps = run(&mut l, 0, 2600 * MS, 0.95, &units);
        let got: Vec<(u64, Action)> = steps
            .iter()
            .map(|(t, d)| (*t / MS, d.action.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (500, Action::SchedulingGate { open: false }),
                (500, Action::ThrottleOffline),
                (1500, Action::FreezeOffline),
                (
                    2500,
                    Action::Kill {
                        id: 1,
                        priority: Priority::P3
                    }
                ),
            ]
        );
        assert!(l.frozen());
    }

    #[test]
    fn a_signal_oscillating_around_the_threshold_does_not_flap() {
        let mut l = Ladder::new(config());
        let mut changes = 0;
        let mut last = l.stage();
        for i in 0..600u64 {
            // 0.89 / 0.91 alternating every tick for a minute.
            let cpu = if i % 2 == 0 { 0.91 } else { 0.89 };
            l.step(&signals(i * 100 * MS, cpu, &[]));
            if l.stage() != last {
                changes += 1;
                last = l.stage();
            }
        }
        // The trigger never holds for the sustain window, so the ladder never moves.
        assert_eq!(changes, 0);
        assert_eq!(l.stage(), Stage::Normal);

        // Once up, the same oscillation (never below the recovery threshold) keeps it up.
        let mut l = Ladder::new(config());
        run(&mut l, 0, 600 * MS, 0.95, &[]);
        let stage = l.stage();
        for i in 7..600u64 {
            let cpu = if i % 2 == 0 { 0.91 } else { 0.89 };
            let d = l.step(&signals(i * 100 * MS, cpu, &[]));
            assert!(d.iter().all(|d| !matches!(
                d.action,
                Action::ThawOffline | Action::SchedulingGate { open: true }
            )));
        }
        assert!(l.stage() >= stage);
    }

    #[test]
    fn memory_and_reclaim_triggers_and_victims_by_memory() {
        let mut l = Ladder::new(LadderConfig {
            sustain: Duration::ZERO,
            evict_after: Duration::ZERO,
            ..config()
        });
        let units = [
            unit(1, Priority::P2, 2.0, 100),
            unit(2, Priority::P2, 0.1, 900),
        ];
        let mut s = signals(0, 0.1, &units);
        s.reclaim_stall_per_second = 0.2;
        let d = l.step(&s);
        assert!(
            matches!(d[0].trigger, Trigger::DirectReclaim { stall_per_second, .. } if stall_per_second == 0.2)
        );
        s.at_ns = 100 * MS;
        let d = l.step(&s);
        assert_eq!(
            actions(&d),
            [Action::Kill {
                id: 2,
                priority: Priority::P2
            }],
            "largest memory user"
        );
        let l = Ladder::new(config());
        let mut s = signals(0, 0.1, &units);
        s.node_memory = 0.93;
        assert!(matches!(l.trigger(&s), Some(Trigger::NodeMemory { .. })));
    }

    #[test]
    fn victims_are_only_ever_offline_units_given_to_the_ladder() {
        // Property over many random scenarios: every Kill names a unit from the offline
        // list of that step (the daemon only ever puts offline cgroups there, and the
        // actuator choke point refuses anything else again).
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut l = Ladder::new(LadderConfig {
                sustain: Duration::from_millis(rand() % 1000),
                evict_after: Duration::from_millis(rand() % 2000),
                evict_cooldown: Duration::from_millis(rand() % 1000),
                recover_hold: Duration::from_millis(rand() % 3000),
                ..LadderConfig::default()
            });
            let mut units: Vec<OfflineUnit> = (0..rand() % 6)
                .map(|i| {
                    unit(
                        100 + i,
                        Priority::ALL[(rand() % 4) as usize],
                        (rand() % 100) as f64 / 50.0,
                        rand() % 1000,
                    )
                })
                .collect();
            for tick in 0..300u64 {
                let cpu = (rand() % 100) as f64 / 100.0;
                let s = signals(tick * 100 * MS, cpu, &units);
                for d in l.step(&s) {
                    if let Action::Kill { id, priority } = d.action {
                        let victim = units
                            .iter()
                            .position(|u| u.id == id)
                            .expect("victim was offered");
                        assert_eq!(units[victim].priority, priority);
                        // Nobody of a lower priority was left alive.
                        assert!(units.iter().all(|u| u.priority <= priority));
                        units.remove(victim);
                    }
                }
            }
        }
    }
}
