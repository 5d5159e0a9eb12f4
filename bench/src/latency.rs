//! Detection-to-action latency of the protection ladder: from the moment offline hogs push
//! the node over the threshold (the hogs start on an idle node) to the throttle being
//! journaled (the intent is written, fsynced, right before the quota), with the sustain
//! window at zero. The same daemon runs with the eBPF sampler and in cgroupfs-polling mode
//! at a 1 s interval (how polling agents work by default), side by side in one run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use enforcer::actuators::journal::Outcome;
use enforcer_tests::{
    cgroup::{TestCgroup, cpu_hog, spawn_in},
    daemon::Daemon,
    unique_name,
};
use serde_json::json;

const RUNS: usize = 20;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn status(daemon: &Daemon) -> serde_json::Value {
    serde_json::from_slice(&daemon.cli(&["status", "--output", "json"]).stdout).unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn one_mode(label: &str, daemon_section: &str) -> anyhow::Result<serde_json::Value> {
    let base = unique_name("enf-bench-lat");
    let cgroups: Vec<[TestCgroup; 2]> = (0..2)
        .map(|i| {
            let name = format!("{base}-{i}");
            [
                TestCgroup::create("cpu", &name),
                TestCgroup::create("cpuacct", &name),
            ]
        })
        .collect();
    let config = format!(
        r#"
[classify]
append_defaults = true
[[classify.rules]]
name = "bench-offline"
match = '{base}-'
class = "offline"
priority = "P3"
[ladder]
cpu_trigger = 0.45
cpu_recover = 0.30
sustain = "0s"
throttle_after = "0s"
freeze_after = "10m"
evict_after = "10m"
recover_hold = "300ms"
[isolation]
enabled = false
[capacity]
enabled = false
"#
    );
    let daemon = Daemon::start(daemon_section, &config);
    let mut latencies = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        // Start each run from an idle node with the ladder back at normal.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = status(&daemon);
            if st["protection"]["stage"] == "normal"
                && st["node_cpu_utilisation"].as_f64().unwrap_or(1.0) < 0.2
            {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{label}: node never idle before run {run}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let seen = daemon.journal().len();
        let t0 = unix_now();
        let hogs: Vec<_> = cgroups
            .iter()
            .map(|[cpu, acct]| spawn_in(&[cpu, acct], cpu_hog(5.0)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let at = loop {
            let journal = daemon.journal();
            if let Some(e) = journal[seen..].iter().find(|e| {
                e.stage == "throttle" && e.action == "cpu_limit" && e.outcome == Outcome::Intent
            }) {
                break e.at;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{label}: no throttle in run {run}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        latencies.push((at - t0) * 1e3);
        drop(hogs);
    }
    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    println!(
        "   {label:<26} p50 {p50:7.1} ms   p99 {p99:7.1} ms   (min {:.1}, max {:.1}; {RUNS} runs)",
        latencies[0],
        latencies[latencies.len() - 1]
    );
    Ok(json!({ "p50_ms": p50, "p99_ms": p99, "runs_ms": latencies }))
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!("== detection-to-action latency: hogs start -> throttle journaled (sustain 0)");
    // The rate window keeps one point at or before its start, so it spans window to
    // window + one tick: both settings are reported.
    let ebpf_100 = one_mode(
        "eBPF, tick 100ms, window 200ms",
        "tick = \"100ms\"\nwindow = \"200ms\"",
    )?;
    let ebpf_50 = one_mode(
        "eBPF, tick 50ms, window 50ms",
        "tick = \"50ms\"\nwindow = \"50ms\"",
    )?;
    let poll = one_mode(
        "cgroupfs polling, 1s",
        "sampler = \"cgroupfs\"\ntick = \"1s\"\nwindow = \"1s\"\nrescan_interval = \"1s\"",
    )?;
    let ratio = |e: &serde_json::Value, p: &str| poll[p].as_f64().unwrap() / e[p].as_f64().unwrap();
    for (label, e) in [("100 ms tick", &ebpf_100), ("50 ms tick", &ebpf_50)] {
        println!(
            "   polling / eBPF ({label}): p50 {:.1}x   p99 {:.1}x",
            ratio(e, "p50_ms"),
            ratio(e, "p99_ms")
        );
    }
    Ok(json!({
        "ebpf_tick_100ms_window_200ms": ebpf_100,
        "ebpf_tick_50ms_window_50ms": ebpf_50,
        "cgroupfs_poll_1s": poll,
    }))
}
