//! Safe capacity on a node whose dynamic rule leaves offline memory no room: the rule is
//! clamped at its floor (journaled, exported, explained), and no memory limit is ever
//! written that leaves offline work less than what it uses, so the kernel OOM-kills nothing
//! because of a limit (a kill is the ladder's decision, journaled as a kill).
//!
//! Layout-independent (the VM matrix runs it on pure cgroup2 and pure v1 too): on cgroup2
//! the squeeze is `memory.high` at the use at least, with `memory.max` a margin above it;
//! on v1, whose one limit is hard, the limit itself keeps that margin.

use std::{process::Command, time::Duration};

use enforcer_tests::{
    daemon::{Daemon, metric_value},
    layout::Unit,
    require_root, wait_until,
    workload::status,
};

const MIB: u64 = 1 << 20;
/// What the offline parent holds: anonymous memory (unreclaimable without swap).
const HELD_MIB: u64 = 160;
/// The margin the hard limit keeps above the use, at least (256 MiB in the daemon).
const MARGIN: u64 = 128 * MIB;

const CONFIG: &str = r#"
[classify]
append_defaults = true
[[classify.rules]]
name = "test-offline"
match = 'NAME$'
class = "offline"
priority = "P3"

[capacity]
enabled = true
policy = "dynamic"
reserved_daemons = "4096GiB"
memory_floor = "64MiB"
max_step = 1.0
"#;

#[test]
fn no_room_for_offline_memory_clamps_at_the_floor_and_never_limits_below_use() {
    require_root();
    let unit = Unit::create("enf-noroom");
    if !unit.has_memory() {
        return no_memory_controller_is_said_and_no_memory_limit_is_written(unit);
    }
    // Allocate, touch once, then hold it without growing, for at most 60 s.
    let mut stress = Command::new("stress-ng");
    stress.args([
        "--vm",
        "1",
        "--vm-bytes",
        &format!("{HELD_MIB}M"),
        "--vm-hang",
        "0",
        "--timeout",
        "60s",
        "--quiet",
    ]);
    let holder = unit.spawn(stress);
    assert!(
        wait_until(Duration::from_secs(30), || unit.memory_usage()
            >= (HELD_MIB - 8) * MIB),
        "stress-ng never held {HELD_MIB} MiB: {}",
        unit.memory_usage()
    );
    let used_before = unit.memory_usage();
    // More reserved for the node's daemons than the node has: no room for offline memory.
    let daemon = Daemon::start("", &CONFIG.replace("NAME", &unit.name));
    assert!(
        wait_until(Duration::from_secs(20), || daemon
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
                && e.target.as_deref().is_some_and(|t| t.ends_with(&unit.name))
        })
    };
    // Applied, not only intended: the intent is journaled (fsynced) before the write, and
    // on a slow guest the kernel is read between the two.
    assert!(
        wait_until(Duration::from_secs(20), || limited().any(
            |e| e.outcome == enforcer::actuators::journal::Outcome::Applied
        )),
        "the capacity rule never limited the offline parent:\n{:#?}",
        daemon.journal()
    );
    // Watch the kernel for a few seconds of the rule at work.
    for _ in 0..30 {
        let (high, hard) = unit.memory_limits();
        let usage = unit.memory_usage();
        assert!(
            hard >= usage + MARGIN,
            "hard limit {hard} leaves no margin above the use {usage}"
        );
        if unit.memory_v2() {
            let high = high.expect("memory.high is set on cgroup2");
            assert!(
                high >= used_before,
                "memory.high {high} below the use {used_before}"
            );
            assert!(
                hard >= high + MARGIN,
                "memory.max {hard} not above memory.high {high}"
            );
        }
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
    assert_eq!(unit.oom_kills(), 0, "the kernel OOM-killed offline work");
    assert!(
        unit.memory_usage() >= (HELD_MIB - 8) * MIB,
        "the holder lost its memory (killed?)"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{}", holder.pid())).exists() && unit.pids().len() >= 2,
        "the offline processes are gone: {:?}",
        unit.pids()
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

/// A node without a memory controller (pure v1 on 6.12+): the gap is said in the status
/// (and on stderr at start-up), the capacity rule's CPU side still works, and no memory
/// limit is ever attempted.
fn no_memory_controller_is_said_and_no_memory_limit_is_written(unit: Unit) {
    let daemon = Daemon::start("", &CONFIG.replace("NAME", &unit.name));
    let _hog = unit.spawn(enforcer_tests::cgroup::cpu_hog(30.0));
    assert!(
        wait_until(Duration::from_secs(20), || daemon.journal().iter().any(
            |e| {
                e.action == "cpu_limit"
                    && e.stage == "capacity"
                    && e.target.as_deref().is_some_and(|t| t.ends_with(&unit.name))
            }
        )),
        "the capacity rule never limited the offline parent's CPU:\n{:#?}",
        daemon.journal()
    );
    let st = status(&daemon);
    let gaps = st["protection"]["controller_gaps"].as_array().unwrap();
    assert!(
        gaps.iter().any(|g| g["controller"] == "memory"
            && g["explain"]
                .as_str()
                .is_some_and(|e| e.contains("memory controller not mounted"))),
        "{gaps:#?}"
    );
    assert!(
        daemon.log().contains("memory controller not mounted"),
        "{}",
        daemon.log()
    );
    assert!(
        !daemon.journal().iter().any(|e| e.action == "memory_limit"),
        "a memory limit was attempted without a memory controller: {:#?}",
        daemon.journal()
    );
}
