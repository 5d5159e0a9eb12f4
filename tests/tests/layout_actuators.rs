//! The actuators through the choke point on whatever cgroup layout this node has (the
//! host's hybrid; pure cgroup2 and pure v1 in the VM matrix): a CPU quota the kernel
//! enforces and lifts, a freeze that stops work and a thaw that resumes it, a kill that
//! leaves a forking unit empty, and a memory limit in the files the layout has.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use enforcer::{
    actuators::{
        Actuator, Operation, Request,
        journal::{Journal, Outcome},
    },
    model::{
        Class, Priority,
        classify::{Rule, RuleSet},
        layout::CgroupLayout,
    },
};
use enforcer_tests::{
    TempDir, actuate::apply_settled, cgroup::cpu_hog, layout::Unit, require_root,
};

const MIB: u64 = 1 << 20;

struct Fixture {
    actuator: Actuator,
    _dir: TempDir,
}

/// The choke point, with a rule that makes `unit` offline.
fn actuator(unit: &Unit) -> Fixture {
    let dir = TempDir::new("enf-lact");
    let rules = Arc::new(RuleSet::new(vec![Rule::path(
        "test",
        regex::Regex::new(&format!("{}$", regex::escape(&unit.name))).unwrap(),
        Class::Offline,
        Some(Priority::P3),
    )]));
    let journal = Journal::open(&dir.path().join("journal.jsonl")).unwrap();
    Fixture {
        actuator: Actuator::new(
            CgroupLayout::discover().expect("layout"),
            rules,
            journal,
            false,
        ),
        _dir: dir,
    }
}

fn apply(f: &mut Fixture, unit: &Unit, op: Operation) {
    let out = apply_settled(
        &mut f.actuator,
        &Request {
            stage: "throttle".into(),
            target: unit.rel.clone(),
            op: op.clone(),
            reason: serde_json::json!({"trigger": "test"}),
        },
    );
    assert_eq!(out, Outcome::Applied, "{op:?} on {}", unit.rel);
}

/// CPU time of `unit` over `d`, in cores.
fn cores_over(unit: &Unit, d: Duration) -> f64 {
    let u0 = unit.cpu_usage_ns();
    std::thread::sleep(d);
    (unit.cpu_usage_ns() - u0) as f64 / 1e9 / d.as_secs_f64()
}

#[test]
fn quota_freeze_thaw_and_memory_limit_on_this_layout() {
    require_root();
    let unit = Unit::create("enf-lact");
    let mut f = actuator(&unit);
    let _hog = unit.spawn(cpu_hog(20.0));

    apply(&mut f, &unit, Operation::CpuLimit { cores: Some(0.2) });
    let quota = unit.cpu_quota_cores().expect("a quota is in force");
    assert!((quota - 0.2).abs() < 0.01, "quota {quota}");
    std::thread::sleep(Duration::from_millis(300));
    let used = cores_over(&unit, Duration::from_secs(1));
    assert!(
        used < 0.3,
        "the hog used {used:.3} cores under a 0.2-core quota"
    );
    assert!(
        unit.cpu_stat("nr_throttled") > 0,
        "the kernel never throttled it"
    );
    apply(&mut f, &unit, Operation::CpuLimit { cores: None });
    assert_eq!(unit.cpu_quota_cores(), None, "the quota is lifted");

    apply(&mut f, &unit, Operation::Freeze);
    std::thread::sleep(Duration::from_millis(200));
    let frozen = cores_over(&unit, Duration::from_millis(500));
    assert!(frozen < 0.02, "frozen work ran: {frozen:.3} cores");
    apply(&mut f, &unit, Operation::Thaw);
    let thawed = cores_over(&unit, Duration::from_millis(500));
    assert!(thawed > 0.1, "thawed work does not run: {thawed:.3} cores");

    if unit.has_memory() {
        apply(
            &mut f,
            &unit,
            Operation::MemoryLimit {
                bytes: Some(256 * MIB),
            },
        );
        let (high, hard) = unit.memory_limits();
        if unit.memory_v2() {
            assert_eq!(high, Some(256 * MIB), "memory.high is the limit");
            assert_eq!(hard, 512 * MIB, "memory.max a margin above it");
        } else {
            assert_eq!((high, hard), (None, 256 * MIB));
        }
        apply(&mut f, &unit, Operation::MemoryLimit { bytes: None });
        assert_eq!(unit.memory_limits().1, u64::MAX, "the limit is lifted");
        assert!(unit.memory_limits().0.is_none(), "memory.high is lifted");
    }
}

#[test]
fn a_forking_unit_is_left_empty_on_this_layout() {
    require_root();
    let unit = Unit::create("enf-lkill");
    let mut f = actuator(&unit);
    let mut forker = Command::new("sh");
    forker.args(["-c", "while :; do sleep 30 & sleep 0.005; done"]);
    let _forker = unit.spawn(forker);
    let deadline = Instant::now() + Duration::from_secs(30);
    while unit.pids().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "the forker did not fork: {:?}",
            unit.pids()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    apply(&mut f, &unit, Operation::Kill);
    assert!(unit.pids().is_empty(), "survivors: {:?}", unit.pids());
}

/// Giving a limit back puts the cgroup's own back (what an operator or kubelet set), not
/// "no limit": the choke point reads the files before its first write and writes them
/// again when the limit is lifted, on whatever layout this node has.
#[test]
fn a_limit_given_back_restores_the_units_own_on_this_layout() {
    require_root();
    let unit = Unit::create("enf-lown");
    unit.set_own_limits(1.5, 3 << 30);
    let texts = || -> Vec<String> {
        unit.limit_files()
            .iter()
            .map(|(dir, f)| std::fs::read_to_string(dir.join(f)).unwrap())
            .collect()
    };
    let own = texts();
    let mut f = actuator(&unit);
    apply(&mut f, &unit, Operation::CpuLimit { cores: Some(0.3) });
    if unit.has_memory() {
        apply(
            &mut f,
            &unit,
            Operation::MemoryLimit {
                bytes: Some(512 * MIB),
            },
        );
    }
    assert!((unit.cpu_quota_cores().unwrap() - 0.3).abs() < 0.01);
    assert!(
        texts().iter().zip(&own).all(|(now, own)| now != own),
        "{:?}",
        texts()
    );
    apply(&mut f, &unit, Operation::CpuLimit { cores: None });
    if unit.has_memory() {
        apply(&mut f, &unit, Operation::MemoryLimit { bytes: None });
    }
    assert_eq!(texts(), own);
}
