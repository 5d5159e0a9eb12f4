//! The capacity rule through the controllers: its writes backed off after a failure,
//! never below a parent's use, clamped to its floor, and fed the online usage's peak so
//! that noise does not rewrite the limits every tick.

use std::time::Duration;

use super::*;

#[test]
fn a_failed_capacity_write_is_not_retried_every_tick() {
    let mut c = controllers(true);
    let census = census();
    let first = tick(&mut c, &input(0.0, 0.2), &census, Outcome::Failed);
    assert_eq!(writes(&first).len(), 4, "quota and memory of both parents");
    for t in 1..10 {
        let effects = tick(
            &mut c,
            &input(f64::from(t) * 0.1, 0.2),
            &census,
            Outcome::Failed,
        );
        assert!(writes(&effects).is_empty(), "backing off: {effects:?}");
    }
}

#[test]
fn the_capacity_rule_never_writes_a_memory_limit_below_what_a_parent_uses() {
    let mut c = controllers(true);
    let mut census = census();
    // The Yarn parent uses 40 GiB, far above what the rule gives it (50% of 64 GiB less
    // the reserved daemons, split over two parents).
    census.parents[1].memory_bytes = Some(40 * GIB);
    let mut limits = Vec::new();
    for t in 0..30 {
        for (_, target, op) in writes(&tick(
            &mut c,
            &input(f64::from(t) * 0.1, 0.2),
            &census,
            Outcome::Applied,
        )) {
            if let (true, Operation::MemoryLimit { bytes: Some(b) }) = (target == "yarn", &op) {
                limits.push(*b);
            }
        }
    }
    assert!(!limits.is_empty());
    assert!(
        limits.iter().all(|&b| b >= 40 * GIB),
        "a limit below use: {limits:?}"
    );
}

#[test]
fn a_rule_with_no_room_is_clamped_to_its_floor_and_journaled_once() {
    let mut c = controllers(true);
    let census = census();
    // Online memory fills the node: the rule leaves offline memory nothing.
    let mut i = input(0.0, 0.2);
    i.node.online_memory_bytes = 60 * GIB;
    let mut events = Vec::new();
    for t in 0..40 {
        i.at_ns = t * 100_000_000;
        for e in tick(&mut c, &i, &census, Outcome::Applied) {
            if let Effect::NodeEvent { action, .. } = e {
                events.push(action);
            }
        }
    }
    assert_eq!(events, ["capacity_clamped"]);
    assert!(c.capacity.view.clamped);
    let floor = c.capacity.view.memory_floor_bytes;
    assert_eq!(floor, (0.05 * (64 * GIB) as f64) as u64);
    assert!(c.capacity.view.applied_memory_bytes >= floor);
}

/// The dynamic rule's controllers on the 4-core test node.
fn dynamic_controllers() -> Controllers {
    let mut c = controllers(true);
    c.capacity = CapacityController::new(CapacitySettings {
        enabled: true,
        rule: CapacityConfig::default(),
        usage_window: Duration::from_secs(10),
    });
    c
}

/// The CPU quotas the capacity rule wrote on the BestEffort parent.
fn capacity_quotas(effects: &[Effect]) -> Vec<f64> {
    writes(effects)
        .iter()
        .filter(|(stage, target, _)| stage == "capacity" && target == "kubepods/besteffort")
        .filter_map(|(_, _, op)| cores(op))
        .collect()
}

#[test]
fn noisy_online_usage_does_not_rewrite_the_capacity_every_tick() {
    let mut c = dynamic_controllers();
    let census = census();
    // Online usage jumping between 5% and 15% of the node from one tick to the next (a
    // 1 s rate of bursty request work), for a minute of 100 ms ticks.
    let mut seed: u64 = 7;
    let mut after_settling = Vec::new();
    for t in 0..600 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = (seed >> 33) as f64 / (1u64 << 31) as f64;
        let mut i = input(f64::from(t) * 0.1, 0.3);
        i.node.online_cpu = 0.05 + 0.10 * jitter;
        let quotas = capacity_quotas(&tick(&mut c, &i, &census, Outcome::Applied));
        if t >= 50 {
            after_settling.extend(quotas);
        }
    }
    assert!(
        after_settling.len() <= 2,
        "{} quota writes in 55 s of noise: {after_settling:?}",
        after_settling.len()
    );
}

#[test]
fn an_online_surge_lowers_the_capacity_at_once_and_its_end_raises_it_after_the_window() {
    let mut c = dynamic_controllers();
    let census = census();
    let at = |t: u32, online: f64| {
        let mut i = input(f64::from(t) * 0.1, 0.3);
        i.node.online_cpu = online;
        i
    };
    let mut last = None;
    for t in 0..100 {
        if let Some(&q) =
            capacity_quotas(&tick(&mut c, &at(t, 0.1), &census, Outcome::Applied)).last()
        {
            last = Some(q);
        }
    }
    let calm = last.expect("the rule wrote a quota");
    // Online goes from 10% to 40% of the node: the rule's next step is written at once.
    let surge = capacity_quotas(&tick(&mut c, &at(100, 0.4), &census, Outcome::Applied));
    assert!(
        surge.first().is_some_and(|&q| q < calm),
        "no lower quota on the surge's first tick: {surge:?} (calm {calm})"
    );
    let mut lowest = calm;
    for t in 101..130 {
        for q in capacity_quotas(&tick(&mut c, &at(t, 0.4), &census, Outcome::Applied)) {
            lowest = lowest.min(q);
        }
    }
    // The surge ends at 13 s: nothing is raised while it is within the 10 s window.
    let mut raised_at = None;
    for t in 130..260 {
        for q in capacity_quotas(&tick(&mut c, &at(t, 0.1), &census, Outcome::Applied)) {
            if q > lowest && raised_at.is_none() {
                raised_at = Some(t);
            }
        }
    }
    let raised_at = raised_at.expect("the capacity never came back");
    assert!(
        (229..=232).contains(&raised_at),
        "raised at tick {raised_at}, expected when the surge left the 10 s window (tick 229)"
    );
}
