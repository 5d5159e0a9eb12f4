//! The controllers' interplay on recorded samples, without a kernel: the ladder, the one
//! owner of the offline limits with the capacity rule behind it, and isolation, driven tick
//! by tick with injected time; every effect "applied" by a recording stand-in for the
//! choke point.

use std::time::{Duration, Instant};

use super::{
    capacity::CapacityController,
    census::{Census, Parent},
    controllers::{Controllers, TickInput},
    effects::{Done, Effect},
    isolate::Isolator,
    limits::OfflineLimits,
    protect::Protector,
};
use crate::{
    actuators::{Operation, isolation::Previous, journal::Outcome, record::EffectsRecord},
    config::{CapacitySettings, IsolationConfig, ProtectionConfig},
    model::Priority,
    policy::{
        capacity::{CapacityConfig, NodeUsage, Policy},
        ladder::{LadderConfig, OfflineUnit, Stage},
    },
};

mod capacity;

const S: u64 = 1_000_000_000;
const GIB: u64 = 1 << 30;

fn controllers(capacity: bool) -> Controllers {
    let ladder = LadderConfig {
        sustain: Duration::ZERO,
        throttle_after: Duration::ZERO,
        freeze_after: Duration::from_secs(1),
        evict_after: Duration::from_secs(2),
        evict_cooldown: Duration::from_secs(1),
        recover_hold: Duration::from_secs(1),
        ..LadderConfig::default()
    };
    let protection = ProtectionConfig {
        enabled: true,
        ladder,
        throttle_cpu_share: 0.05,
        isolation: IsolationConfig::default(),
    };
    Controllers {
        protector: Protector::new(&protection, S, false),
        isolator: Isolator::new(protection.isolation),
        capacity: CapacityController::new(CapacitySettings {
            enabled: capacity,
            rule: CapacityConfig {
                policy: Policy::Static {
                    cpu_share: 0.25,
                    memory_share: 0.5,
                },
                max_step: 0.05,
                ..CapacityConfig::default()
            },
            usage_window: Duration::from_secs(10),
        }),
        limits: OfflineLimits::default(),
    }
}

fn input(at_s: f64, node_cpu: f64) -> TickInput {
    TickInput {
        at_ns: (at_s * S as f64) as u64,
        node_cpu,
        node_memory: 0.3,
        direct_stall_ns_total: 0,
        online_cpus: 4,
        node: NodeUsage {
            cpus: 4.0,
            memory_bytes: 64 * GIB,
            online_cpu: 0.1,
            online_memory_bytes: 8 * GIB,
        },
        minute_of_day: 600,
    }
}

fn unit(id: u64, priority: Priority, cpu: f64) -> OfflineUnit {
    OfflineUnit {
        id,
        priority,
        cpu_cores: cpu,
        memory_bytes: GIB,
    }
}

/// Two offline parents (the BestEffort slice and Yarn) with three units.
fn census() -> Census {
    Census {
        parents: vec![
            Parent {
                path: "kubepods/besteffort".into(),
                memory_bytes: Some(3 * GIB),
                memory_v2: true,
                ..Parent::default()
            },
            Parent {
                path: "yarn".into(),
                memory_bytes: Some(GIB),
                ..Parent::default()
            },
        ],
        units: vec![
            (
                unit(1, Priority::P1, 1.5),
                "kubepods/besteffort/pod-p1".into(),
            ),
            (
                unit(2, Priority::Debug, 0.2),
                "kubepods/besteffort/pod-debug".into(),
            ),
            (unit(3, Priority::P3, 0.9), "yarn/container_3".into()),
        ],
        procs: std::sync::Arc::new(vec![
            ("kubepods/besteffort/pod-p1".into(), vec![100, 101]),
            ("yarn/container_3".into(), vec![300]),
        ]),
    }
}

/// A stand-in for the choke point: every effect takes `outcome`; isolation isolates all.
fn apply(effects: &[Effect], outcome: Outcome) -> Vec<(Effect, Done)> {
    effects
        .iter()
        .map(|e| {
            let done = match e {
                Effect::Isolate { batch, .. } => Done::Isolated(
                    batch
                        .iter()
                        .flat_map(|(rel, pids)| {
                            pids.iter().map(|&p| {
                                (
                                    p,
                                    rel.clone(),
                                    Previous {
                                        oom_score_adj: 0,
                                        nice: 0,
                                    },
                                )
                            })
                        })
                        .collect(),
                ),
                _ => Done::Outcome(outcome.clone()),
            };
            (e.clone(), done)
        })
        .collect()
}

/// One tick: decide, apply with `outcome`, observe; returns the effects.
fn tick(c: &mut Controllers, i: &TickInput, census: &Census, outcome: Outcome) -> Vec<Effect> {
    let now = Instant::now();
    let (signals, _) = c.signals(i);
    let effects = c.decide(signals, i, census, &|_| true, now);
    let results = apply(&effects, outcome);
    c.observe(&results, now);
    effects
}

/// (stage, target, op) of the cgroup effects.
fn writes(effects: &[Effect]) -> Vec<(String, String, Operation)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Cgroup(r) => Some((r.stage.clone(), r.target.clone(), r.op.clone())),
            _ => None,
        })
        .collect()
}

fn cores(op: &Operation) -> Option<f64> {
    match op {
        Operation::CpuLimit { cores } => *cores,
        _ => None,
    }
}

#[test]
fn the_ladder_holds_the_capacity_rule_and_restores_its_values_on_recovery() {
    let mut c = controllers(true);
    let census = census();
    // Quiet node: the capacity rule steps down from the whole node (4 cores) toward 25%
    // (1 core) by at most 5% of the node (0.2 core) per tick, split over two parents.
    let mut per_parent = Vec::new();
    for t in 0..5 {
        let effects = tick(
            &mut c,
            &input(f64::from(t) * 0.1, 0.2),
            &census,
            Outcome::Applied,
        );
        for (stage, _, op) in writes(&effects) {
            assert_eq!(stage, "capacity");
            if let Some(c) = cores(&op) {
                per_parent.push(c);
            }
        }
    }
    assert_eq!(per_parent.first().copied(), Some(1.9), "{per_parent:?}");
    assert!(
        per_parent.windows(2).all(|w| w[0] >= w[1]),
        "{per_parent:?}"
    );

    // Overload: gate closed and the ladder's squeeze in the same tick, and nothing from
    // the capacity rule while it holds.
    let effects = tick(&mut c, &input(1.0, 0.95), &census, Outcome::Applied);
    assert!(matches!(
        effects[0],
        Effect::Gate {
            open: false,
            stage: Stage::StopScheduling,
            ..
        }
    ));
    let squeeze = writes(&effects);
    assert!(
        squeeze.iter().all(|(stage, ..)| stage == "throttle"),
        "{squeeze:?}"
    );
    let throttle_cores: Vec<f64> = squeeze.iter().filter_map(|(_, _, op)| cores(op)).collect();
    // 5% of 4 CPUs split over two parents.
    assert_eq!(throttle_cores, [0.1, 0.1]);
    // On cgroup2 memory.high at the use (memory.max goes a margin above it); on v1, whose
    // one limit is hard, the margin is in the limit itself: growing a little is not a kill.
    assert!(squeeze.contains(&(
        "throttle".into(),
        "kubepods/besteffort".into(),
        Operation::MemoryLimit {
            bytes: Some(3 * GIB)
        }
    )));
    // Yarn uses 1 GiB: with the margin 1.25 GiB, below the floor (5% of the node's 64 GiB
    // shared by two parents, 1.6 GiB): the floor is what it gets, never less.
    let floor = (64 * GIB) / 20 / 2;
    assert!(floor > GIB + (256 << 20));
    assert!(
        squeeze.contains(&(
            "throttle".into(),
            "yarn".into(),
            Operation::MemoryLimit { bytes: Some(floor) }
        )),
        "{squeeze:?}"
    );
    for t in 1..=4 {
        let effects = tick(
            &mut c,
            &input(1.0 + f64::from(t) * 0.25, 0.95),
            &census,
            Outcome::Applied,
        );
        assert!(
            writes(&effects)
                .iter()
                .all(|(stage, ..)| stage != "capacity"),
            "the capacity rule waits while the ladder squeezes: {effects:?}"
        );
    }
    assert_eq!(c.protector.stage(), Stage::Throttle);
    assert!(c.protector.view.frozen, "frozen after freeze_after");

    // Recovery: after recover_hold, thaw and the capacity rule's values back.
    let mut restored = Vec::new();
    let mut t = 2.5;
    while c.protector.stage() != Stage::Normal {
        assert!(t < 10.0, "the ladder never came back down");
        restored.extend(tick(&mut c, &input(t, 0.2), &census, Outcome::Applied));
        t += 0.1;
    }
    let w = writes(&restored);
    assert!(w.iter().any(|(_, _, op)| *op == Operation::Thaw));
    let expected = c.capacity.per_parent(2).unwrap();
    let back: Vec<f64> = w
        .iter()
        .filter(|(stage, ..)| stage == "stop_scheduling")
        .filter_map(|(_, _, op)| cores(op))
        .collect();
    assert_eq!(back, [expected.0, expected.0], "{w:?}");
    assert!(
        restored
            .iter()
            .any(|e| matches!(e, Effect::Gate { open: true, .. }))
    );
    // What the step down wrote is what the capacity rule wants: not written again.
    let after = tick(&mut c, &input(t + 0.1, 0.2), &census, Outcome::Applied);
    assert!(writes(&after).is_empty(), "{after:?}");
}

#[test]
fn without_capacity_the_step_down_lifts_the_limits() {
    let mut c = controllers(false);
    let census = census();
    let first = tick(&mut c, &input(0.0, 0.2), &census, Outcome::Applied);
    assert!(writes(&first).is_empty(), "capacity off writes nothing");
    tick(&mut c, &input(0.1, 0.95), &census, Outcome::Applied);
    let mut t = 0.2;
    let mut all = Vec::new();
    while c.protector.stage() != Stage::Normal {
        assert!(t < 10.0);
        all.extend(tick(&mut c, &input(t, 0.1), &census, Outcome::Applied));
        t += 0.1;
    }
    let lifted: Vec<_> = writes(&all)
        .into_iter()
        .filter(|(_, _, op)| {
            matches!(
                op,
                Operation::CpuLimit { cores: None } | Operation::MemoryLimit { bytes: None }
            )
        })
        .collect();
    assert_eq!(
        lifted.len(),
        4,
        "quota and memory lifted on both parents: {lifted:?}"
    );
}

/// A successor with capacity off, of a daemon that had it on: the capacity limits it finds
/// in the record are given back once (the choke point writes the values from before
/// enforcer), and nothing is written again after that.
#[test]
fn capacity_off_gives_back_the_limits_a_predecessor_set_once() {
    let mut record = EffectsRecord::in_memory();
    for parent in ["kubepods/besteffort", "yarn"] {
        for op in [
            Operation::CpuLimit { cores: Some(1.0) },
            Operation::MemoryLimit {
                bytes: Some(8 * GIB),
            },
        ] {
            record.note(parent, &op, "capacity").unwrap();
        }
    }
    let mut c = controllers(false);
    assert!(
        !c.adopt(&record, 0, Duration::from_secs(1)),
        "nothing frozen or squeezed"
    );
    let census = census();
    let first = writes(&tick(&mut c, &input(0.0, 0.2), &census, Outcome::Applied));
    assert_eq!(first.len(), 4, "{first:?}");
    assert!(first.iter().all(|(stage, _, op)| stage == "capacity"
        && matches!(
            op,
            Operation::CpuLimit { cores: None } | Operation::MemoryLimit { bytes: None }
        )));
    let later = tick(&mut c, &input(0.1, 0.2), &census, Outcome::Applied);
    assert!(writes(&later).is_empty(), "given back once: {later:?}");
}

/// Ticks of an overloaded node (97% CPU, every 250 ms), every effect taking `outcome`, until
/// `n` kills were asked for (at most 20 s); returns their targets and the time reached.
fn overload_until_kills(
    c: &mut Controllers,
    census: &Census,
    n: usize,
    outcome: Outcome,
) -> (Vec<String>, f64) {
    let mut kills = Vec::new();
    let mut t = 0.0;
    while kills.len() < n {
        assert!(t < 20.0, "never asked for {n} kills: {kills:?}");
        for (_, target, op) in writes(&tick(c, &input(t, 0.97), census, outcome.clone())) {
            if op == Operation::Kill {
                kills.push(target);
            }
        }
        t += 0.25;
    }
    (kills, t)
}

#[test]
fn eviction_goes_lowest_priority_first_and_a_dry_run_goes_on_to_the_next() {
    let mut c = controllers(false);
    let census = census();
    let (kills, mut t) = overload_until_kills(&mut c, &census, 3, Outcome::DryRun);
    assert_eq!(
        kills,
        [
            "kubepods/besteffort/pod-debug",
            "yarn/container_3",
            "kubepods/besteffort/pod-p1"
        ]
    );
    // With every unit (dry-run) killed and the node still hot: node sick.
    while c.protector.stage() != Stage::NodeSick {
        assert!(t < 30.0);
        tick(&mut c, &input(t, 0.97), &census, Outcome::DryRun);
        t += 0.25;
    }
    assert_eq!(
        c.protector.view.offline_killed_total, 0,
        "dry run kills nobody"
    );
}

#[test]
fn isolation_takes_new_processes_once_and_gives_back_what_leaves_offline() {
    let mut c = controllers(false);
    let mut census = census();
    let first = tick(&mut c, &input(0.0, 0.2), &census, Outcome::Applied);
    let batches: Vec<_> = first
        .iter()
        .filter_map(|e| match e {
            Effect::Isolate { batch, .. } => Some(batch.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(batches.len(), 1, "one batch: {first:?}");
    assert_eq!(c.isolator.isolated(), 3);
    // Nothing new: nothing to do. A fork: only it.
    assert!(tick(&mut c, &input(0.1, 0.2), &census, Outcome::Applied).is_empty());
    std::sync::Arc::make_mut(&mut census.procs)[1].1.push(301);
    let forked = tick(&mut c, &input(0.2, 0.2), &census, Outcome::Applied);
    assert!(
        matches!(&forked[..], [Effect::Isolate { batch, .. }] if batch == &vec![("yarn/container_3".to_string(), vec![301])])
    );
    // The Yarn container is no longer offline (reclassified): its processes get their
    // values back.
    std::sync::Arc::make_mut(&mut census.procs).remove(1);
    let restored = tick(&mut c, &input(0.3, 0.2), &census, Outcome::Applied);
    assert!(matches!(&restored[..], [Effect::RestoreIsolation(items)] if items.len() == 2));
    assert_eq!(c.isolator.isolated(), 2);
}

#[test]
fn a_parent_that_appears_while_the_ladder_holds_offline_work_frozen_is_frozen_once() {
    let mut c = controllers(false);
    let mut census = census();
    let mut frozen = Vec::new();
    for t in 0..15 {
        for (_, target, op) in writes(&tick(
            &mut c,
            &input(f64::from(t) * 0.1, 0.95),
            &census,
            Outcome::Applied,
        )) {
            if op == Operation::Freeze {
                frozen.push(target);
            }
        }
    }
    assert_eq!(frozen, ["kubepods/besteffort", "yarn"], "the ladder froze");
    // An online pod started in the BestEffort slice: its offline pods are the parents now.
    census.parents[0].path = "kubepods/besteffort/pod-p1".into();
    let mut later = Vec::new();
    for t in 15..20 {
        for (_, target, op) in writes(&tick(
            &mut c,
            &input(f64::from(t) * 0.1, 0.95),
            &census,
            Outcome::Applied,
        )) {
            if op == Operation::Freeze {
                later.push(target);
            }
        }
    }
    assert_eq!(
        later,
        ["kubepods/besteffort/pod-p1"],
        "frozen once, the others not again"
    );
}

#[test]
fn a_kill_still_settling_is_not_asked_again_and_counts_once_concluded() {
    let mut c = controllers(false);
    let census = census();
    // The kernel is slow to empty every victim: each kill's outcome is still to come.
    let (kills, _) = overload_until_kills(&mut c, &census, 2, Outcome::Intent);
    assert_eq!(
        kills,
        ["kubepods/besteffort/pod-debug", "yarn/container_3"],
        "the dying unit is not a candidate again: the next one is"
    );
    assert_eq!(
        c.protector.view.offline_killed_total, 0,
        "nothing concluded yet"
    );
    let settled = |target: &str, outcome| crate::actuators::Settled {
        seq: 7,
        stage: "evict".into(),
        action: "kill".into(),
        target: target.into(),
        outcome,
        detail: None,
    };
    c.protector.observe_settled(&[
        settled("kubepods/besteffort/pod-debug", Outcome::Applied),
        settled("yarn/container_3", Outcome::Failed),
    ]);
    assert_eq!(c.protector.view.offline_killed_total, 1);
    c.protector
        .observe_settled(&[settled("kubepods/besteffort/pod-debug", Outcome::Applied)]);
    assert_eq!(c.protector.view.offline_killed_total, 1, "counted once");
}
