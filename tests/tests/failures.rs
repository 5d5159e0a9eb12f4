//! Failure at the choke point, against the real kernel: a cgroup removed between the
//! decision and the write, and a v1 memory limit the kernel cannot reclaim down to, are one
//! journaled failure each (intent, then the failure naming the cgroup and the cause) — no
//! retry, no crash, and nothing else touched; a thaw that fails is not forgotten; a daemon
//! that sees an offline unit's cgroups read-only fails each action on it once and goes on.

use std::{process::Command, sync::Arc, time::Duration};

use enforcer::{
    actuators::journal::{self, Journal, Outcome},
    actuators::{Actuator, Operation, Request, record::EffectsRecord},
    model::{
        Class, Priority,
        classify::{Rule, RuleSet},
        layout::CgroupLayout,
    },
};
use enforcer_tests::{
    TempDir,
    actuate::apply_settled,
    cgroup::{TestCgroup, mount_point, own_cgroup_dir, spawn_in},
    cgroup_root::CgroupRoot,
    require_root, unique_name, wait_until,
};

fn actuator(name: &str, journal_path: &std::path::Path) -> Actuator {
    let rules = Arc::new(RuleSet::new(vec![Rule::path(
        "test",
        regex::Regex::new(&regex::escape(name)).unwrap(),
        Class::Offline,
        Some(Priority::P3),
    )]));
    Actuator::new(
        CgroupLayout::discover().expect("layout"),
        rules,
        Journal::open(journal_path).unwrap(),
        false,
    )
}

fn request(target: &str, op: Operation) -> Request {
    Request {
        stage: "throttle".into(),
        target: target.into(),
        op,
        reason: serde_json::json!({"trigger": "test"}),
    }
}

#[test]
fn a_cgroup_removed_before_the_write_is_one_journaled_failure_per_action() {
    require_root();
    let dir = TempDir::new("enf-fail");
    let path = dir.path().join("journal.jsonl");
    let name = unique_name("enf-gone");
    // Created, decided upon, then removed before the write.
    let target = {
        let cpu = TestCgroup::create("cpu", &name);
        cpu.dir()
            .strip_prefix(mount_point("cpu").unwrap())
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut a = actuator(&name, &path);
    for op in [
        Operation::CpuLimit { cores: Some(0.5) },
        Operation::MemoryLimit {
            bytes: Some(1 << 30),
        },
        Operation::Freeze,
        Operation::Kill,
    ] {
        let outcome = a.apply(&request(&target, op.clone())).expect("journal");
        assert_eq!(outcome, Outcome::Failed, "{op:?}");
    }
    let entries = journal::read(&path).unwrap();
    let outcomes: Vec<(String, Outcome)> = entries
        .iter()
        .map(|e| (e.action.clone(), e.outcome.clone()))
        .collect();
    let mut expected = Vec::new();
    for action in ["cpu_limit", "memory_limit", "freeze", "kill"] {
        expected.push((action.to_string(), Outcome::Intent));
        expected.push((action.to_string(), Outcome::Failed));
    }
    assert_eq!(
        outcomes, expected,
        "one intent and one failure each, no retry"
    );
    for e in entries.iter().filter(|e| e.outcome == Outcome::Failed) {
        let detail = e.detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains(&name),
            "the failure names the cgroup: {detail}"
        );
    }
    // Each failure is under its intent's number.
    for pair in entries.chunks(2) {
        assert_eq!(pair[0].seq, pair[1].seq);
    }
}

#[test]
fn a_v1_memory_limit_below_what_the_kernel_can_reclaim_fails_once_and_kills_nothing() {
    require_root();
    let dir = TempDir::new("enf-fail");
    let path = dir.path().join("journal.jsonl");
    let name = unique_name("enf-ebusy");
    let own = own_cgroup_dir("memory");
    let memory = TestCgroup::create_at(&own, &name);
    let target = memory
        .dir()
        .strip_prefix(mount_point("memory").unwrap())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // 96 MiB of anonymous memory, kept: with no swap the kernel cannot reclaim it.
    let mut stress = Command::new("stress-ng");
    stress.args([
        "--vm",
        "1",
        "--vm-bytes",
        "96M",
        "--vm-keep",
        "--timeout",
        "20s",
        "--quiet",
    ]);
    let worker = spawn_in(&[&memory], stress);
    assert!(
        wait_until(Duration::from_secs(10), || {
            memory
                .read("memory.usage_in_bytes")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                > 80 << 20
        }),
        "the worker never allocated"
    );
    let mut a = actuator(&name, &path);
    let outcome = a
        .apply(&request(
            &target,
            Operation::MemoryLimit {
                bytes: Some(4 << 20),
            },
        ))
        .expect("journal");
    assert_eq!(outcome, Outcome::Failed);
    let entries = journal::read(&path).unwrap();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let detail = entries[1].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("memory.limit_in_bytes"), "{detail}");
    // The limit did not move, so nothing was OOM-killed by it.
    let oom_kills: u64 = memory
        .read("memory.oom_control")
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(oom_kills, 0);
    assert!(
        !memory.pids().is_empty(),
        "the worker still runs: {:?}",
        worker.pid()
    );
    drop(worker);
}

/// What enforcer gives back (a thaw) is recorded only once it is done: a thaw that fails
/// leaves the freeze in the effects record, for this daemon or its successor to put right;
/// one that succeeds removes it.
#[test]
fn a_thaw_that_fails_leaves_the_freeze_in_the_effects_record() {
    require_root();
    let dir = TempDir::new("enf-fail");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let layout = CgroupLayout::discover().expect("layout");
    // Where freezing happens: cgroup2's cgroup.freeze, else the v1 freezer.
    let freezer = layout
        .unified_mount()
        .or_else(|| layout.v1_mount("freezer"))
        .expect("a freezer")
        .to_path_buf();
    let root = CgroupRoot::new();
    let name = unique_name("enf-held");
    let target = format!("{}/{name}", root.rel);
    let mut a = actuator(&name, &dir.path().join("journal.jsonl")).with_effects_record(&state);
    let frozen_in =
        |record: &EffectsRecord| record.cgroups.get(&target).and_then(|c| c.frozen.clone());

    let held = TestCgroup::create_at(&freezer.join(&root.rel), &name);
    let freeze = apply_settled(&mut a, &request(&target, Operation::Freeze));
    assert_eq!(freeze, Outcome::Applied);
    assert!(
        frozen_in(a.record()).is_some(),
        "the freeze is recorded ahead"
    );
    // The cgroup goes away under the daemon: the thaw fails.
    drop(held);
    let thaw = a.apply(&request(&target, Operation::Thaw)).unwrap();
    assert_eq!(thaw, Outcome::Failed);
    assert_eq!(
        frozen_in(a.record()).as_deref(),
        Some("throttle"),
        "a failed thaw must not forget the freeze"
    );
    let on_disk = EffectsRecord::load(&state.join("effects.json"));
    assert!(
        frozen_in(&on_disk).is_some(),
        "what a successor reads still says frozen: {:?}",
        on_disk.cgroups
    );

    // Again, with the cgroup there: the thaw is done, and only then forgotten.
    let _held = TestCgroup::create_at(&freezer.join(&root.rel), &name);
    assert_eq!(
        apply_settled(&mut a, &request(&target, Operation::Freeze)),
        Outcome::Applied
    );
    assert_eq!(
        a.apply(&request(&target, Operation::Thaw)).unwrap(),
        Outcome::Applied
    );
    assert_eq!(frozen_in(a.record()), None);
    assert_eq!(
        frozen_in(&EffectsRecord::load(&state.join("effects.json"))),
        None
    );
}

/// A node where the daemon sees one offline unit's cgroups read-only (an agent given a
/// read-only `/sys/fs/cgroup`, a runtime's bind mount): the ladder's throttle and freeze of
/// that unit each fail once, journaled naming the file and the cause, and are not tried
/// again tick after tick; the writable unit beside it is throttled and frozen as usual, and
/// the daemon goes on ticking. The read-only mounts are binds in the daemon's own private
/// mount namespace: the host's hierarchies are not touched.
#[test]
fn a_read_only_cgroup_is_one_journaled_failure_per_action_and_the_daemon_goes_on() {
    use enforcer_tests::{
        daemon::{Daemon, Launch},
        workload::{Workload, lowered_ladder, rules, status, taken},
    };
    require_root();
    let base = unique_name("enf-ro");
    // Eviction far off: the test is about the throttle and the freeze.
    let config = format!(
        "{}\n{}\n[capacity]\nenabled = false\n",
        rules(
            &base,
            &[
                ("locked", "offline", Some("debug")),
                ("free", "offline", Some("P3")),
            ]
        ),
        lowered_ladder("0s", "600s")
    );
    let locked = Workload::new(&format!("{base}-locked"));
    let free = Workload::new(&format!("{base}-free"));
    let launch = Launch {
        read_only: locked.unit.dirs(),
        ..Launch::default()
    };
    let daemon = Daemon::start_with("", &config, launch);
    let _load = [locked.hog(30.0), free.hog(30.0)];
    assert!(
        wait_until(Duration::from_secs(10), || free.frozen()),
        "the writable unit was never frozen:\n{:#?}\n{}",
        daemon.journal(),
        daemon.log()
    );
    let failures = |journal: &[journal::Entry]| -> Vec<(String, String)> {
        journal
            .iter()
            .filter(|e| e.outcome == Outcome::Failed)
            .filter(|e| e.target.as_deref().is_some_and(|t| t.ends_with("-locked")))
            .map(|e| (e.action.clone(), e.detail.clone().unwrap_or_default()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(5), || failures(&daemon.journal())
            .iter()
            .any(|(a, _)| a == "freeze")),
        "no failed freeze of the read-only unit:\n{:#?}",
        daemon.journal()
    );
    let ticks = || {
        status(&daemon)["sampler"]["ticks_total"]
            .as_u64()
            .unwrap_or(0)
    };
    let (first, ticks_then) = (failures(&daemon.journal()), ticks());
    // Five more seconds of overload: fifty ticks that still want the unit throttled and
    // frozen.
    std::thread::sleep(Duration::from_secs(5));
    let journal = daemon.journal();
    let after = failures(&journal);
    assert_eq!(after, first, "tried again and again:\n{journal:#?}");
    println!("failures of the read-only unit over 5 s of overload: {after:#?}");
    let mut actions: Vec<&str> = after.iter().map(|(a, _)| a.as_str()).collect();
    actions.sort();
    actions.dedup();
    assert_eq!(
        actions.len(),
        after.len(),
        "more than one failure per action: {after:#?}"
    );
    for (action, detail) in &after {
        assert!(
            detail.contains(&format!("{base}-locked/")) && detail.contains("read-only file system"),
            "{action}: the failure names the file and the cause: {detail}"
        );
    }
    // Each failure concludes its own intent, and nothing of the unit took effect.
    assert!(
        taken(&journal, "freeze", false).iter().all(|e| !e
            .target
            .as_deref()
            .unwrap_or("")
            .ends_with("-locked"))
    );
    assert!(!locked.frozen() && locked.quota_cores().is_none());
    // The writable unit was throttled too, and the daemon still ticks.
    assert!(free.quota_cores().is_some(), "{journal:#?}");
    assert!(
        wait_until(Duration::from_secs(3), || ticks() > ticks_then + 10),
        "the daemon stopped ticking:\n{}",
        daemon.log()
    );
}
