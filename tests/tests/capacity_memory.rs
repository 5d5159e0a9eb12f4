//! Safe capacity on a node whose dynamic rule leaves offline memory no room: the rule is
//! clamped at its floor (journaled, exported, explained), and no memory limit is ever
//! written below what the offline parent uses, so the kernel OOM-kills nothing because of a
//! limit (a kill is the ladder's decision, journaled as a kill).
//!
//! The node's memory is on v1 here (its cgroup2 has no controllers), where the limit is
//! hard and the daemon keeps a margin above the use; cgroup2's `memory.high` +
//! `memory.max` is what the VM matrix runs.

use std::{path::PathBuf, process::Command, time::Duration};

use enforcer_tests::{
    cgroup::{TestCgroup, mount_point, own_cgroup_dir, spawn_in},
    daemon::{Daemon, metric_value},
    require_root, unique_name, wait_until,
    workload::status,
};

const MIB: u64 = 1 << 20;
/// What the offline parent holds: anonymous memory (unreclaimable without swap).
const HELD_MIB: u64 = 160;

/// A memory cgroup under the test's own memory cgroup, with a cpu twin at the same
/// relative path (what kubelet does on real nodes), so both hierarchies agree on it.
struct Twin {
    memory: TestCgroup,
    /// The leaf the process goes in (dropped first), and the guard of the first cpu
    /// directory the test created on the way to it.
    cpu: TestCgroup,
    _cpu_top: TestCgroup,
}

fn twin(name: &str) -> Twin {
    let own = own_cgroup_dir("memory");
    let rel: PathBuf = own
        .strip_prefix(mount_point("memory").unwrap())
        .unwrap()
        .join(name);
    let cpu_mount = mount_point("cpu").unwrap();
    let top = TestCgroup::create_path(&cpu_mount, rel.to_str().unwrap());
    Twin {
        memory: TestCgroup::create_at(&own, name),
        cpu: TestCgroup::create_at(&cpu_mount, rel.to_str().unwrap()),
        _cpu_top: top,
    }
}

fn read_u64(cg: &TestCgroup, file: &str) -> u64 {
    cg.read(file).trim().parse().unwrap()
}

/// `oom_kill N` of v1 `memory.oom_control` (kernels since 4.13).
fn oom_kills(cg: &TestCgroup) -> u64 {
    cg.read("memory.oom_control")
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .expect("memory.oom_control has an oom_kill line")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn no_room_for_offline_memory_clamps_at_the_floor_and_never_limits_below_use() {
    require_root();
    let name = unique_name("enf-noroom");
    let t = twin(&name);
    // Allocate, touch once, then hold it without growing, for at most 40 s.
    let mut stress = Command::new("stress-ng");
    stress.args([
        "--vm",
        "1",
        "--vm-bytes",
        &format!("{HELD_MIB}M"),
        "--vm-hang",
        "0",
        "--timeout",
        "40s",
        "--quiet",
    ]);
    let holder = spawn_in(&[&t.memory, &t.cpu], stress);
    assert!(
        wait_until(Duration::from_secs(10), || read_u64(
            &t.memory,
            "memory.usage_in_bytes"
        ) >= (HELD_MIB - 8) * MIB),
        "stress-ng never held {HELD_MIB} MiB: {}",
        t.memory.read("memory.usage_in_bytes")
    );
    let used_before = read_u64(&t.memory, "memory.usage_in_bytes");
    // More reserved for the node's daemons than the node has: no room for offline memory.
    let daemon = Daemon::start(
        "",
        &format!(
            r#"
[classify]
append_defaults = true
[[classify.rules]]
name = "test-offline"
match = '{name}$'
class = "offline"
priority = "P3"

[capacity]
enabled = true
policy = "dynamic"
reserved_daemons = "4096GiB"
memory_floor = "64MiB"
max_step = 1.0
"#
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || daemon
            .journal()
            .iter()
            .any(|e| e.action == "capacity_clamped")),
        "the clamp was never journaled:\n{:#?}",
        daemon.journal()
    );
    let limited = || {
        daemon.journal().into_iter().filter(|e| {
            e.action == "memory_limit"
                && e.stage == "capacity"
                && e.target.as_deref().is_some_and(|t| t.ends_with(&name))
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || limited().next().is_some()),
        "the capacity rule never limited the offline parent:\n{:#?}",
        daemon.journal()
    );
    // Watch the kernel for a few seconds of the rule at work.
    for _ in 0..30 {
        let limit = read_u64(&t.memory, "memory.limit_in_bytes");
        let usage = read_u64(&t.memory, "memory.usage_in_bytes");
        assert!(
            limit >= usage + 128 * MIB,
            "limit {limit} leaves no margin above the use {usage}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for e in limited() {
        let bytes = e.reason["request"]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("a memory limit entry names its bytes: {e:#?}"));
        assert!(
            bytes >= used_before,
            "a limit below the use was written: {bytes} < {used_before}: {e:#?}"
        );
    }
    assert_eq!(
        oom_kills(&t.memory),
        0,
        "the kernel OOM-killed offline work"
    );
    assert!(
        read_u64(&t.memory, "memory.usage_in_bytes") >= (HELD_MIB - 8) * MIB,
        "the holder lost its memory (killed?)"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{}", holder.pid())).exists()
            && t.memory.pids().len() >= 2,
        "the offline processes are gone: {:?}",
        t.memory.pids()
    );
    // Exported, shown and explained.
    let metrics = daemon.scrape();
    assert_eq!(
        metric_value(&metrics, "enforcer_capacity_clamped"),
        Some(1.0),
        "{metrics}"
    );
    let st = status(&daemon);
    assert_eq!(st["capacity"]["clamped"], true, "{:#}", st["capacity"]);
    assert_eq!(st["capacity"]["memory_floor_bytes"], 64 * MIB);
    let explain = String::from_utf8(daemon.cli(&["explain"]).stdout).unwrap();
    assert!(
        explain.contains("offline memory capacity CLAMPED"),
        "{explain}"
    );
}
