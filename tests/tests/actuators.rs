//! The actuators and their choke point against real cgroups: throttling shows in the
//! kernel's own counters, kills leave no survivor even from a forking process, and nothing
//! that is not offline is ever touched.

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use enforcer::{
    actuators::journal::{self, Journal, Outcome},
    actuators::{Actuator, Operation, Request, cgroupfs},
    model::{
        Class, Priority,
        classify::{Rule, RuleSet},
        layout::CgroupLayout,
    },
};
use enforcer_tests::{
    TempDir,
    actuate::apply_settled,
    cgroup::{TestCgroup, cpu_hog, mount_point, own_cgroup_dir, spawn_in},
    require_root, unique_name,
};

fn rules(name: &str, class: Class) -> Arc<RuleSet> {
    Arc::new(RuleSet::new(vec![Rule::path(
        "test",
        regex::Regex::new(&regex::escape(name)).unwrap(),
        class,
        (class == Class::Offline).then_some(Priority::P3),
    )]))
}

struct Fixture {
    actuator: Actuator,
    journal: std::path::PathBuf,
    _dir: TempDir,
}

fn actuator(name: &str, class: Class, dry_run: bool) -> Fixture {
    let dir = TempDir::new("enf-act");
    let path = dir.path().join("journal.jsonl");
    let layout = CgroupLayout::discover().expect("layout");
    Fixture {
        actuator: Actuator::new(
            layout,
            rules(name, class),
            Journal::open(&path).unwrap(),
            dry_run,
        ),
        journal: path,
        _dir: dir,
    }
}

fn request(target: &str, op: Operation) -> Request {
    Request {
        stage: "throttle".into(),
        target: target.into(),
        op,
        reason: serde_json::json!({"trigger": "node_cpu", "value": 0.97, "threshold": 0.9}),
    }
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Relative path of a test cgroup under its hierarchy's mount point.
fn rel(cg: &TestCgroup, controller: &str) -> String {
    cg.dir()
        .strip_prefix(mount_point(controller).unwrap())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn cpu_throttle_shows_in_the_kernels_counters_and_lifts() {
    require_root();
    let name = unique_name("enf-throttle");
    let cpu = TestCgroup::create("cpu", &name);
    let acct = TestCgroup::create("cpuacct", &name);
    let mut f = actuator(&name, Class::Offline, false);
    let _hog = spawn_in(&[&cpu, &acct], cpu_hog(5.0));

    let out = f.actuator.apply(&request(
        &rel(&cpu, "cpu"),
        Operation::CpuLimit { cores: Some(0.2) },
    ));
    assert_eq!(out.unwrap(), Outcome::Applied);
    let period: u64 = cpu.read("cpu.cfs_period_us").trim().parse().unwrap();
    assert_eq!(
        cpu.read("cpu.cfs_quota_us").trim(),
        (period / 5).to_string()
    );
    let u0 = acct.cpuacct_usage_ns();
    std::thread::sleep(Duration::from_secs(1));
    let used = (acct.cpuacct_usage_ns() - u0) as f64 / 1e9;
    let stat = cpu.read("cpu.stat");
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttled > 0, "{stat}");
    assert!(
        used < 0.3,
        "hog used {used:.3} cores under a 0.2-core quota"
    );

    f.actuator
        .apply(&request(
            &rel(&cpu, "cpu"),
            Operation::CpuLimit { cores: None },
        ))
        .unwrap();
    assert_eq!(cpu.read("cpu.cfs_quota_us").trim(), "-1");
    let entries = journal::read(&f.journal).unwrap();
    let outcomes: Vec<_> = entries.iter().map(|e| e.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Intent,
            Outcome::Applied,
            Outcome::Intent,
            Outcome::Applied
        ]
    );
    assert_eq!(
        entries[0].reason["trigger"]["value"], 0.97,
        "the measured trigger value is journaled"
    );
    assert_eq!(entries[0].class.as_deref(), Some("offline"));
}

#[test]
fn online_targets_are_refused_and_left_untouched() {
    require_root();
    let name = unique_name("enf-online");
    let cpu = TestCgroup::create("cpu", &name);
    let unified = TestCgroup::create("unified", &name);
    let mut f = actuator(&name, Class::Online, false);
    let hog = spawn_in(&[&cpu, &unified], cpu_hog(5.0));
    let before = (cpu.read("cpu.cfs_quota_us"), unified.read("cgroup.freeze"));

    for op in [
        Operation::Kill,
        Operation::Freeze,
        Operation::CpuLimit { cores: Some(0.1) },
        Operation::MemoryLimit {
            bytes: Some(1 << 20),
        },
    ] {
        let out = f.actuator.apply(&request(&rel(&cpu, "cpu"), op)).unwrap();
        assert_eq!(out, Outcome::Refused);
    }
    // The root of a hierarchy is never a target either.
    assert_eq!(
        f.actuator.apply(&request("", Operation::Freeze)).unwrap(),
        Outcome::Refused
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(hog.pid()), "online process survived");
    assert_eq!(
        (cpu.read("cpu.cfs_quota_us"), unified.read("cgroup.freeze")),
        before
    );
    let entries = journal::read(&f.journal).unwrap();
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().all(|e| e.outcome == Outcome::Refused));
    assert!(
        entries[0].detail.as_deref().unwrap().contains("is online"),
        "{:?}",
        entries[0]
    );
}

/// A process that forks a sleeper every few milliseconds, for as long as it lives.
fn forker() -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", "while :; do sleep 30 & sleep 0.002; done"]);
    c
}

fn wait_for_processes(cg: &TestCgroup, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroupfs::pids(cg.dir()).len() < n {
        assert!(Instant::now() < deadline, "forker did not fork");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_of_a_forking_cgroup_leaves_it_empty_through_cgroup_kill() {
    require_root();
    let name = unique_name("enf-kill2");
    let unified = TestCgroup::create("unified", &name);
    let mut f = actuator(&name, Class::Offline, false);
    let _forker = spawn_in(&[&unified], forker());
    wait_for_processes(&unified, 20);
    let out = f
        .actuator
        .apply(&request(&rel(&unified, "unified"), Operation::Kill))
        .unwrap();
    assert_eq!(out, Outcome::Applied);
    assert!(unified.pids().is_empty(), "survivors: {:?}", unified.pids());
    let last = journal::read(&f.journal).unwrap().pop().unwrap();
    assert!(last.detail.unwrap().ends_with("processes killed"));
}

#[test]
fn kill_of_a_forking_cgroup_leaves_it_empty_through_the_v1_freezer() {
    require_root();
    let name = unique_name("enf-kill1");
    let freezer = TestCgroup::create("freezer", &name);
    let _forker = spawn_in(&[&freezer], forker());
    wait_for_processes(&freezer, 20);
    // The v1 path: no cgroup2 directory, so freeze, SIGKILL every pid, thaw, confirm.
    let dirs = cgroupfs::CgroupDirs {
        rel: name.clone(),
        cpu: None,
        cpu_is_v2: false,
        memory: None,
        memory_is_v2: false,
        freezer: Some(freezer.dir().to_path_buf()),
        unified: None,
    };
    let killed = cgroupfs::kill_all(&dirs, Duration::from_secs(5)).expect("kill");
    assert!(killed >= 20, "{killed}");
    assert!(freezer.pids().is_empty(), "survivors: {:?}", freezer.pids());
    assert_eq!(freezer.read("freezer.state").trim(), "THAWED");
}

/// The v1 freezer path of a freeze: requested, then confirmed by reading `freezer.state`
/// back — at once or in the follow-ups a tick makes (FROZEN well within the bound for a
/// busy forking cgroup, and no call holding its caller past the spin) — and the thaw lets
/// it run.
#[test]
fn v1_freeze_is_confirmed_by_reading_the_state_back() {
    require_root();
    let name = unique_name("enf-freeze1");
    let freezer = TestCgroup::create("freezer", &name);
    let _forker = spawn_in(&[&freezer], forker());
    wait_for_processes(&freezer, 20);
    let dirs = cgroupfs::CgroupDirs {
        rel: name.clone(),
        cpu: None,
        cpu_is_v2: false,
        memory: None,
        memory_is_v2: false,
        freezer: Some(freezer.dir().to_path_buf()),
        unified: None,
    };
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    let mut timed = |f: &mut dyn FnMut() -> bool| {
        let t = Instant::now();
        let done = f();
        longest = longest.max(t.elapsed());
        done
    };
    let mut follow = None;
    let frozen_at_once = timed(&mut || {
        follow = cgroupfs::request_freeze(&dirs, Instant::now()).expect("freeze");
        follow.is_none()
    });
    if !frozen_at_once {
        let mut follow = follow.unwrap();
        while !timed(&mut || {
            cgroupfs::follow_up_freeze(&dirs, &mut follow, Instant::now()).expect("freeze")
        }) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(
        started.elapsed() < cgroupfs::FREEZE_BUDGET + Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert!(
        longest < cgroupfs::FREEZE_SPIN + Duration::from_millis(20),
        "one call held its caller {longest:?}"
    );
    assert_eq!(freezer.read("freezer.state").trim(), "FROZEN");
    let frozen = freezer.pids().len();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(freezer.pids().len(), frozen, "a frozen cgroup forked");
    cgroupfs::thaw(&dirs).expect("thaw");
    assert_eq!(freezer.read("freezer.state").trim(), "THAWED");
    wait_for_processes(&freezer, frozen + 1);
}

/// A write into a cgroup removed between the decision and the write says so, naming the file.
#[test]
fn a_write_into_a_removed_cgroup_says_cgroup_removed() {
    require_root();
    let name = unique_name("enf-gone");
    let freezer = TestCgroup::create("freezer", &name);
    let dirs = cgroupfs::CgroupDirs {
        rel: name.clone(),
        cpu: None,
        cpu_is_v2: false,
        memory: None,
        memory_is_v2: false,
        freezer: Some(freezer.dir().to_path_buf()),
        unified: None,
    };
    let dir = freezer.dir().to_path_buf();
    drop(freezer);
    let err = cgroupfs::request_freeze(&dirs, Instant::now()).unwrap_err();
    assert!(
        matches!(err, cgroupfs::CgroupfsError::CgroupRemoved { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cgroup removed ({} no longer exists)",
            dir.join("freezer.state").display(),
            dir.display()
        )
    );
}

#[test]
fn freeze_stops_and_thaw_resumes_offline_work() {
    require_root();
    let name = unique_name("enf-freeze");
    let unified = TestCgroup::create("unified", &name);
    let mut f = actuator(&name, Class::Offline, false);
    let _hog = spawn_in(&[&unified], cpu_hog(5.0));
    let target = rel(&unified, "unified");
    assert_eq!(
        apply_settled(&mut f.actuator, &request(&target, Operation::Freeze)),
        Outcome::Applied
    );
    std::thread::sleep(Duration::from_millis(200));
    let u0 = unified.cpu_stat_usage_ns();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        unified.cpu_stat_usage_ns() - u0 < 10_000_000,
        "frozen work did not run"
    );
    assert_eq!(
        f.actuator
            .apply(&request(&target, Operation::Thaw))
            .unwrap(),
        Outcome::Applied
    );
    let u1 = unified.cpu_stat_usage_ns();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        unified.cpu_stat_usage_ns() - u1 > 200_000_000,
        "thawed work runs again"
    );
}

#[test]
fn memory_limit_in_a_child_of_our_own_memory_cgroup() {
    require_root();
    let name = unique_name("enf-mem");
    let memory = TestCgroup::create_at(&own_cgroup_dir("memory"), &name);
    let mut f = actuator(&name, Class::Offline, false);
    let target = rel(&memory, "memory");
    let op = Operation::MemoryLimit {
        bytes: Some(64 << 20),
    };
    assert_eq!(
        f.actuator.apply(&request(&target, op)).unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        memory.read("memory.limit_in_bytes").trim(),
        (64u64 << 20).to_string()
    );
}

/// v1: a limit below what the kernel can reclaim (shmem without swap) fails with EBUSY,
/// which is its own error so that callers back off instead of writing it again every tick.
#[test]
fn v1_memory_limit_below_unreclaimable_usage_is_memory_below_usage() {
    require_root();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    assert!(
        swaps.lines().count() <= 1,
        "this test needs a node without swap (shmem must be unreclaimable): {swaps}"
    );
    let name = unique_name("enf-busy");
    let memory = TestCgroup::create_at(&own_cgroup_dir("memory"), &name);
    struct Shm(std::path::PathBuf);
    impl Drop for Shm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let shm = Shm(Path::new("/dev/shm").join(&name));
    let mut fill = Command::new("sh");
    fill.args([
        "-c",
        &format!("head -c 33554432 /dev/zero > {}", shm.0.display()),
    ]);
    let mut child = spawn_in(&[&memory], fill);
    child.wait_timeout(Duration::from_secs(10));
    let usage: u64 = memory.read("memory.usage_in_bytes").trim().parse().unwrap();
    assert!(usage >= 32 << 20, "shmem not charged: {usage}");
    let dirs = cgroupfs::CgroupDirs {
        rel: name.clone(),
        cpu: None,
        cpu_is_v2: false,
        memory: Some(memory.dir().to_path_buf()),
        memory_is_v2: false,
        freezer: None,
        unified: None,
    };
    let err = cgroupfs::set_memory_limit(&dirs, Some(4 << 20)).unwrap_err();
    assert!(
        matches!(err, cgroupfs::CgroupfsError::MemoryBelowUsage { bytes, .. } if bytes == 4 << 20),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(
            "memory limit below current usage: not reclaimable yet (limit 4194304 bytes)"
        ),
        "{err}"
    );
    drop(shm);
    cgroupfs::set_memory_limit(&dirs, Some(4 << 20)).expect("limit once the shmem is gone");
}

#[test]
fn dry_run_journals_the_decision_and_changes_nothing() {
    require_root();
    let name = unique_name("enf-dry");
    let cpu = TestCgroup::create("cpu", &name);
    let unified = TestCgroup::create("unified", &name);
    let mut f = actuator(&name, Class::Offline, true);
    let hog = spawn_in(&[&cpu, &unified], cpu_hog(5.0));
    let before = (cpu.read("cpu.cfs_quota_us"), unified.read("cgroup.freeze"));
    for op in [
        Operation::CpuLimit { cores: Some(0.1) },
        Operation::Freeze,
        Operation::Kill,
    ] {
        assert_eq!(
            f.actuator.apply(&request(&rel(&cpu, "cpu"), op)).unwrap(),
            Outcome::DryRun
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(hog.pid()));
    assert_eq!(
        (cpu.read("cpu.cfs_quota_us"), unified.read("cgroup.freeze")),
        before
    );
    let actions: Vec<String> = journal::read(&f.journal)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["cpu_limit", "freeze", "kill"]);
    assert!(Path::new(&f.journal).exists());
}
