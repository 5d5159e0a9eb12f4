//! Unit tests of the ladder over simulated time.
use super::*;
use crate::model::Priority;

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
    // Offline work that appears while the node is sick is evicted too, one a cooldown,
    // without declaring the node sick again.
    let late = [unit(7, Priority::P2, 0.4, 0), unit(8, Priority::P3, 0.2, 0)];
    let d = run(&mut l, 9100 * MS, 10_000 * MS, 0.95, &late);
    assert_eq!(
        d.iter().map(|(_, d)| d.action.clone()).collect::<Vec<_>>(),
        [Action::Kill {
            id: 8,
            priority: Priority::P3
        }],
        "one kill per cooldown, lowest priority first"
    );
    assert_eq!(d[0].1.stage, Stage::NodeSick);
    assert_eq!(l.stage(), Stage::NodeSick);
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

#[test]
fn stage_names_are_their_serde_names() {
    for stage in Stage::ALL {
        assert_eq!(
            serde_json::to_value(stage).unwrap(),
            serde_json::Value::String(stage.name().into())
        );
    }
}

#[test]
fn adopted_squeeze_is_released_at_once_when_nothing_holds() {
    let mut l = Ladder::new(config());
    l.adopt(10 * S, true, Duration::from_millis(1500));
    assert!(l.adopting() && l.frozen() && l.stage() == Stage::Throttle);
    // Nothing decided while the window fills, whatever the signals say.
    assert!(run(&mut l, 10 * S, 11 * S, 0.1, &[]).is_empty());
    let d = run(&mut l, 11 * S + 500 * MS, 11 * S + 500 * MS, 0.1, &[]);
    let acts: Vec<Action> = d.iter().map(|(_, d)| d.action.clone()).collect();
    assert_eq!(
        acts,
        [
            Action::ThawOffline,
            Action::RestoreOffline,
            Action::SchedulingGate { open: true }
        ]
    );
    assert!(d.iter().all(|(_, d)| d.trigger == Trigger::Adopted));
    assert_eq!(l.stage(), Stage::Normal);
    assert!(!l.frozen() && !l.adopting());
}

#[test]
fn adopted_squeeze_resumes_at_throttle_without_a_thaw_while_a_trigger_holds() {
    let mut l = Ladder::new(config());
    let units = [unit(1, Priority::Debug, 0.5, 0)];
    l.adopt(10 * S, true, Duration::from_millis(1500));
    let d = run(&mut l, 10 * S, 11 * S + 900 * MS, 0.97, &units);
    assert!(d.is_empty(), "no thaw, no refreeze while overloaded: {d:?}");
    assert_eq!(l.stage(), Stage::Throttle);
    assert!(l.frozen());
    // And it goes on as usual: eviction once evict_after has passed in throttle.
    let d = run(&mut l, 12 * S, 13 * S, 0.97, &units);
    assert!(
        d.iter()
            .any(|(_, d)| matches!(d.action, Action::Kill { id: 1, .. })),
        "{d:?}"
    );
}
